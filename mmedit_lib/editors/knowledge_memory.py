"""UniKE's in-context knowledge memory: (h_sem, h_pos, h_neg) per edited layer, from the backbone's own errors.

    >>> triplets = error_triplets(train)                  # (QI, A_pos = the truth, A_neg = the backbone's answer)
    ... # doctest: +SKIP
    >>> memory = extract_states(bb, triplets, layers=(0, 1, 2, 3))                  # doctest: +SKIP
    >>> memory[3].h_sem.shape                              # (n_triplets, d_model)   # doctest: +SKIP

UniKE §3.3 and Appendix C: QI+A_pos (positive knowledge) and QI+A_neg (negative knowledge) each go through the
backbone; at every edited layer we keep the states its attention reads (the input of the query projection, i.e.
the normalised pre-attention hidden state h_pre):
- h_sem at the last token of the question, before the response (the same in both passes);
- h_pos / h_neg at the final token of the whole positive / negative input.
The train split's records are the backbone's own errors (`pred` is what it answered, `alt` the truth), so each
record is one triplet; records whose `pred` equals `alt` (or is empty) are skipped.
"""
from __future__ import annotations

import dataclasses

import torch
from tqdm.auto import tqdm

from ..backbones.backbone import Backbone, Query
from .hooks import read_and_rewrite


@dataclasses.dataclass
class LayerMemory:
    h_sem: torch.Tensor  # (n, d)
    h_pos: torch.Tensor  # (n, d)
    h_neg: torch.Tensor  # (n, d)


def error_triplets(train, limit: int | None = None) -> list[tuple[Query, str, str]]:
    """(QI: the edit query without its target, A_pos, A_neg) per train case whose recorded answer is wrong."""
    triplets = []
    for i in range(len(train)):
        if limit is not None and len(triplets) >= limit:
            break
        case = train[i]
        record = case.request.record
        if record.pred.strip() and record.pred.strip() != record.alt.strip():
            triplets.append((case.request.query, record.alt, record.pred))
    return triplets


def pre_attention_states(bb: Backbone, queries: list[Query], layers) -> tuple[dict[int, torch.Tensor], object]:
    """layer -> (B, L, d) inputs of the attention's query projection for `queries` (raw, not routed); the batch."""
    batch = bb.encode(queries)
    with torch.no_grad(), read_and_rewrite(bb, "attn_in", "attn_out", {layer: None for layer in layers}) as seen:
        bb.logits(batch)
    width = batch.input_ids.shape[1]
    return {layer: states.reshape(len(queries), width, -1) for layer, states in seen.items()}, batch


def query_states(bb: Backbone, query: Query, answer: str, layers) -> tuple[dict[int, torch.Tensor], ...]:
    """For QI+answer: layer -> h_sem (d,) at the question's last token and layer -> h_final (d,) at the last token."""
    states, batch = pre_attention_states(bb, [dataclasses.replace(query, target=answer)], layers)
    sl = batch.target_slices[0]
    return ({layer: s[0, sl.start - 1] for layer, s in states.items()},
            {layer: s[0, sl.stop - 1] for layer, s in states.items()})


def extract_states(bb: Backbone, triplets, layers, batch_size: int = 32, progress: bool = True) -> dict[int, LayerMemory]:
    """layer -> LayerMemory for `triplets` (see the module docstring)."""
    chunks = {layer: ([], [], []) for layer in layers}
    for start in tqdm(range(0, len(triplets), batch_size), desc="UniKE knowledge states", disable=not progress,
                      mininterval=5):
        part = triplets[start:start + batch_size]
        queries = [dataclasses.replace(q, target=a) for q, pos, neg in part for a in (pos, neg)]
        states, batch = pre_attention_states(bb, queries, layers)
        for layer in layers:
            sem, pos, neg = chunks[layer]
            for row, sl in enumerate(batch.target_slices):
                last = states[layer][row, sl.stop - 1]
                if row % 2 == 0:
                    sem.append(states[layer][row, sl.start - 1])
                    pos.append(last)
                else:
                    neg.append(last)
    # float32 whatever the backbone's dtype: the encoders trained on these states are float32
    return {layer: LayerMemory(*(torch.stack(c).float().clone() for c in chunks[layer])) for layer in layers}
