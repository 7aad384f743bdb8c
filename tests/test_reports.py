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
