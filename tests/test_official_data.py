"""The official MMEdit data as it is (issue 25, point 6): records with an empty answer are skipped as EasyEdit skips
them (counted, named, refused under `strict`), and the image and rephrased-image roots are parameters."""
import json

import pytest
import torch
from PIL import Image

from conftest import FIXTURES
from mmedit_lib.cli import main
from mmedit_lib.data.loaders import DataError, MissingImageError, SkippedRecord, load_records, read_records
from mmedit_lib.data.validate import validate_file
from mmedit_lib.runners.cases import TrainSplit, data_summary, load_cases

SAMPLE = FIXTURES / "mmedit_vqa_eval_sample.json"
EMPTY_ALT = 7  # the record whose alt is "" in the files below


def sample_rows(n=40, empty_alt=(EMPTY_ALT,)):
    rows = json.loads(SAMPLE.read_text())[:n]
    for i in empty_alt:
        rows[i]["alt"] = ""
    return rows


def write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))
    return path


def make_images(rows, root, rephrase_root, red=10, rephrase_red=200):
    """`image`/`m_loc` under `root`, `image_rephrase` under `rephrase_root`, each root's images one colour."""
    for r in rows:
        for field in ("image", "image_rephrase", "m_loc"):
            base, value = (rephrase_root, rephrase_red) if field == "image_rephrase" else (root, red)
            path = base / r[field]
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (4, 4), (value, 0, 0)).save(path)


class RedBackbone:
    """Stands in for a Backbone in `record_case`: an image's pixels are its red value, so a test sees which
    folder an image was read from."""

    def pixel_values(self, images):
        return torch.tensor([[float(img.getpixel((0, 0))[0])] for img in images])

    def vqa_prompt(self, question):
        return f"Question: {question} Short answer:"


def test_an_empty_alt_is_skipped_and_counted_not_the_whole_file_refused(tmp_path):
    path = write(tmp_path / "vqa_eval.json", sample_rows())
    records = load_records(path)  # today: DataError for the whole file
    assert len(records) == 39 and all(r.alt for r in records)
    loaded = read_records(path)
    assert loaded.skipped == [SkippedRecord(EMPTY_ALT, "alt")] and loaded.n_rows == 40
    assert EMPTY_ALT not in loaded.indices and loaded.indices[EMPTY_ALT] == EMPTY_ALT + 1
    assert [r.src for r in loaded.records] == [r["src"] for i, r in enumerate(sample_rows()) if i != EMPTY_ALT]


def test_strict_refuses_naming_the_record(tmp_path):
    path = write(tmp_path / "vqa_eval.json", sample_rows())
    with pytest.raises(DataError, match=f"record {EMPTY_ALT}: field\\(s\\) alt empty; refused \\(strict\\)"):
        read_records(path, strict=True)


def test_other_empty_fields_follow_the_2023_rule_unless_any_text_is_asked(tmp_path):
    rows = sample_rows(5, empty_alt=())
    rows[2]["loc_ans"] = ""
    path = write(tmp_path / "vqa" / "vqa_eval.json", rows)
    with pytest.raises(DataError, match="record 2: field 'loc_ans' is empty .*skip_rule='any-text'"):
        read_records(path)  # EasyEdit 2023 would have kept it and scored an empty answer: refused, by name
    loaded = read_records(path, skip_rule="any-text")  # EasyEdit's vqa.py since 2025
    assert loaded.skipped == [SkippedRecord(2, "loc_ans")] and len(loaded.records) == 4
    assert data_summary(tmp_path, "vqa", skip_rule="any-text")["skipped"] == [{"index": 2, "field": "loc_ans"}]
    with pytest.raises(ValueError, match="unknown skip_rule 'none'"):
        read_records(path, skip_rule="none")


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.pop("pred"), "record 3: missing field\\(s\\) pred"),
    (lambda r: r.update(src=["a"]), "record 3: field 'src' is not a string"),
    (lambda r: r.update(image=""), "record 3: field 'image' is empty"),
])
def test_bad_records_are_still_refused_even_beside_an_empty_alt(tmp_path, mutate, message):
    rows = sample_rows(5, empty_alt=(1,))
    mutate(rows[3])
    path = write(tmp_path / "rows.json", rows)
    with pytest.raises(DataError, match=message):
        read_records(path)
    report = validate_file(path, image_root=tmp_path)
    assert len(report.problems) == 1 and report.skipped == [SkippedRecord(1, "alt")] and not report.ok


def test_validate_names_the_skipped_record_and_passes_unless_strict(tmp_path, capsys):
    rows = sample_rows(10)
    make_images(rows, tmp_path / "coco", tmp_path / "coco")
    path = write(tmp_path / "vqa_eval.json", rows)
    assert main(["validate", str(path), "--image-root", str(tmp_path / "coco")]) == 0
    out = capsys.readouterr().out
    named = f"records with an empty answer: 1 skipped, as EasyEdit skips them (rule 'alt'): record {EMPTY_ALT} (alt)"
    assert named in out
    assert "read 10 records (MMEdit)" in out and out.rstrip().endswith("OK")
    assert main(["validate", str(path), "--image-root", str(tmp_path / "coco"), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "1 refused (strict)" in out and "FAILED: 0 schema problem(s), 0 missing image(s), 1 record(s)" in out


def test_rephrased_images_are_found_under_their_own_root(tmp_path, capsys):
    rows = sample_rows(10)
    make_images(rows, tmp_path / "coco", tmp_path / "rephrase")
    path = write(tmp_path / "vqa_eval.json", rows)
    report = validate_file(path, image_root=tmp_path / "coco", rephrase_image_root=tmp_path / "rephrase")
    assert report.ok and report.n_image_refs == 27 and report.rephrase_image_root == str(tmp_path / "rephrase")
    without = validate_file(path, image_root=tmp_path / "coco")
    assert len(without.missing_images) == 9 and all("(image_rephrase)" in m for m in without.missing_images)
    assert f"{tmp_path}/coco/{rows[0]['image_rephrase']}" in without.missing_images[0]
    argv = ["validate", str(path), "--image-root", str(tmp_path / "coco"), "--rephrase-image-root",
            str(tmp_path / "rephrase")]
    assert main(argv) == 0
    assert f"rephrase image root {tmp_path / 'rephrase'}" in capsys.readouterr().out


@pytest.fixture
def official(tmp_path):
    """The official layout (editing-data/vqa/vqa_{eval,train}.json) with the COCO images and the rephrased ones
    in two folders elsewhere, and a decoy of every rephrased image in the COCO folder."""
    rows = sample_rows(12)
    data = tmp_path / "editing-data"
    write(data / "vqa" / "vqa_eval.json", rows)
    write(data / "vqa" / "vqa_train.json", rows)
    make_images(rows, tmp_path / "coco", tmp_path / "rephrase")
    make_images(rows, tmp_path / "coco", tmp_path / "coco", rephrase_red=50)  # the decoys
    return data, tmp_path / "coco", tmp_path / "rephrase"


def test_load_cases_takes_both_roots_and_keeps_file_indices_in_case_ids(official):
    data, coco, rephrase = official
    cases = load_cases(RedBackbone(), data, "vqa", n=11, image_root=coco, rephrase_image_root=rephrase)
    assert [c.case_id for c in cases] == [f"vqa-eval-{i:05d}" for i in range(12) if i != EMPTY_ALT]
    assert all(c.probes["rel"].image.item() == 10 and c.probes["m_loc"].image.item() == 10 for c in cases)
    assert all(c.probes["m_gen"].image.item() == 200 for c in cases)  # not the decoy (50) under the image root
    decoys = load_cases(RedBackbone(), data, "vqa", n=2, image_root=coco)  # default rephrase root: the image root
    assert all(c.probes["m_gen"].image.item() == 50 for c in decoys)
    with pytest.raises(ValueError, match="between 1 and the 11 records"):
        load_cases(RedBackbone(), data, "vqa", n=12, image_root=coco)  # drawn among the kept records only
    with pytest.raises(DataError, match=f"record {EMPTY_ALT}: .*strict"):
        load_cases(RedBackbone(), data, "vqa", n=2, image_root=coco, strict=True)


def test_train_split_takes_both_roots(official):
    data, coco, rephrase = official
    with pytest.raises(MissingImageError):  # the COCO folder is not beside the data: it cannot be guessed
        TrainSplit.load(RedBackbone(), data, ["vqa"])[0]
    train = TrainSplit.load(RedBackbone(), data, ["vqa"], image_root=coco, rephrase_image_root=rephrase)
    assert len(train) == 11 and train.skipped == {"vqa": [SkippedRecord(EMPTY_ALT, "alt")]}
    case = train[EMPTY_ALT]
    assert case.case_id == f"vqa-train-{EMPTY_ALT + 1:05d}" and case.request.record.src == sample_rows()[8]["src"]
    assert case.probes["rel"].image.item() == 10 and case.probes["m_gen"].image.item() == 200
    with pytest.raises(DataError, match="strict"):
        TrainSplit.load(RedBackbone(), data, ["vqa"], image_root=coco, strict=True)


def test_data_summary_counts_exactly_and_lists_a_capped_few(tmp_path):
    skipped = tuple(range(0, 40, 2))  # 20 records
    write(tmp_path / "vqa" / "vqa_eval.json", sample_rows(40, empty_alt=skipped))
    summary = data_summary(tmp_path, "vqa", show=5)
    assert summary["file"] == str(tmp_path / "vqa" / "vqa_eval.json")
    assert (summary["n_rows"], summary["n_records"], summary["n_skipped"]) == (40, 20, 20)
    assert summary["skipped"] == [{"index": i, "field": "alt"} for i in (0, 2, 4, 6, 8)]
    assert summary["skipped_listed"] == 5 and summary["skip_rule"] == "alt"
    assert json.loads(json.dumps(summary)) == summary  # goes into the manifest as it is
    with pytest.raises(DataError, match="record 0: .*strict"):
        data_summary(tmp_path, "vqa", strict=True)


def test_a_file_with_every_answer_empty_says_so(tmp_path):
    write(tmp_path / "vqa" / "vqa_eval.json", sample_rows(3, empty_alt=(0, 1, 2)))
    with pytest.raises(DataError, match="no records \\(3 skipped for an empty answer\\)"):
        load_cases(RedBackbone(), tmp_path, "vqa", n=1)


def test_okedit_rephrased_images_come_from_the_rephrase_root_and_the_lookalike_from_the_image_root(tmp_path):
    from mmedit_lib.data.records import MMEDIT_FIELDS
    row = {f: f"{f} text" for f in MMEDIT_FIELDS}
    row.update(image="img/a.png", image_rephrase="reph/a0.png", m_loc="img/m.png", category="color",
               ground_truth="red", rephrase_list=["q1?", "q2?"], image_rephrase_list=["reph/a1.png", "reph/a2.png"],
               train_rephrase="t?", hard_loc_image="img/h.png", hard_loc_q="h?", hard_loc_a="blue")
    write(tmp_path / "data" / "okedit" / "okedit_eval.json", [row, {**row, "alt": ""}])
    for rel in ("img/a.png", "img/m.png", "img/h.png"):
        make_images([{"image": rel, "image_rephrase": rel, "m_loc": rel}], tmp_path / "coco", tmp_path / "none")
    for rel in ("reph/a0.png", "reph/a1.png", "reph/a2.png"):
        make_images([{"image": rel, "image_rephrase": rel, "m_loc": rel}], tmp_path / "none", tmp_path / "rephrase")
    (case,) = load_cases(RedBackbone(), tmp_path / "data", "okedit", n=1, image_root=tmp_path / "coco",
                         rephrase_image_root=tmp_path / "rephrase")
    assert case.case_id == "okedit-eval-00000"
    assert [case.probes[p].image.item() for p in ("rel", "m_gen", "m_gen:1", "m_loc")] == [10, 200, 200, 10]
    report = validate_file(tmp_path / "data" / "okedit" / "okedit_eval.json", image_root=tmp_path / "coco",
                           rephrase_image_root=tmp_path / "rephrase")
    assert report.ok and report.n_image_refs == 6 and report.skipped == [SkippedRecord(1, "alt")]
