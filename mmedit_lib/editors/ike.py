"""IKE (Zheng et al., 2023): edit by prompting — k retrieved demonstrations, then the new fact, then the query.

    >>> prepared = prepare_ike(bb, train, IKEHparams())                 # demonstrations + their embeddings
    ... # doctest: +SKIP
    >>> edit = apply_ike(bb, request, IKEHparams(), prepared)           # doctest: +SKIP
    >>> bb.greedy([probe])    # reads "<demos> new fact : <q> <a> prompt : <probe question>"   # doctest: +SKIP
    >>> edit.restore()                                                                            # doctest: +SKIP

Demonstrations come from the train split, one per record, cycling IKE's three kinds: *copy* (the fact's own
question), *update* (its rephrase takes the new answer) and *retain* (an unrelated text question keeps its
answer). They are text only; the query keeps its image. Retrieval: cosine similarity of all-MiniLM-L6-v2
embeddings of "<question> <answer>" between the edit and each demonstration's fact; the k most similar are
placed with the most similar nearest the query, as IKE orders them. k = 32 as in IKE and MMEdit, fewer when the
backbone's positions cannot hold them (the tiny backbones have 1024; long caption demonstrations can exceed it).
Every query, in scope or not, reads the context while the edit is active: that is why IKE's locality is poor.
"""
from __future__ import annotations

import dataclasses

import torch

from ..backbones.backbone import Backbone
from ..embeddings import load_sentence_encoder
from .base import EditRequest, records_of
from .routing import FACT_FORMAT, InContextRouter, RouterEdit, fact_context
from .spec import FP32, EditorSpec, Memory, prepare_field

QUERY_RESERVE = 96  # positions kept free for the new fact, the query and its answer


@dataclasses.dataclass
class IKEHparams:
    k: int = 32  # demonstrations (IKE; MMEdit)
    # demonstration kinds, cycled over the train records
    kinds: tuple[str, ...] = prepare_field(("copy", "update", "retain"))


def demonstration(record, kind: str) -> str:
    fact = FACT_FORMAT.format(question=record.src, answer=record.alt)
    if kind == "copy":
        return f"{fact} {record.src} {record.alt}"
    if kind == "update":
        return f"{fact} {record.rephrase} {record.alt}"
    if kind == "retain":
        return f"{fact} {record.loc} {record.loc_ans}"
    raise ValueError(f"unknown IKE demonstration kind {kind!r}; known: copy, update, retain")


EMBED_DIM = 384  # all-MiniLM-L6-v2's sentence embeddings


def embed(texts: list[str]) -> torch.Tensor:
    vectors = load_sentence_encoder().encode(texts, batch_size=128, normalize_embeddings=True,
                                             convert_to_numpy=True, show_progress_bar=False)
    return torch.from_numpy(vectors).float()


def prepare_ike(bb: Backbone, train, hp: IKEHparams) -> dict:
    records = records_of(train)
    demos = [demonstration(r, hp.kinds[i % len(hp.kinds)]) for i, r in enumerate(records)]
    return {"demos": demos, "lengths": [len(bb._ids(d)) for d in demos],
            "embeddings": embed([f"{r.src} {r.alt}" for r in records])}


def retrieve(bb: Backbone, request: EditRequest, hp: IKEHparams, prepared: dict) -> list[str]:
    """The demonstrations for this edit, least similar first, as many of the k best as the positions allow."""
    query = embed([f"{bb.question_of(request.query.prompt)} {request.query.target}"])[0]
    order = torch.argsort(prepared["embeddings"] @ query, descending=True, stable=True)[:hp.k].tolist()
    budget = bb.model.config.text_config.max_position_embeddings - bb.n_image_tokens - QUERY_RESERVE
    chosen, used = [], 0
    for i in order:
        if used + prepared["lengths"][i] > budget:
            break
        chosen.append(i)
        used += prepared["lengths"][i]
    return [prepared["demos"][i] for i in reversed(chosen)]


def apply_ike(bb: Backbone, request: EditRequest, hp: IKEHparams, prepared: dict) -> RouterEdit:
    context = fact_context(bb, request.query, " ".join(retrieve(bb, request, hp, prepared)))
    return RouterEdit(bb, InContextRouter(bb, context))


SPEC = EditorSpec("ike", IKEHparams, apply_ike, prepare_ike, label="In-Context Editing", short_label="IKE",
                  one_at_a_time="its demonstrations and the new fact go before every query: one fact at a time",
                  memory=lambda s, hp: Memory(0, 0, s.train_records * EMBED_DIM * FP32),  # the index; an edit's text
                  summary="IKE: k retrieved demonstrations and the new fact before every query")
