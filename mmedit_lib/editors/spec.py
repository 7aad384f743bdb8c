"""What the package knows of an editor, in one object its module defines: `SPEC = EditorSpec(...)`.

    >>> from mmedit_lib.editors.grace import SPEC
    >>> SPEC.name, SPEC.label, SPEC.sequential
    ('grace', 'GRACE', True)

Everything outside the editor's module reads the spec: the registry (name, hparams, `apply`, `prepare`), the
prepared-artefact key (`prepare_fields`, derived from the hparams' field metadata: `prepare_field(default)` marks a
field `prepare` reads), the reports' row names (`label`, `short_label`), sequential editing (`one_at_a_time`: why
it keeps one edit at a time, "" when it can keep many), the few-step hparams of the contract test and the dry run
(`quick`, with `quick_cases` naming the fields that count train cases; `edit_steps` names the field the dry run's
--steps sets) and of CI's smoke runs (`smoke`), its memory at full size (`memory`: bytes while an edit is made, per
kept edit, and what `prepare` leaves resident; `prepare_gib`: what `prepare` adds at its peak, which the dry run
checks before it starts), and the overrides that build its hparams from an architecture alone
(`architecture_only`).
A new editor is one module with a SPEC; `registry.load_plugins` adds one from outside the package.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

FP16, FP32 = 2, 4  # bytes: the backbone's weights on a GPU; what editors train and keep resident


def prepare_field(default, **kwargs):
    """A hparams field that `prepare` reads: part of the prepared-artefact key (`EditorSpec.prepare_fields`).

        >>> @dataclasses.dataclass
        ... class H:
        ...     steps: int = prepare_field(10)
        ...     lr: float = 0.1
        >>> [f.name for f in dataclasses.fields(H) if f.metadata.get("prepare")]
        ['steps']
    """
    return dataclasses.field(default=default, metadata={"prepare": True}, **kwargs)


@dataclasses.dataclass(frozen=True)
class FullSize:
    """The sizes of a full-size backbone an editor's memory rule reads (`report.full_size.full_size_shape`)."""
    gated_ffn: bool  # the decoder's FFN is gated (SwiGLU: gate, up, down), not two layers (OPT's ReLU FFN)
    d: int  # its hidden size
    n_layers: int
    layer: int  # parameters of one decoder layer
    vision_block: int  # parameters of the ViT's last block
    language: int  # parameters of the language model
    bridge_hidden: int  # the width the language model reads the image from (the Q-Former's; LLaVA's vision tower's)
    ffn_linear: dict  # site -> (d_out, d_in) of the last FFN's Linear at that site ("ffn_in", "ffn_out")
    edited_ffns: dict  # "<site>.<layer>" -> (d_out, d_in): the last three FFNs' Linears (MEND's, KE's)
    vision_ffns: dict  # MEND (vision module)'s Linears: the last ViT block's and Q-Former layer's FFN -> (out, in)
    answer_tokens: int = 8  # target tokens per edit
    train_records: int = 6346  # the train split an index covers (BalancEdit §4.5)


@dataclasses.dataclass(frozen=True)
class Memory:
    """Bytes an editor needs beside the backbone (`EditorSpec.memory`)."""
    during: int  # while an edit is made (gradients and Adam moments of what it trains, an update formed)
    per_edit: int  # what each kept edit holds (restore copies, codebook entries, extra neurons)
    resident: int  # what `prepare` leaves resident (hypernetworks, memories, a counterfactual model, an index)


def adam_bytes(params: int, dtype_bytes: int = FP16) -> int:
    """Bytes to train `params` with Adam while an edit is made: their gradient and the two moments."""
    return 3 * params * dtype_bytes


@dataclasses.dataclass(frozen=True)
class EditorSpec:
    name: str
    hparams: type
    apply: Callable[..., Any]  # (backbone, request, hparams, prepared) -> Edit
    prepare: Callable[..., Any] | None = None  # (backbone, train cases, hparams) -> what apply needs
    _: dataclasses.KW_ONLY
    label: str  # the row name in MMEdit Table 2 and UniKE Table 1
    summary: str
    short_label: str = ""  # the row name in UniKE Tables 2, 3, 5 and BalancEdit's tables ("": `label`)
    one_at_a_time: str = ""  # why edits cannot stay applied while more are made ("": sequential editing works)
    changes_model: bool = True  # False only for the unedited baseline
    edit_steps: str = ""  # the hparam counting one edit's optimisation steps (the dry run's --steps), if any
    quick: dict = dataclasses.field(default_factory=dict)  # a few steps on `QUICK_CASES` train cases
    quick_cases: tuple[str, ...] = ()  # fields of `quick` that count train cases
    smoke: dict = dataclasses.field(default_factory=dict)  # CI's smoke runs: seconds per prepare, not minutes
    memory: Callable[[FullSize, Any], Memory] | None = None  # (sizes, hparams) -> bytes beside the backbone
    # backbone name -> the overrides that build its hparams from the architecture alone (random weights, counts)
    architecture_only: Callable[[str], dict] | None = None
    prepare_gib: Callable[[Any, Any], float] | None = None  # (backbone, hparams) -> GiB prepare adds at its peak

    @property
    def sequential(self) -> bool:
        return not self.one_at_a_time

    @property
    def row_label(self) -> str:
        return self.short_label or self.label

    @property
    def prepare_fields(self) -> tuple[str, ...]:
        """The hparams `prepare` reads (fields made with `prepare_field`); () for an editor without `prepare`."""
        if self.prepare is None:
            return ()
        return tuple(f.name for f in dataclasses.fields(self.hparams) if f.metadata.get("prepare"))

    def quick_hparams(self, n_cases: int = 3) -> dict:
        """`quick` with its train-case counts set to `n_cases`."""
        return {**self.quick, **{f: n_cases for f in self.quick_cases}}


QUICK_CASES = 3  # train cases the contract test gives `prepare`
