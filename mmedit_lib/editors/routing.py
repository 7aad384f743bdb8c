"""Routing edits: memory-based editors (IKE, SERAC) change what the backbone reads, never its weights.

    >>> edit = RouterEdit(backbone, InContextRouter(backbone, "new fact : q a prompt :"))   # doctest: +SKIP
    >>> backbone.greedy([query])          # answered with the context                          # doctest: +SKIP
    >>> edit.restore()                    # the backbone reads queries as they are again       # doctest: +SKIP

A router maps each query to (the backbone that answers it, the query it reads). `Backbone.query_logits` and
`Backbone.greedy` consult `backbone.router`; a `RouterEdit` installs one and its `restore()` puts the previous
one back, so routing edits nest like weight edits and must be restored in reverse order.
"""
from __future__ import annotations

from ..backbones.backbone import Backbone, Query
from ..backbones.prompt_format import FACT_FORMAT  # noqa: F401  (ike reads it from here)
from .base import SlotEdit



def fact_context(bb: Backbone, edit_query: Query, demonstrations: str = "") -> str:
    """`[demonstrations] new fact : <question> <answer> prompt :` for the edit `edit_query` (question untemplated)."""
    fact = FACT_FORMAT.format(question=bb.question_of(edit_query.prompt), answer=edit_query.target)
    return f"{demonstrations} {fact}" if demonstrations else fact


def in_context(bb: Backbone, query: Query, context: str) -> Query:
    """`query` in the in-context format: the context, then its bare question after `prompt :`."""
    return Query(query.image, bb.question_of(query.prompt), query.target, context=context)


class InContextRouter:
    """Every query is answered by `bb` with `context` before it (IKE)."""

    def __init__(self, bb: Backbone, context: str):
        self.bb, self.context = bb, context

    def route(self, queries: list[Query]) -> list[tuple[Backbone, Query]]:
        return [(self.bb, in_context(self.bb, q, self.context)) for q in queries]


class RouterEdit(SlotEdit):
    def __init__(self, bb: Backbone, router):
        self.router = router
        super().__init__(bb, "router", router, "routing")
