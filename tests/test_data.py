import json

import pytest

from mmedit_lib.cli import main
from mmedit_lib.data.loaders import DataError, MissingImageError, load_image, load_records
from mmedit_lib.data.records import MMEDIT_FIELDS, MMEditRecord, OKEditRecord
from mmedit_lib.data.validate import validate_file

from conftest import FIXTURES

SAMPLE = FIXTURES / "mmedit_vqa_eval_sample.json"


def test_real_sample_loads_with_extra_keys_kept():
    records = load_records(SAMPLE)
    assert len(records) == 40
    first = records[0]
    assert isinstance(first, MMEditRecord) and not isinstance(first, OKEditRecord)
    assert first.src == "How many tennis balls are in the picture?" and first.alt == "2"
    assert first.extra["locality_answer_train"] == "3"
    assert len(first.extra["rephrased_questions_train"]) == 3
    assert first.to_dict() == json.loads(SAMPLE.read_text())[0]


def test_validate_real_sample_reports_missing_images_and_fails(capsys, tmp_path):
    code = main(["validate", str(SAMPLE), "--image-root", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "read 40 records (MMEdit)" in out
    assert "extra keys kept: rephrased_questions_train, locality_answer_train" in out
    assert f"{tmp_path}/val2014/COCO_val2014_000000451435.jpg" in out
    assert "missing images:" in out and "Traceback" not in out


def test_validate_passes_when_the_images_exist(tmp_path, capsys):
    records = json.loads(SAMPLE.read_text())[:3]
    for r in records:
        for field in ("image", "image_rephrase", "m_loc"):
            path = tmp_path / r[field]
            path.parent.mkdir(parents=True, exist_ok=True)
            from PIL import Image
            Image.new("RGB", (4, 4)).save(path)
    data = tmp_path / "three.json"
    data.write_text(json.dumps(records))
    assert main(["validate", str(data)]) == 0
    assert "OK" in capsys.readouterr().out


def test_missing_image_is_one_clear_error_naming_the_file(tmp_path):
    record = load_records(SAMPLE)[0]
    with pytest.raises(MissingImageError, match="COCO_val2014_000000451435.jpg"):
        load_image(record.image, image_root=tmp_path)


def test_malformed_json_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"src": "x",')
    with pytest.raises(DataError, match="malformed JSON at line 1"):
        load_records(bad)
    assert main(["validate", str(bad)]) == 1
    assert "malformed JSON" in capsys.readouterr().out


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.pop("alt"), "record 1: missing field\\(s\\) alt"),
    (lambda r: r.update(src="  "), "record 1: field 'src' is empty"),
])
def test_bad_record_names_the_record_and_field(tmp_path, mutate, message):
    rows = json.loads(SAMPLE.read_text())[:2]
    mutate(rows[1])
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(DataError, match=message):
        load_records(path)
    report = validate_file(path, image_root=tmp_path)
    assert report.n_records == 2 and len(report.problems) == 1 and not report.ok


def test_top_level_must_be_a_list(tmp_path):
    path = tmp_path / "obj.json"
    path.write_text('{"src": "x"}')
    with pytest.raises(DataError, match="expected a JSON list"):
        load_records(path)


def test_okedit_records_are_recognised(tmp_path):
    row = {f: "x" for f in MMEDIT_FIELDS}
    row.update(category="color", ground_truth="red", rephrase_list=["a", "b"], image_rephrase_list=["i.png"],
               train_rephrase="t", hard_loc_image="h.png", hard_loc_q="q", hard_loc_a="blue", note="kept")
    path = tmp_path / "ok.json"
    path.write_text(json.dumps([row]))
    (record,) = load_records(path)
    assert isinstance(record, OKEditRecord)
    assert record.rephrase_list == ["a", "b"] and record.extra == {"note": "kept"}
    assert "h.png" in record.image_paths() and "i.png" in record.image_paths()


@pytest.mark.parametrize("metrics", [("t_gen", "t_loc"), ("rel", "m_loc", "t_gen"), ("rel", "bleu")])
def test_a_benchmarks_metrics_are_checked_when_it_registers(metrics):
    """Its metrics are among the five, in their order, and include rel (the edit itself)."""
    import dataclasses
    from mmedit_lib.data.benchmarks import BENCHMARKS, get_benchmark, register
    mine = dataclasses.replace(get_benchmark("vqa"), name="vqa-mine", metrics=metrics)
    with pytest.raises(ValueError, match="must be among"):
        register(mine)
    assert "vqa-mine" not in BENCHMARKS


def test_probes_outside_or_short_of_a_benchmarks_metrics_are_one_clear_error(smoke_world, shipped, monkeypatch):
    import dataclasses
    from mmedit_lib.data import benchmarks
    from mmedit_lib.runners.cases import load_cases
    world, _ = smoke_world("tiny-blip2-opt")
    bb = shipped("tiny-blip2-opt")
    fewer = dataclasses.replace(benchmarks.BENCHMARKS["vqa"], metrics=("rel", "t_gen", "t_loc", "m_loc"))
    monkeypatch.setitem(benchmarks.BENCHMARKS, "vqa", fewer)
    with pytest.raises(ValueError, match=r"scores rel, t_gen, t_loc, m_loc: its probes\(\) gave a probe for m_gen"):
        load_cases(bb, world, "vqa", n=2, seed=0)
    short = dataclasses.replace(benchmarks.BENCHMARKS["vqa"], metrics=benchmarks.METRICS,
                                probes=lambda build, rec: {k: v for k, v in benchmarks.mmedit_probes(build, rec).items()
                                                           if k != "t_loc"})
    monkeypatch.setitem(benchmarks.BENCHMARKS, "vqa", short)
    with pytest.raises(ValueError, match="gave no t_loc probe"):
        load_cases(bb, world, "vqa", n=2, seed=0)
