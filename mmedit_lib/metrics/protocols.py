"""Metric protocols: how one probe is scored, by name. No two protocols are ever averaged together.

    >>> import torch
    >>> logits = torch.tensor([[0.1, 0.9], [0.8, 0.2]])            # two target positions, vocabulary of 2
    >>> accuracy_score("tf-token", logits, torch.tensor([1, 1]))
    0.5
    >>> accuracy_score("tf-exact", logits, torch.tensor([1, 1]))
    0.0
    >>> accuracy_score("gen-exact", generated="Red.", target="red")
    1.0

Accuracy (rel, t_gen, m_gen), scored against the edit target:
- `tf-token`: teacher-forced argmax over the target tokens == target tokens, averaged (both of EasyEdit's 2023
  multimodal paths, so every MMEdit row);
- `tf-exact`: 1 only when every target token is right under teacher forcing;
- `gen-exact`: the greedy answer, normalized, equals the target, normalized.
Locality (t_loc, m_loc), scored post-edit against the *unedited* model's fingerprint of the same probe:
- `answer-argmax`: argmax tokens at the locality answer's positions, the share equal (EasyEdit's 2023
  `MultimodalEditor`; the nearest rule to its IKE branch, which produced MMEdit's IKE row);
- `topk-all`: top-1 ids (text-only probes) / top-10 ids (probes with an image) at every position, compared rank
  by rank, the share equal (EasyEdit's `MultimodalTrainer` from its first version, Oct 2023, which produced
  MMEdit's MEND, SERAC and, by our reading, KE and FT rows).
Which paper row was scored with which is recorded once, in `metrics.provenance`; `paper` as a protocol name
(in the report helpers and notebooks) means that row's protocols.
"""
from __future__ import annotations

import torch

from .accuracy import normalize_answer, token_accuracy

ACCURACY_PROTOCOLS = ("tf-token", "tf-exact", "gen-exact")
LOCALITY_PROTOCOLS = ("answer-argmax", "topk-all")
TOPK_TEXT, TOPK_IMAGE = 1, 10


def check_protocols(accuracy: str, locality: str) -> None:
    """ValueError naming the known protocols when either name is unknown."""
    if accuracy not in ACCURACY_PROTOCOLS:
        raise ValueError(f"unknown accuracy protocol {accuracy!r}; known: {', '.join(ACCURACY_PROTOCOLS)}")
    if locality not in LOCALITY_PROTOCOLS:
        raise ValueError(f"unknown locality protocol {locality!r}; known: {', '.join(LOCALITY_PROTOCOLS)}")


def accuracy_score(protocol: str, logits: torch.Tensor | None = None, target_ids: torch.Tensor | None = None,
                   generated: str | None = None, target: str | None = None) -> float:
    """One probe's accuracy under `protocol`: teacher-forced (logits (T, V), target ids (T,)) or generated text."""
    if protocol == "gen-exact":
        if generated is None or target is None:
            raise ValueError("gen-exact scores a generated answer against the target text")
        return float(normalize_answer(generated) == normalize_answer(target))
    if logits is None or target_ids is None or len(target_ids) == 0:
        raise ValueError(f"{protocol} needs the target logits and a non-empty target")
    target_ids = target_ids.to(logits.device)
    if protocol == "tf-token":
        return token_accuracy(logits, target_ids)
    if protocol == "tf-exact":
        return float(bool((logits.argmax(-1) == target_ids).all()))
    raise ValueError(f"unknown accuracy protocol {protocol!r}; known: {', '.join(ACCURACY_PROTOCOLS)}")


def locality_fingerprint(protocol: str, sequence_logits: torch.Tensor, target_logits: torch.Tensor,
                         has_image: bool) -> torch.Tensor:
    """What locality compares before and after an edit: token ids, (T,) or (L, k)."""
    if protocol == "answer-argmax":
        return target_logits.argmax(-1).cpu()
    if protocol == "topk-all":
        k = TOPK_IMAGE if has_image else TOPK_TEXT
        return sequence_logits.topk(k, dim=-1).indices.cpu()
    raise ValueError(f"unknown locality protocol {protocol!r}; known: {', '.join(LOCALITY_PROTOCOLS)}")


def locality_score(before: torch.Tensor, after: torch.Tensor) -> float:
    """Share of fingerprint entries (positions, or positions x ranks) unchanged by the edit.

    Fingerprints of different lengths (`topk-all` on a query that a routing editor such as IKE rewrote into its
    in-context format) are compared on their common trailing positions: both end with the answer.
    """
    if before.shape[1:] != after.shape[1:] or before.dim() == 0:
        raise ValueError(f"fingerprints differ in shape: {tuple(before.shape)} vs {tuple(after.shape)}")
    n = min(len(before), len(after))
    if n == 0:
        raise ValueError("empty locality fingerprint")
    return (before[len(before) - n:] == after[len(after) - n:]).float().mean().item()
