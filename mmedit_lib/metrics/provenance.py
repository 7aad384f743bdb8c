"""Which code path produced each paper row, and so which protocols score it here: the one place this is recorded.

    >>> paper_protocols("mmedit", "Table 2", "mend")
    ('tf-token', 'topk-all')
    >>> paper_protocols("mmedit", "Table 2", "ike")
    ('tf-token', 'answer-argmax')
    >>> resolve_protocols(["mend", "ike"], "tf-token", "paper", ("mmedit", "Table 2"))["mend"]
    ('tf-token', 'topk-all')

MMEdit's numbers come from zjunlp/EasyEdit's first multimodal code (October 2023), which has two evaluation paths:

- `MultimodalTrainer.edit_step` (`easyeditor/trainer/MultimodalTrainer.py`, f43cccb, 2023-10-08; MMEdit's
  `test_MEND_*` / `test_SERAC_*` evaluations run it): reliability and generality are the token accuracy of the
  teacher-forced argmax over the target's label tokens (`trainer/losses.py::multiclass_log_probs`, our `tf-token`);
  locality compares the top-1 (text) / top-10 (image) token ids of every position before and after the edit (our
  `topk-all`).
- `MultimodalEditor.edit` (`easyeditor/editors/multimodal_editor.py`; `evaluate/evaluate.py`, 64b4057,
  2023-10-10, unchanged in this respect up to 94d1ad9, 2023-12-16): `compute_multimodal_edit_results` scores
  `tf-token` and compares the argmax at the locality answer's positions (our `answer-argmax`). Its IKE branch,
  `compute_icl_multimodal_edit_quality`, scores locality as the token accuracy of the locality *ground truth*
  after a "New Fact: <question> <answer>" context, not against the unedited model; `answer-argmax` is the
  nearest protocol here, and the difference is recorded in `note`. The Editor switched to top-10 ids in
  fde9ba7 (2024-01-21); the Trainer had used top-k ids from its first version.

`basis` says how each row's path is known: "code" (the released code runs that method through that path) or
"reading" (the paper and the code do not say; `source` gives the reading and the numbers that support it).
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from .protocols import LOCALITY_PROTOCOLS, check_protocols

EASYEDIT = "zjunlp/EasyEdit"
PAPER = "paper"  # the protocol name that means "the one the paper's row was scored with"


@dataclasses.dataclass(frozen=True)
class CodePath:
    name: str
    path: str  # in EASYEDIT
    commit: str
    date: str
    accuracy: str
    locality: str
    rule: str  # how it scores, in words


TRAINER = CodePath("EasyEdit MultimodalTrainer.edit_step", "easyeditor/trainer/MultimodalTrainer.py",
                   "f43cccba633e3a1f1fd1ff505bceb8fef0767831", "2023-10-08", "tf-token", "topk-all",
                   "token accuracy over the target's label tokens; locality: top-1 (text) / top-10 (image) ids at "
                   "every position equal before and after")
EDITOR = CodePath("EasyEdit MultimodalEditor.edit (compute_multimodal_edit_results)", "easyeditor/evaluate/evaluate.py",
                  "64b405762895b2c4e8d1ccabd14efa95c265b035", "2023-10-10", "tf-token", "answer-argmax",
                  "token accuracy over the target's tokens; locality: argmax at the locality answer's positions "
                  "equal before and after")
EDITOR_IKE = CodePath("EasyEdit MultimodalEditor.edit, IKE branch (compute_icl_multimodal_edit_quality)",
                      "easyeditor/evaluate/evaluate.py", "5f7cbc374b03bfc0ec7d7e3dd3cbc3e1203c18b1", "2023-10-08",
                      "tf-token", "answer-argmax",
                      "token accuracy after the retrieved demonstrations and a 'New Fact' context; locality: token "
                      "accuracy of the locality ground truth after a 'New Fact: <question> <answer>' context")


@dataclasses.dataclass(frozen=True)
class Provenance:
    paper: str
    item: str
    editor: str  # this package's editor name (editors/registry)
    path: CodePath
    basis: str  # "code" | "reading"
    source: str
    note: str = ""

    @property
    def protocols(self) -> tuple[str, str]:
        return self.path.accuracy, self.path.locality


IKE_NOTE = ("exact 2023 rule not implemented here: locality is the token accuracy of the locality answer after a "
            "context stating it, not a comparison with the unedited model; answer-argmax is the nearest protocol")
MMEDIT_TRAINED = ("multimodal_edit.py (f43cccb..94d1ad9): MEND and SERAC are trained and tested with "
                  "MultimodalTrainer (train_*/test_* functions; hparams/TRAINING/MEND/blip2-vision.yaml for the "
                  "vision module)")
MMEDIT_NO_CODE = ("no multimodal {what} in EasyEdit 2023 (ALG_MULTIMODAL_DICT holds MEND, SERAC, IKE only); "
                  "MultimodalTrainer carries {hook}, so the Trainer path is read as the one that produced the row")
UNIKE_READING = ("UniKE (§4.1, App. B, D) names no evaluation code (beepkh/UniKE holds only a README); its "
                 "baselines are re-runs on the MMEdit benchmark, read as MMEdit's released code, each through "
                 "MMEdit's path for that method; its IKE M-Loc (2.5-4.7) is near MMEdit's (1.9-3.0)")
UNIKE_OWN = ("UniKE names no evaluation code; {method} trains nothing before editing (no hypernetwork, no "
             "classifier), so it is read as run through MultimodalEditor, as MMEdit ran its per-edit methods")
BALANCEDIT_READING = ("BalancEdit (App. C Eqs. 4-7, App. F) names no evaluation code; read as one rule for all its "
                      "rows: token accuracy (its MMEdit percentages are not shares of its 2093 cases) and the "
                      "Trainer's top-k locality (its MEND Loc on MMEdit, 68.82 / 69.40, lies in MMEdit's MEND "
                      "M-Loc range, 55.72-71.33, scored so)")


def _mmedit() -> list[Provenance]:
    t2 = ("mmedit", "Table 2")
    return [
        Provenance(*t2, "mend", TRAINER, "code", MMEDIT_TRAINED),
        Provenance(*t2, "mend-vision", TRAINER, "code", MMEDIT_TRAINED),
        Provenance(*t2, "serac", TRAINER, "code", MMEDIT_TRAINED),
        Provenance(*t2, "ike", EDITOR_IKE, "code",
                   "multimodal_edit.py edit_IKE_* / test_IKE_*: IKE runs through MultimodalEditor", IKE_NOTE),
        Provenance(*t2, "ke", TRAINER, "reading",
                   MMEDIT_NO_CODE.format(what="KE", hook="the hypernetwork training loop KE shares with MEND")),
        Provenance(*t2, "ft-last", TRAINER, "reading",
                   MMEDIT_NO_CODE.format(what="FT", hook="FT's hooks (config.alg != 'ft', config.ft.use_locality)")),
        Provenance(*t2, "ft-vision", TRAINER, "reading",
                   MMEDIT_NO_CODE.format(what="FT", hook="FT's hooks (config.alg != 'ft', config.ft.use_locality)")),
        Provenance(*t2, "unedited", TRAINER, "reading",
                   "the backbone row (rel 0, locality 100 under either rule): scored as the Trainer rows it heads"),
    ]


def _unike() -> list[Provenance]:
    """Table 1 (one-step) and Tables 2 and 3 (sequential, cross-task: the same methods, edits kept) by one reading."""
    rows = []
    for item in ("Table 1", "Table 2", "Table 3"):
        rows += [Provenance("unike", item, p.editor, p.path, "reading", UNIKE_READING, p.note)
                 for p in _mmedit() if p.editor in ("unedited", "ft-last", "ke", "mend", "serac", "ike")]
        rows += [Provenance("unike", item, "t-patcher", EDITOR, "reading", UNIKE_OWN.format(method="T-Patcher")),
                 Provenance("unike", item, "unike", EDITOR, "reading", UNIKE_OWN.format(method="UniKE"))]
    return rows


def _balancedit() -> list[Provenance]:
    return [Provenance("balancedit", "Table 3", e, TRAINER, "reading", BALANCEDIT_READING)
            for e in ("unedited", "ft-last", "ike", "mend", "grace", "balancedit")]


TABLE: tuple[Provenance, ...] = tuple(_mmedit() + _unike() + _balancedit())
_BY_KEY = {(p.paper, p.item, p.editor): p for p in TABLE}


def provenance(paper: str, item: str, editor: str) -> Provenance:
    """The recorded provenance of one paper row; ValueError naming what is recorded when there is none."""
    try:
        return _BY_KEY[(paper, item, editor)]
    except KeyError:
        items = sorted({(p.paper, p.item) for p in TABLE})
        editors = sorted(p.editor for p in TABLE if (p.paper, p.item) == (paper, item))
        raise ValueError(f"no recorded provenance for {editor!r} in {paper} {item}; recorded tables: {items}"
                         + (f"; editors of that table: {editors}" if editors else "")) from None


def paper_protocols(paper: str, item: str, editor: str) -> tuple[str, str]:
    """(accuracy, locality) protocol the paper's row of `editor` was scored with, e.g. ('tf-token', 'topk-all')."""
    return provenance(paper, item, editor).protocols


def resolve_protocols(editors, accuracy="paper", locality="paper", paper: tuple[str, str] | None = None
                      ) -> dict[str, tuple[str, str]]:
    """editor -> (accuracy, locality): each of `accuracy` / `locality` is a protocol name (for every editor),
    "paper" (each editor's paper row, from `paper` = (paper, item)) or a dict editor -> protocol name.

        >>> resolve_protocols(["ike"], "gen-exact", "paper", ("mmedit", "Table 2"))
        {'ike': ('gen-exact', 'answer-argmax')}
    """
    out = {}
    for editor in editors:
        pair = []
        for kind, choice in (("accuracy", accuracy), ("locality", locality)):
            if isinstance(choice, dict):
                if editor not in choice:
                    raise ValueError(f"no {kind} protocol given for {editor!r}")
                choice = choice[editor]
            if choice == PAPER:
                if paper is None:
                    raise ValueError(f'{kind} protocol "paper" needs paper=(paper, item), e.g. ("mmedit", "Table 2")')
                choice = paper_protocols(*paper, editor)[0 if kind == "accuracy" else 1]
            pair.append(choice)
        check_protocols(*pair)
        out[editor] = tuple(pair)
    return out


def other_protocols(accuracy: str, locality: str) -> tuple[str, str]:
    """The protocols shown beside a row: the greedy exact answer (or tf-token when the row used it) and the other
    locality rule.

        >>> other_protocols("tf-token", "topk-all")
        ('gen-exact', 'answer-argmax')
    """
    check_protocols(accuracy, locality)
    other_accuracy = "tf-token" if accuracy == "gen-exact" else "gen-exact"
    return other_accuracy, next(p for p in LOCALITY_PROTOCOLS if p != locality)


def provenance_frame(paper: str | None = None, item: str | None = None) -> pd.DataFrame:
    """The recorded table (optionally one paper / item) as a frame: one row per paper row's method."""
    rows = [{"paper": p.paper, "item": p.item, "editor": p.editor, "accuracy": p.path.accuracy,
             "locality": p.path.locality, "code path": p.path.name,
             "code": f"{EASYEDIT} {p.path.path} @ {p.path.commit[:7]} ({p.path.date})", "basis": p.basis,
             "source": p.source + (f" ({p.note})" if p.note else "")}
            for p in TABLE if (paper is None or p.paper == paper) and (item is None or p.item == item)]
    if not rows:
        raise ValueError(f"no recorded provenance for {paper} {item}")
    return pd.DataFrame(rows)

