"""Record types: one edit case in the MMEdit schema, and the OKEDIT-style extension.

    >>> r = MMEditRecord.from_dict({"src": "q?", "pred": "a", "rephrase": "q2?", "alt": "b", "image": "x.png",
    ...     "image_rephrase": "y.png", "loc": "nq question: z", "loc_ans": "c", "m_loc": "w.png",
    ...     "m_loc_q": "q3?", "m_loc_a": "d", "rephrased_questions_train": ["q4?"]})
    >>> r.alt, r.extra["rephrased_questions_train"]
    ('b', ['q4?'])

Unknown keys are kept in `extra`, never rejected (the real MMEdit files carry tool-added fields). A field that
is present but empty raises `EmptyFieldError` (naming every empty field) after every type check passed, so that a
loader can skip such a record the way EasyEdit does (see `loaders.read_records`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

MMEDIT_FIELDS = ("src", "pred", "rephrase", "alt", "image", "image_rephrase", "loc", "loc_ans", "m_loc",
                 "m_loc_q", "m_loc_a")
IMAGE_FIELDS = ("image", "image_rephrase", "m_loc")
OKEDIT_FIELDS = ("category", "ground_truth", "rephrase_list", "image_rephrase_list", "train_rephrase",
                 "hard_loc_image", "hard_loc_q", "hard_loc_a")
OKEDIT_IMAGE_FIELDS = ("hard_loc_image",)
OKEDIT_IMAGE_LIST_FIELDS = ("image_rephrase_list",)
# Images read under the rephrase image root (EasyEdit's `rephrase_image` / `rephrase_root`); the others under the
# image root (EasyEdit's `coco_image` / `vis_root`).
REPHRASE_IMAGE_FIELDS = ("image_rephrase", "image_rephrase_list")
ALL_IMAGE_FIELDS = IMAGE_FIELDS + OKEDIT_IMAGE_FIELDS + OKEDIT_IMAGE_LIST_FIELDS
LIST_FIELDS = ("rephrase_list", "image_rephrase_list")


class RecordError(ValueError):
    """A record that does not fit its schema; the message names the record and the field."""


class EmptyFieldError(RecordError):
    """A well-typed record with empty field(s): `fields` names them, in schema order."""

    def __init__(self, message: str, fields: tuple[str, ...]):
        super().__init__(message)
        self.fields = fields


def is_empty(value) -> bool:
    """"" or whitespace only; for a list: no items, or an empty item."""
    if isinstance(value, list):
        return not value or any(not str(v).strip() for v in value)
    return not str(value).strip()


@dataclasses.dataclass
class MMEditRecord:
    src: str
    pred: str
    rephrase: str
    alt: str
    image: str
    image_rephrase: str
    loc: str
    loc_ans: str
    m_loc: str
    m_loc_q: str
    m_loc_a: str
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    required: ClassVar[tuple[str, ...]] = MMEDIT_FIELDS

    @classmethod
    def from_dict(cls, data: dict, where: str = "record") -> "MMEditRecord":
        if not isinstance(data, dict):
            raise RecordError(f"{where}: expected a JSON object, got {type(data).__name__}")
        missing = [f for f in cls.required if f not in data]
        if missing:
            raise RecordError(f"{where}: missing field(s) {', '.join(missing)}")
        for f in cls.required:
            value = data[f]
            if f in LIST_FIELDS:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise RecordError(f"{where}: field {f!r} must be a list of strings")
            elif not isinstance(value, (str, int, float)):
                raise RecordError(f"{where}: field {f!r} is not a string (got {type(value).__name__})")
        empty = tuple(f for f in cls.required if is_empty(data[f]))
        if empty:
            raise EmptyFieldError(f"{where}: field {', '.join(map(repr, empty))} is empty", empty)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: (v if isinstance(v, list) else str(v)) for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        return cls(**known, extra=extra)

    def image_paths(self) -> list[str]:
        return [self.image, self.image_rephrase, self.m_loc]

    def image_refs(self) -> list[tuple[str, str]]:
        """(field, relative path) of every image the record names, e.g. ("image_rephrase", "val2014_image_...")."""
        return [("image", self.image), ("image_rephrase", self.image_rephrase), ("m_loc", self.m_loc)]

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        data.update(self.extra)
        return data


@dataclasses.dataclass
class OKEditRecord(MMEditRecord):
    """OKEDIT-style: a counterfactual `alt`, several rephrases and re-rendered images, a look-alike hard locality."""
    category: str = ""
    ground_truth: str = ""
    rephrase_list: list = dataclasses.field(default_factory=list)
    image_rephrase_list: list = dataclasses.field(default_factory=list)
    train_rephrase: str = ""
    hard_loc_image: str = ""
    hard_loc_q: str = ""
    hard_loc_a: str = ""

    required: ClassVar[tuple[str, ...]] = MMEDIT_FIELDS + OKEDIT_FIELDS

    def image_paths(self) -> list[str]:
        return super().image_paths() + list(self.image_rephrase_list) + [self.hard_loc_image]

    def image_refs(self) -> list[tuple[str, str]]:
        return (super().image_refs() + [("image_rephrase_list", p) for p in self.image_rephrase_list]
                + [("hard_loc_image", self.hard_loc_image)])
