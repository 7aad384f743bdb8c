"""GRACE and BalancEdit: the codebook rules (GRACE's expand and split, BalancEdit's radius, overlap and conflict),
the inspector, greedy decoding through a codebook, and the OKEDIT-style cases they are scored on."""
import dataclasses

import pytest
import torch

from mmedit_lib.backbones.backbone import state_hash
from mmedit_lib.editors.balancedit import BalancEditHparams, apply_balancedit, radius
from mmedit_lib.editors.base import EditRequest
from mmedit_lib.editors.codebook import entries_frame, installed_codebook, lookup
from mmedit_lib.editors.grace import GRACEHparams, apply_grace
from mmedit_lib.runners.cases import load_cases, metric_of
from mmedit_lib.runners.evaluate import evaluate_cases, locality_reference

from conftest import TINY

QUICK_GRACE = GRACEHparams(steps=40, lr=0.5)
QUICK_BALANCEDIT = BalancEditHparams(steps=30)


@pytest.fixture(scope="module")
def okedit(smoke_world, shipped):
    out = {}
    for name in TINY:
        world, _ = smoke_world(name)
        out[name] = load_cases(shipped(name), world, "okedit", n=3, seed=0)
    return out


def test_the_two_radius_weightings_and_which_one_shrinks_with_alpha():
    d_pos, d_neg = 1.0, 3.0
    appendix = [radius(d_pos, d_neg, a, "appendix") for a in (0.1, 0.2, 0.3)]
    main = [radius(d_pos, d_neg, a, "main") for a in (0.1, 0.2, 0.3)]
    assert appendix == sorted(appendix, reverse=True)  # Eq. 10: α on the positive, the radius shrinks (Fig. 5)
    assert main == sorted(main)  # Eq. 3: α on the negative, it grows
    assert radius(d_pos, d_neg, 1.0, "appendix") == d_pos and radius(d_pos, d_neg, 1.0, "main") == d_neg
    with pytest.raises(ValueError, match="weighting"):
        radius(1.0, 2.0, 0.5, "eq3")


def test_okedit_cases_score_every_rephrase_and_the_lookalike(okedit, shipped):
    name = TINY[0]
    bb, case = shipped(name), okedit[name][0]
    rec = case.request.record
    assert sum(metric_of(p) == "t_gen" for p in case.probes) == len(rec.rephrase_list) > 1
    assert sum(metric_of(p) == "m_gen" for p in case.probes) == len(rec.image_rephrase_list) > 1
    assert case.probes["m_loc"].target == rec.hard_loc_a and case.probes["m_loc"].prompt.find(rec.hard_loc_q) >= 0
    assert case.request.train_prompt == bb.vqa_prompt(rec.train_rephrase)
    assert case.request.train_prompt not in {q.prompt for q in case.probes.values()}  # never an evaluated probe
    reference = locality_reference(bb, [case], "answer-argmax")
    assert set(reference[case.case_id]) == {"t_loc", "m_loc"}
    score = evaluate_cases(bb, [case], reference, "tf-token", "answer-argmax")[0]
    assert set(score) == {"rel", "t_gen", "m_gen", "t_loc", "m_loc"}
    assert score["t_loc"] == score["m_loc"] == 1.0  # unedited: locality is kept by definition


@pytest.mark.parametrize("name", TINY)
def test_grace_expands_for_the_same_answer_and_splits_for_another(name, okedit, shipped):
    bb, case = shipped(name), okedit[name][0]
    before = state_hash(bb.model)
    near = dataclasses.replace(case.request, query=case.probes["t_gen"], case_id="near")
    hp = dataclasses.replace(QUICK_GRACE, eps_init=1e6)  # every key is "near" the first
    first = apply_grace(bb, case.request, hp)
    assert len(installed_codebook(bb).entries) == 1
    assert bb.greedy([case.request.query])[0] == case.request.query.target  # the value spans the answer, then ends
    same = apply_grace(bb, near, hp)
    book = installed_codebook(bb)
    assert len(book.entries) == 1 and book.entries[0].info["rule"] == "expanded"
    same.restore()
    other = apply_grace(bb, dataclasses.replace(near, query=dataclasses.replace(near.query, target="zzz")), hp)
    book = installed_codebook(bb)
    d = float(torch.dist(book.entries[0].key, book.entries[1].key))
    assert len(book.entries) == 2 and [e.info["rule"] for e in book.entries] == ["split", "split"]
    assert book.entries[1].radius == pytest.approx(d / 2) and book.entries[0].radius < d / 2
    other.restore()
    first.restore()
    assert state_hash(bb.model) == before and installed_codebook(bb) is None


@pytest.mark.parametrize("name", TINY)
def test_balancedit_radius_overlap_conflict_and_inspector(name, okedit, shipped):
    bb, cases = shipped(name), okedit[name]
    request = cases[0].request
    first = apply_balancedit(bb, request, QUICK_BALANCEDIT)
    entry = installed_codebook(bb).entries[0]
    assert entry.radius == pytest.approx(radius(entry.info["d_pos"], entry.info["d_neg"], 0.2, "appendix"))
    frame = entries_frame(installed_codebook(bb))
    assert list(frame.source) == [request.case_id] and frame.radius.iloc[0] > 0
    seen = lookup(bb, [request.query, cases[0].probes["t_loc"]], ["edit", "text"])
    assert seen.fired.tolist() == [True, False] and seen.distance.iloc[0] < 1e-3  # a text-only query is far
    assert bb.greedy([request.query])[0] == request.query.target  # decoding steps keep the codebook's decision
    same = apply_balancedit(bb, request, QUICK_BALANCEDIT)  # inside the radius, same answer: builds on it
    assert [e.info["rule"] for e in installed_codebook(bb).entries] == ["new", "overlap"]
    same.restore()
    changed = dataclasses.replace(request, query=dataclasses.replace(request.query, target="zzz"))
    conflict = apply_balancedit(bb, changed, QUICK_BALANCEDIT)  # the same question, another answer: replaced
    book = installed_codebook(bb)
    assert [(e.label, e.info["rule"]) for e in book.entries] == [("zzz", "conflict")]
    conflict.restore()
    first.restore()
    assert installed_codebook(bb) is None


def test_balancedit_needs_a_training_rephrase(okedit, shipped):
    bb, case = shipped(TINY[0]), okedit[TINY[0]][0]
    with pytest.raises(ValueError, match="training rephrase"):
        apply_balancedit(bb, dataclasses.replace(case.request, train_prompt=""), QUICK_BALANCEDIT)
    assert installed_codebook(bb) is None


def test_bad_codebook_settings_get_one_clear_error(okedit, shipped):
    bb, case = shipped(TINY[0]), okedit[TINY[0]][0]
    for bad, match in [({"distance": "manhattan"}, "distance"), ({"anchor": "gray"}, "anchor"),
                       ({"alpha": 1.5}, "alpha"), ({"weighting": "eq3"}, "weighting")]:
        with pytest.raises(ValueError, match=match):
            apply_balancedit(bb, case.request, dataclasses.replace(QUICK_BALANCEDIT, **bad))
    with pytest.raises(ValueError, match="value_init"):
        apply_grace(bb, case.request, dataclasses.replace(QUICK_GRACE, value_init="hot"))
    first = apply_grace(bb, case.request, QUICK_GRACE)
    with pytest.raises(RuntimeError, match="cannot stack"):
        apply_balancedit(bb, case.request, QUICK_BALANCEDIT)
    first.restore()
    assert installed_codebook(bb) is None


def test_okedit_files_under_the_official_name_load_and_bad_records_fail_whole(smoke_world, shipped, tmp_path):
    import json
    import shutil
    name = TINY[0]
    world, _ = smoke_world(name)
    records = json.loads((world / "okedit" / "eval.json").read_text())
    (tmp_path / "okedit").mkdir()
    (tmp_path / "okedit" / "okedit_eval.json").write_text(json.dumps(records))
    shutil.copytree(world / "images", tmp_path / "images")
    cases = load_cases(shipped(name), tmp_path, "okedit", n=2, seed=0)
    assert [c.case_id for c in cases] == [c.case_id for c in load_cases(shipped(name), world, "okedit", n=2, seed=0)]
    del records[1]["hard_loc_image"]
    (tmp_path / "okedit" / "okedit_eval.json").write_text(json.dumps(records))
    from mmedit_lib.data.loaders import DataError
    with pytest.raises(DataError, match="record 1.*hard_loc_image"):
        load_cases(shipped(name), tmp_path, "okedit", n=2, seed=0)


def test_a_bad_codebook_hparam_fails_before_a_run_writes_anything(tmp_path):
    from mmedit_lib.runners.run import RunSpec, run
    with pytest.raises(ValueError, match="weighting"):
        run(RunSpec(editor="balancedit", backbone=TINY[0], task="okedit", n=2, hparams={"weighting": "eq3"}),
            runs_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_the_positive_sample_comes_from_a_training_rephrase_never_an_evaluated_one(smoke_world):
    from mmedit_lib.data.loaders import load_records
    from mmedit_lib.runners.cases import data_file, training_rephrase
    from conftest import FIXTURES
    real = load_records(FIXTURES / "mmedit_vqa_eval_sample.json")  # the official MMEdit records carry their own
    assert [training_rephrase(r, "vqa") for r in real[:5]] == [r.extra["rephrased_questions_train"][0]
                                                                for r in real[:5]]
    world, _ = smoke_world(TINY[0])
    for task in ["vqa", "caption", "okedit"]:
        for rec in load_records(data_file(world, task))[:10]:
            positive = training_rephrase(rec, task)
            assert positive and positive not in {rec.src, rec.rephrase, *getattr(rec, "rephrase_list", ())}
