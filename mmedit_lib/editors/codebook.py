"""A codebook at one layer (GRACE, BalancEdit): keys with radii; an input whose query falls inside the nearest
key's radius gets that entry's output instead of the layer's.

    >>> edit = CodebookEdit(bb, Codebook("balancedit", "ffn_out", -1, "mean", "euclidean", (entry,)))  # doctest: +SKIP
    >>> lookup(bb, [query]).fired                     # which queries the codebook catches        # doctest: +SKIP
    >>> edit.restore()                                # the layer computes what it did before     # doctest: +SKIP

The query of an input is read at the layer's input: `last` = at the last prompt token (GRACE), `mean` = averaged
over every prompt position, image tokens included (BalancEdit's averaged layer l-1 embedding). The decision is
made once per input on the full forward pass (the backbone says where each prompt ends, `Backbone.forward_batch`)
and kept for greedy decoding's one-token steps. A fired entry replaces the output with its `value` (GRACE, from
the query token on) or with its own copy of the layer, `weight`/`bias` (BalancEdit, at every position).

Codebooks are immutable; each edit installs a new one holding the previous entries (`installed_codebook(bb)`), and
`restore()` puts the previous one back, so codebook edits nest like weight edits (restore in reverse order).
The hooks never touch weights: with the last edit restored the backbone computes exactly what it did before.
"""
from __future__ import annotations

import contextlib
import dataclasses

import pandas as pd
import torch

from .base import SlotEdit, attached, set_aside
from .hooks import forward_hooks

QUERIES = ("last", "mean")
DISTANCES = ("euclidean", "cosine")


@dataclasses.dataclass(frozen=True)
class Entry:
    key: torch.Tensor  # (d_in,)
    radius: float
    label: str  # the edit's target answer
    source: str  # the case id of the edit that made it
    value: torch.Tensor | None = None  # GRACE: (d_out,)
    weight: torch.Tensor | None = None  # BalancEdit: the layer copy, (d_out, d_in)
    bias: torch.Tensor | None = None
    info: dict = dataclasses.field(default_factory=dict)  # how the radius came about (d_pos, d_neg, ...)
    span: int | None = None  # GRACE: how many positions from the query token on the value replaces (the answer's
    # length; in greedy decoding the steps after it run as usual, so the answer can end); None: every position

    def output(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if self.value is not None:
            return self.value.to(out.dtype).expand_as(out)
        return torch.nn.functional.linear(x, self.weight.to(x.dtype),
                                          None if self.bias is None else self.bias.to(x.dtype))


@dataclasses.dataclass(frozen=True)
class Codebook:
    owner: str  # the editor that made it ("grace", "balancedit")
    site: str
    layer: int
    query: str  # "last" | "mean"
    distance: str  # "euclidean" | "cosine"
    entries: tuple[Entry, ...] = ()

    def distances(self, queries: torch.Tensor) -> torch.Tensor:
        """(B, n_entries) distances from each query to each key."""
        keys = torch.stack([e.key for e in self.entries]).to(queries)
        return pairwise_distance(queries, keys, self.distance)

    def nearest(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per query: index of the nearest key, its distance, and whether it is within that key's radius."""
        dist = self.distances(queries)
        best, index = dist.min(1)
        radii = torch.tensor([e.radius for e in self.entries], dtype=best.dtype, device=best.device)
        return index, best, best <= radii[index]


def pairwise_distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """(n, m) Euclidean distances, or cosine distances 1 - cos(a_i, b_j)."""
    if kind == "euclidean":
        return torch.cdist(a.float(), b.float())
    if kind == "cosine":
        a, b = torch.nn.functional.normalize(a.float(), dim=-1), torch.nn.functional.normalize(b.float(), dim=-1)
        return 1 - a @ b.T
    raise ValueError(f"unknown distance {kind!r}; known: {', '.join(DISTANCES)}")


def prompt_spans(batch) -> list[tuple[int, int]]:
    """Per row, (first real position, end of the prompt) in the padded sequence: the prompt is everything before
    the target (image tokens, <s>, context, prompt)."""
    starts = (batch.attention_mask == 0).sum(1).tolist()
    return [(start, sl.start) for start, sl in zip(starts, batch.target_slices)]


def read_queries(x: torch.Tensor, spans: list[tuple[int, int]], how: str) -> torch.Tensor:
    """(B, d) queries from the layer input x (B, L, d)."""
    if how == "last":
        return torch.stack([x[row, end - 1] for row, (_, end) in enumerate(spans)])
    if how == "mean":
        return torch.stack([x[row, start:end].mean(0) for row, (start, end) in enumerate(spans)])
    raise ValueError(f"unknown query {how!r}; known: {', '.join(QUERIES)}")


def layer_inputs(bb, site: str, layer: int, queries) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """The input of `site` at `layer` for `queries` (B, L, d) and their prompt spans; no codebook applied."""
    seen = {}

    def read(module, inputs, output):
        seen["x"] = inputs[0]
    batch = bb.encode(queries)
    with set_aside(bb, "codebook"), torch.no_grad(), forward_hooks(bb.model, {bb.site(site, layer): read}):
        bb.logits(batch)
    B, L = batch.input_ids.shape
    return seen["x"].reshape(B, L, -1), prompt_spans(batch)


def query_vectors(bb, codebook_like, queries) -> torch.Tensor:
    """(B, d) codebook queries of `queries` at the codebook's site, as its `query` rule reads them."""
    x, spans = layer_inputs(bb, codebook_like.site, codebook_like.layer, queries)
    return read_queries(x, spans, codebook_like.query)


def replace_rows(x3, out3, spans, rows_entries, how: str) -> torch.Tensor:
    """out3 with each fired row's positions replaced by its entry's output (GRACE: from the query token on;
    BalancEdit: every real position)."""
    new = out3.clone()
    for row, entry in rows_entries:
        start, end = spans[row]
        first = end - 1 if how == "last" else start
        stop = first + entry.span if entry.span is not None else out3.shape[1]
        new[row, first:stop] = entry.output(x3[row, first:stop], out3[row, first:stop]).to(out3.dtype)
    return new


class _Hook:
    """Reads the current codebook (`installed_codebook(bb)`) on every forward pass of the layer."""

    def __init__(self, bb):
        self.bb, self.decision, self.steps = bb, None, 0

    def __call__(self, module, inputs, output):
        book = installed_codebook(self.bb)
        if book is None:  # set aside while an editor reads or trains the layer
            return output
        x, batch = inputs[0], self.bb.forward_batch
        if batch is not None:  # a full pass: decide per row, and remember it for the decoding steps
            B, L = batch.input_ids.shape
            x3, out3 = x.reshape(B, L, -1), output.reshape(B, L, -1)
            spans = prompt_spans(batch)
            index, _, fired = book.nearest(read_queries(x3, spans, book.query))
            self.decision = [(row, book.entries[int(i)]) for row, (i, f) in enumerate(zip(index, fired)) if f]
            self.steps = 0
            return replace_rows(x3, out3, spans, self.decision, book.query).reshape(output.shape)
        if self.decision is None:
            raise RuntimeError("a codebook layer ran a decoding step without a full pass before it")
        rows = output.numel() // output.shape[-1]  # a one-token step: one position per row, all after the prompt
        x3, out3 = x.reshape(rows, 1, -1), output.reshape(rows, 1, -1)
        self.steps += 1
        new = out3.clone()
        for row, entry in self.decision:
            if entry.span is None or self.steps < entry.span:
                new[row] = entry.output(x3[row], out3[row]).to(out3.dtype)
        return new.reshape(output.shape)


class CodebookEdit(SlotEdit):
    """Installs `codebook` as the backbone's codebook (its entries include the previous edits' entries; editors
    build it on the installed one through `current_codebook`, which checks they match)."""

    def __init__(self, bb, codebook: Codebook):
        self.codebook = codebook
        super().__init__(bb, "codebook", self, "codebook", first_hooks=lambda: forward_hooks(
            bb.model, {bb.site(codebook.site, codebook.layer): _Hook(bb)}))


@contextlib.contextmanager
def training_hook(bb, site: str, layer: int, how: str, entry_output):
    """While inside, every row's output is `entry_output(x_row, out_row)` (from the query token on for `last`,
    at every real position for `mean`) and the installed codebook is set aside: how an entry is trained."""
    def hook(module, inputs, output):
        batch = bb.forward_batch
        B, L = batch.input_ids.shape
        x3, out3 = inputs[0].reshape(B, L, -1), output.reshape(B, L, -1)
        spans = prompt_spans(batch)
        pieces = []
        for row, (start, end) in enumerate(spans):
            first = end - 1 if how == "last" else start
            pieces.append(torch.cat([out3[row, :first], entry_output(x3[row, first:], out3[row, first:])]))
        return torch.stack(pieces).reshape(output.shape)
    with set_aside(bb, "codebook"), forward_hooks(bb.model, {bb.site(site, layer): hook}):
        yield


def installed_codebook(bb) -> Codebook | None:
    """The codebook the last codebook edit attached to `bb` (None when none is)."""
    edit = attached(bb, "codebook")
    return None if edit is None else edit.codebook


def current_codebook(bb, owner: str, site: str, layer: int, query: str, distance: str) -> Codebook:
    """The installed codebook, else an empty one; RuntimeError when the installed one was made another way."""
    wanted = Codebook(owner, site, layer, query, distance)
    book = installed_codebook(bb)
    if book is None:
        return wanted
    if (book.owner, book.site, book.layer) != (owner, site, layer):
        raise RuntimeError(f"a {owner} codebook cannot stack on the {book.owner} codebook already installed "
                           "(restore it first)")
    if (book.query, book.distance) != (query, distance):
        raise RuntimeError(f"the installed {owner} codebook was made with other settings (restore it first)")
    return book


# ---- the interpretability view (BalancEdit Sec. 4.6) --------------------------------------------------------
def entries_frame(codebook: Codebook) -> pd.DataFrame:
    """One row per entry: the edit it came from, its answer, key norm, radius and how the radius came about.

        >>> entries_frame(installed_codebook(bb))                                     # doctest: +SKIP
    """
    return pd.DataFrame([{"entry": i, "source": e.source, "label": e.label, "key_norm": float(e.key.norm()),
                          "radius": e.radius, **e.info} for i, e in enumerate(codebook.entries)])


def lookup(bb, queries, labels: list[str] | None = None) -> pd.DataFrame:
    """For each query: the nearest key (entry, the edit it came from), the distance, the radius and whether the
    entry fires (distance <= radius).

        >>> lookup(bb, [case.probes[p] for p in case.probes])                      # doctest: +SKIP
    """
    book = installed_codebook(bb)
    if book is None:
        raise ValueError("no codebook is installed: make a GRACE or BalancEdit edit first")
    vectors = query_vectors(bb, book, queries)
    index, dist, fired = book.nearest(vectors)
    rows = []
    for j, q in enumerate(queries):
        entry = book.entries[int(index[j])]
        rows.append({"query": labels[j] if labels else q.prompt, "nearest_entry": int(index[j]),
                     "nearest_source": entry.source, "entry_label": entry.label, "distance": float(dist[j]),
                     "radius": entry.radius, "fired": bool(fired[j])})
    return pd.DataFrame(rows)
