"""The helpers every chapter calls (`mmedit_lib.chapter`), the CI drawings of `report.figures`, and the rules of
`report.unike_sequential.majority` and `world.writer.case_sizes`."""
import json

import pandas as pd
import pytest


def test_show_verdicts_records_what_it_shows(tmp_path, monkeypatch):
    from mmedit_lib.chapter import show_verdicts
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objects, **_: shown.extend(objects))
    monkeypatch.setenv("MMEDIT_EXECUTED_DIR", str(tmp_path))
    verdicts = [{"claim": "A beats B", "source": "T1", "verdict": "reproduced", "evidence": "1 vs 0"},
                {"claim": "C beats D", "source": "T1", "verdict": "inconclusive", "evidence": "0 vs 0"}]
    assert show_verdicts("toy_chapter", verdicts) is None  # nothing echoed twice as a cell's last value
    assert json.loads((tmp_path / "toy_chapter.verdicts.json").read_text()) == verdicts
    table, counts = shown
    assert list(table.data.verdict) == ["reproduced", "inconclusive"]
    assert counts.data == "**Verdicts:** 1 reproduced, 1 inconclusive"


def test_ci_on_bars_draws_each_interval_on_its_bar():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    from mmedit_lib.report.figures import ci_on_bars
    long = pd.DataFrame({"method": ["A", "B", "A", "B"], "metric": ["rel", "rel", "loc", "loc"],
                         "mean": [50.0, 60.0, 70.0, 80.0], "ci_low": [40.0, 55.0, 65.0, 70.0],
                         "ci_high": [60.0, 65.0, 75.0, 90.0]})
    ax = sns.barplot(data=long, x="method", y="mean", hue="metric", errorbar=None)
    ci_on_bars(ax, [part for _, part in long.groupby("metric", sort=False)])
    drawn = [c for c in ax.containers if hasattr(c, "lines") and c.lines[2]]
    segments = [seg for c in drawn for seg in c.lines[2][0].get_segments()]
    centres = [bar.get_x() + bar.get_width() / 2 for bars in ax.containers[:2] for bar in bars]
    assert sorted(round(s[0][0], 6) for s in segments) == sorted(round(x, 6) for x in centres)
    assert sorted((s[0][1], s[1][1]) for s in segments) == sorted(zip(long.ci_low, long.ci_high))
    plt.close("all")


def test_majority_needs_more_than_half():
    from mmedit_lib.report.unike_sequential import majority
    votes = [{"verdict": v} for v in ("reproduced", "reproduced", "inconclusive", "not reproduced")]
    assert majority("most", "src", votes, "methods")["verdict"] == "inconclusive"  # 2 of 4 is not a majority
    assert majority("most", "src", votes[:3], "methods")["verdict"] == "reproduced"
    assert majority("most", "src", votes[2:] + votes[3:], "methods")["verdict"] == "not reproduced"
    assert majority("most", "src", votes[:3], "methods")["evidence"] == "2 reproduced, 1 inconclusive of 3 methods"


def test_case_sizes_come_from_the_benchmarks():
    from mmedit_lib.data.benchmarks import BENCHMARKS
    from mmedit_lib.world.writer import case_sizes
    assert case_sizes()["okedit"] == BENCHMARKS["okedit"].world_sizes
    assert case_sizes(overrides={("vqa", "eval"): 7})["vqa"] == {"eval": 7, "train": 3000}
    with pytest.raises(ValueError, match="no world cases for 'nope'"):
        case_sizes(overrides={("nope", "eval"): 3})
