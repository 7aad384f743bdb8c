"""SERAC (Mitchell et al., 2022): an edit memory, a scope classifier, and a counterfactual model.

    >>> prepared = prepare_serac(bb, train, SERACHparams())   # trains the classifier and the counterfactual model
    ... # doctest: +SKIP
    >>> edit = apply_serac(bb, request, SERACHparams(), prepared)                    # doctest: +SKIP
    >>> bb.greedy([probe])   # in scope: the counterfactual model, given the edit; else the untouched backbone
    ... # doctest: +SKIP

- **Scope classifier** g(z_e, x): an MLP over the all-MiniLM-L6-v2 embeddings of the edit's question and the
  query's question ([e_z, e_x, e_z*e_x, |e_z-e_x|]), trained with binary cross-entropy on the train split:
  in scope = the edit question and its rephrase; out of scope = the text locality question, the multimodal
  locality question and another record's question. Like SERAC's (and MMEdit's) classifier it reads text only:
  a query about another image with the same question is in scope for it — which is what MMEdit's near-zero
  M-Locality for SERAC reflects.
- **Counterfactual model** h(z_e, x): a copy of the backbone whose language model is fine-tuned on the train
  split to answer in-scope inputs given the edit ("new fact : <q> <a> prompt : <x>", the query's image kept).
  SERAC uses a separate smaller model; on the tiny backbones a copy of the backbone is already small.
- **Memory**: edits are appended; a query goes to the counterfactual model with the edit of highest scope
  probability when it is at least `threshold`, else to the backbone. Sequential edits share one memory.
"""
from __future__ import annotations

import copy
import dataclasses
import random

import torch

from ..backbones.backbone import Backbone, Query
from .base import EditRequest, records_of
from .float32 import Float32Adam
from .ike import embed
from .routing import RouterEdit, fact_context, in_context

EMBED_DIM = 384


@dataclasses.dataclass
class SERACHparams:
    threshold: float = 0.5  # scope probability at which the counterfactual model answers
    classifier_hidden: int = 256
    classifier_epochs: int = 5
    classifier_lr: float = 1e-3
    cf_steps: int = 300  # counterfactual-model fine-tuning steps
    cf_batch: int = 8
    cf_lr: float = 1e-4
    seed: int = 0


class ScopeClassifier(torch.nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4 * EMBED_DIM, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, 1))

    def forward(self, edit: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Logits of "query is in the scope of edit", for broadcastable (..., 384) embeddings."""
        edit, query = torch.broadcast_tensors(edit, query)
        return self.net(torch.cat([edit, query, edit * query, (edit - query).abs()], -1)).squeeze(-1)


class SERACPrepared:
    """The trained classifier and counterfactual weights (saved); the counterfactual backbone (built on use)."""

    def __init__(self, classifier: dict, cf_weights: dict, hidden: int):
        self.classifier_state, self.cf_weights, self.hidden = classifier, cf_weights, hidden
        self._runtime = {}

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_runtime"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._runtime = {}

    def classifier(self) -> ScopeClassifier:
        if "classifier" not in self._runtime:
            clf = ScopeClassifier(self.hidden)
            clf.load_state_dict(self.classifier_state)
            self._runtime["classifier"] = clf.eval().requires_grad_(False)
        return self._runtime["classifier"]

    def counterfactual(self, bb: Backbone) -> Backbone:
        key = ("cf", id(bb))
        if key not in self._runtime:
            model = copy.deepcopy(bb.model)
            with torch.no_grad():
                for name, value in self.cf_weights.items():
                    model.get_parameter(name).copy_(value)
            model.requires_grad_(False)
            self._runtime[key] = bb.like(model, f"{bb.name}/serac-counterfactual")
        return self._runtime[key]

    def embedding(self, text: str) -> torch.Tensor:
        cache = self._runtime.setdefault("embeddings", {})
        if text not in cache:
            cache[text] = embed([text])[0]
        return cache[text]


def _train_classifier(records, hp: SERACHparams, rng: random.Random) -> dict:
    pairs = []
    for i, r in enumerate(records):
        other = records[rng.randrange(len(records))]
        pairs += [(r.src, r.src, 1.0), (r.src, r.rephrase, 1.0)]
        pairs += [(r.src, x, 0.0) for x in (r.loc, r.m_loc_q, other.src) if x != r.src]
    texts = sorted({t for a, b, _ in pairs for t in (a, b)})
    vectors = embed(texts)
    index = {t: i for i, t in enumerate(texts)}
    edit = vectors[[index[a] for a, _, _ in pairs]]
    query = vectors[[index[b] for _, b, _ in pairs]]
    labels = torch.tensor([y for _, _, y in pairs])
    clf = ScopeClassifier(hp.classifier_hidden)
    optimizer = torch.optim.Adam(clf.parameters(), lr=hp.classifier_lr)
    generator = torch.Generator().manual_seed(hp.seed)
    for _ in range(hp.classifier_epochs):
        for batch in torch.randperm(len(pairs), generator=generator).split(256):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(clf(edit[batch], query[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return clf.state_dict()


def _train_counterfactual(bb: Backbone, train, hp: SERACHparams, rng: random.Random) -> dict:
    model = copy.deepcopy(bb.model)
    model.requires_grad_(False)
    params = dict(model.language_model.named_parameters())
    for p in params.values():
        p.requires_grad_(True)
    cf = bb.like(model, bb.name)
    optimizer = Float32Adam(params.values(), lr=hp.cf_lr)
    for _ in range(hp.cf_steps):
        queries = []
        for i in rng.sample(range(len(train)), min(hp.cf_batch, len(train))):
            case = train[i]
            context = fact_context(bb, case.request.query)
            queries.append(in_context(bb, case.probes[rng.choice(["rel", "t_gen", "m_gen"])], context))
        optimizer.step_on(cf.loss(queries))
    return {f"language_model.{name}": p.detach().clone() for name, p in params.items()}


def prepare_serac(bb: Backbone, train, hp: SERACHparams) -> SERACPrepared:
    rng = random.Random(f"serac-{hp.seed}")
    torch.manual_seed(hp.seed)
    classifier = _train_classifier(records_of(train), hp, rng)
    return SERACPrepared(classifier, _train_counterfactual(bb, train, hp, rng), hp.classifier_hidden)


class SERACRouter:
    def __init__(self, bb: Backbone, prepared: SERACPrepared, memory: tuple, threshold: float):
        self.bb, self.prepared, self.memory, self.threshold = bb, prepared, memory, threshold

    def scope(self, query: Query) -> tuple[float, int]:
        """(highest scope probability over the memory, index of that edit)."""
        edits = torch.stack([self.prepared.embedding(self.bb.question_of(m.prompt)) for m in self.memory])
        x = self.prepared.embedding(self.bb.question_of(query.prompt))
        with torch.no_grad():
            probs = torch.sigmoid(self.prepared.classifier()(edits, x[None]))
        best = int(probs.argmax())
        return float(probs[best]), best

    def route(self, queries: list[Query]) -> list[tuple[Backbone, Query]]:
        cf = self.prepared.counterfactual(self.bb)
        out = []
        for q in queries:
            prob, best = self.scope(q)
            out.append((cf, in_context(self.bb, q, fact_context(self.bb, self.memory[best])))
                       if prob >= self.threshold else (self.bb, q))
        return out


def apply_serac(bb: Backbone, request: EditRequest, hp: SERACHparams, prepared: SERACPrepared) -> RouterEdit:
    previous = bb.router
    memory = previous.memory if isinstance(previous, SERACRouter) and previous.prepared is prepared else ()
    if previous is not None and not memory:
        raise RuntimeError("SERAC cannot stack on another routing edit")
    return RouterEdit(bb, SERACRouter(bb, prepared, memory + (request.query,), hp.threshold))
