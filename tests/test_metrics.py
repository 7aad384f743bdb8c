"""Each metric protocol's semantics, pinned with hand-made logits; HM and bootstrap CIs."""
import numpy as np
import pytest
import torch

from mmedit_lib.metrics.aggregate import bootstrap_ci, harmonic_mean, hm_from_means, summarize
from mmedit_lib.metrics.protocols import accuracy_score, check_protocols, locality_fingerprint, locality_score


def one_hot_logits(ids, vocab=6):
    logits = torch.zeros(len(ids), vocab)
    logits[torch.arange(len(ids)), torch.tensor(ids)] = 1.0
    return logits


def test_tf_token_averages_target_tokens_and_tf_exact_needs_all():
    logits = one_hot_logits([2, 3, 4])
    assert accuracy_score("tf-token", logits, torch.tensor([2, 3, 5])) == pytest.approx(2 / 3)
    assert accuracy_score("tf-exact", logits, torch.tensor([2, 3, 5])) == 0.0
    assert accuracy_score("tf-exact", logits, torch.tensor([2, 3, 4])) == 1.0
    with pytest.raises(ValueError, match="non-empty target"):
        accuracy_score("tf-token", logits[:0], torch.tensor([], dtype=torch.long))


def test_gen_exact_compares_normalized_text():
    assert accuracy_score("gen-exact", generated="  Brick. ", target="brick") == 1.0
    assert accuracy_score("gen-exact", generated="brick wall", target="brick") == 0.0


def test_answer_argmax_compares_only_the_answer_positions():
    before_target, after_target = one_hot_logits([1, 2]), one_hot_logits([1, 3])
    sequence = one_hot_logits([0, 0, 0])  # ignored by answer-argmax
    before = locality_fingerprint("answer-argmax", sequence, before_target, has_image=False)
    after = locality_fingerprint("answer-argmax", one_hot_logits([5, 5, 5]), after_target, has_image=False)
    assert locality_score(before, after) == 0.5


def test_topk_all_is_top1_for_text_and_top10_rank_by_rank_for_images():
    torch.manual_seed(0)
    seq = torch.randn(4, 20)
    fp_text = locality_fingerprint("topk-all", seq, seq[:1], has_image=False)
    fp_image = locality_fingerprint("topk-all", seq, seq[:1], has_image=True)
    assert fp_text.shape == (4, 1) and fp_image.shape == (4, 10)
    swapped = seq.clone()
    order = seq[0].argsort(descending=True)
    swapped[0, order[8]], swapped[0, order[9]] = seq[0, order[9]], seq[0, order[8]]  # ranks 9 and 10 swap
    after_image = locality_fingerprint("topk-all", swapped, swapped[:1], has_image=True)
    assert locality_score(fp_image, after_image) == pytest.approx(1 - 2 / 40)  # same set, two ranks differ
    after_text = locality_fingerprint("topk-all", swapped, swapped[:1], has_image=False)
    assert locality_score(fp_text, after_text) == 1.0  # top-1 unchanged: text locality does not see it


def test_unknown_protocols_are_refused_by_name():
    with pytest.raises(ValueError, match="tf-token, tf-exact, gen-exact"):
        check_protocols("token", "answer-argmax")
    with pytest.raises(ValueError, match="answer-argmax, topk-all"):
        check_protocols("tf-token", "argmax")


def test_harmonic_mean_matches_balancedit_table3_and_is_zero_with_a_zero():
    assert harmonic_mean([96.58, 97.77, 68.82]) == pytest.approx(85.43, abs=0.01)  # MEND, MiniGPT-4, MMEDIT
    assert harmonic_mean([95.88, 96.20, 3.20]) == pytest.approx(9.00, abs=0.01)  # FT, MiniGPT-4, MMEDIT
    assert harmonic_mean([50.0, 0.0, 90.0]) == 0.0
    means = {"t_gen": 90.0, "m_gen": 90.0, "t_loc": 30.0, "m_loc": 90.0}
    assert hm_from_means(means) == pytest.approx(90.0)
    assert hm_from_means(means, "t_loc") == pytest.approx(3 / (2 / 90 + 1 / 30))


def test_bootstrap_ci_brackets_the_mean_and_narrows_with_more_cases():
    rng = np.random.default_rng(1)
    small, large = rng.random(20) < 0.7, rng.random(2000) < 0.7
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert hi_l - lo_l < hi_s - lo_s
    assert bootstrap_ci(np.ones(10)) == (1.0, 1.0)


def _row(**metrics):
    return {"accuracy_protocol": "tf-token", "locality_protocol": "answer-argmax", **metrics}


def test_summarize_gives_percent_means_with_cis_and_refuses_mixed_protocols():
    rows = [_row(rel=1.0, t_gen=1.0, m_gen=0.5, t_loc=1.0, m_loc=0.0), _row(rel=0.0, t_gen=1.0, m_gen=1.0,
                                                                              t_loc=1.0, m_loc=1.0)]
    table = summarize(rows)
    assert table.loc["rel", "mean"] == 50.0 and table.loc["m_gen", "mean"] == 75.0
    assert table.loc["hm", "mean"] == pytest.approx(harmonic_mean([100.0, 75.0, 50.0]))
    assert (table["ci_low"] <= table["mean"]).all() and (table["mean"] <= table["ci_high"]).all()
    with pytest.raises(ValueError, match="mix metric protocols"):
        summarize(rows + [{**rows[0], "locality_protocol": "topk-all"}])


def test_averaged_generality_and_locality_are_per_case_means_of_their_two_metrics():
    from mmedit_lib.metrics.aggregate import summarize_with_averages
    rows = [_row(rel=1.0, t_gen=1.0, m_gen=0.0, t_loc=1.0, m_loc=0.5), _row(rel=1.0, t_gen=1.0, m_gen=1.0,
                                                                              t_loc=0.0, m_loc=0.0)]
    table = summarize_with_averages(rows)
    assert table.loc["generality", "mean"] == 75.0 and table.loc["locality", "mean"] == 37.5
    assert table.loc["generality", "ci_low"] == 50.0 and table.loc["generality", "ci_high"] == 100.0
    assert table.loc["rel", "mean"] == summarize(rows).loc["rel", "mean"]
