"""The report helpers behind the sequential, cost and real-backbone pages: contrasts with sequence-level CIs,
cost ratios, the registry's sequential capability, and memory at full size from parameter counts."""
import pytest

from mmedit_lib.editors.registry import EDITORS
from mmedit_lib.metrics.aggregate import summarize
from mmedit_lib.report.cost import ratio
from mmedit_lib.report.onestep import LABELS
from mmedit_lib.report.sequential import contrast, why_not_sequential


def rows(values, group_size):
    return [{"rel": v, "t_gen": v, "m_gen": v, "t_loc": v, "m_loc": v, "group": i // group_size,
             "accuracy_protocol": "tf-token", "locality_protocol": "answer-argmax"} for i, v in enumerate(values)]


def test_a_contrast_resamples_sequences_and_weights_runs():
    one_sequence = rows([1, 0, 1, 0], group_size=4)
    c = contrast([(one_sequence, 1)], "rel")
    assert c["mean"] == 50 and c["ci_low"] == c["ci_high"] == 50  # one sequence: nothing to resample
    by_case = contrast([(one_sequence, 1)], "rel", by="case")
    assert by_case["ci_low"] < 50 < by_case["ci_high"]
    a, b = rows([1] * 8, 4), rows([0, 1] * 4, 2)
    assert contrast([(a, 0.5), (b, 0.5)], "overall")["mean"] == 75
    d = contrast([(a, 1), (b, -1)], "locality")
    assert d["mean"] == 50 and d["ci_low"] <= 50 <= d["ci_high"]


def test_summaries_by_sequence_are_never_narrower_than_one_sequence_allows():
    data = rows([1] * 10 + [0] * 10, group_size=10)
    by_group, by_case = summarize(data, by="group"), summarize(data, by="case")
    assert by_group.loc["rel", "ci_high"] - by_group.loc["rel", "ci_low"] >= \
        by_case.loc["rel", "ci_high"] - by_case.loc["rel", "ci_low"]
    with pytest.raises(ValueError, match="by is one of"):
        summarize(data, by="sequence")


def test_ratio_of_means_with_its_interval():
    r = ratio([{"edit_seconds": 2.0}] * 5, [{"edit_seconds": 1.0}] * 5)
    assert r == {"mean": 2.0, "ci_low": 2.0, "ci_high": 2.0}
    with pytest.raises(ValueError, match="no ratio"):
        ratio([{"edit_seconds": 1.0}], [{"edit_seconds": 0.0}])


def test_which_editors_keep_several_edits_comes_from_the_registry_and_the_hparams():
    assert "one fact at a time" in why_not_sequential("ike", "tiny-minigpt4")
    assert "text context" in why_not_sequential("unike", "tiny-minigpt4", {"external": "vanilla"})
    assert why_not_sequential("unike", "tiny-minigpt4") is None and why_not_sequential("ft-last", "tiny-minigpt4") is None


def test_memory_at_full_size_has_every_editor_and_counts_the_real_architectures():
    from mmedit_lib.report.full_size import editor_memory, parameter_counts
    counts = parameter_counts("blip2-opt-2.7b")
    assert 3.7e9 < counts["total"] < 3.8e9 and 0.98e9 < counts["vision"] < 1.0e9  # EVA ViT-g: ~1B
    assert 6.7e9 < parameter_counts("minigpt4-7b")["language"] < 6.8e9  # LLaMA-7B
    table = editor_memory("blip2-opt-2.7b", n_edits=10).set_index("editor")
    assert set(table.index) == {LABELS[e] for e in EDITORS if e != "unedited"}
    # SERAC's counterfactual model keeps only what it trained (the rest is the backbone's, shared): by default the
    # whole language model; with the full-size file EasyEdit's separate OPT-125m and its projection
    language = 2 * counts["language"] / 2 ** 30
    assert table.loc["SERAC", "prepare keeps (GiB)"] == pytest.approx(language, rel=1e-3)
    full = editor_memory("blip2-opt-2.7b", backbone_hparams="blip2-opt-2.7b").set_index("editor")
    assert 0.23 < full.loc["SERAC", "prepare keeps (GiB)"] < 0.25  # 125.2M + 0.6M weights in 16 bits, + classifier
    assert table.loc["BalancEdit", "each kept edit (MiB)"] > 1000 * table.loc["GRACE", "each kept edit (MiB)"]
    # LLaVA-1.5-7B: 7.06B parameters, no Q-Former; MEND (vision module) edits the last read CLIP block's FFN and the
    # projector (1024 -> 4096 -> 4096), so it keeps more per edit than on BLIP-2, where the bridge is 768 wide
    llava = parameter_counts("llava-1.5-7b")
    assert 7.06e9 < llava["total"] < 7.07e9 and llava["qformer"] == 0 and 0.30e9 < llava["vision"] < 0.31e9
    on_llava = editor_memory("llava-1.5-7b", backbone_hparams="llava-1.5-7b").set_index("editor")
    assert set(on_llava.index) == set(table.index)
    assert on_llava.loc["MEND (vision module)", "each kept edit (MiB)"] > full.loc["MEND (vision module)",
                                                                                    "each kept edit (MiB)"]


def test_carry_over_outcomes_follow_the_verdicts():
    from mmedit_lib.report.carry_over import OUTCOMES, carries, outcome_counts
    import pandas as pd
    R, N, I = "reproduced", "not reproduced", "inconclusive"
    assert carries(R, [R, N]) == "holds here too"
    assert carries(R, [I, N]) == "holds here, not on the stand-ins"
    assert carries(N, [I, R]) == "does not carry over"
    assert carries(N, [N, I]) == "fails everywhere"
    assert carries(I, [R, R]) == carries("not yet run", [R, R]) == "undecided here"
    counts = outcome_counts(pd.DataFrame({"carries": ["holds here too", "holds here too", "fails everywhere"]}))
    assert list(counts) == list(OUTCOMES) and counts["holds here too"] == 2 and counts["undecided here"] == 0


def test_claim_sets_decide_one_cell_with_the_one_rule():
    """The claims are stated once (claim_sets) and decided by tables.verdict; a cell without a method's runs says
    so rather than guessing."""
    import pandas as pd
    from mmedit_lib.report.claim_sets import balancedit_table3, decide, mmedit_table2

    def summary(**means):
        return pd.DataFrame({"mean": means, "ci_low": {k: v - 1 for k, v in means.items()},
                             "ci_high": {k: v + 1 for k, v in means.items()}})
    cell = {"FT (last layer)": summary(t_loc=50.0, m_loc=10.0, rel=99.0), "MEND": summary(m_loc=60.0, rel=97.0,
                                                                                           t_loc=95.0, t_gen=90.0)}
    rows = decide(mmedit_table2, cell, "x, vqa", "vqa")
    by_text = {r["claim"]: r["verdict"] for r in rows}
    assert by_text["FT (last layer) damages T-Locality (x, vqa)"] == "reproduced"
    assert by_text["MEND keeps M-Locality better than FT (last layer) (x, vqa)"] == "reproduced"
    assert by_text["IKE reaches high reliability (> 80%) (x, vqa)"] == "not yet run"
    assert len(balancedit_table3("x", "okedit")) == 13 and len(balancedit_table3("x", "vqa")) == 4
