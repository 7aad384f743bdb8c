"""Load MMEdit / OKEDIT JSON files into records, and images from an image root, with one clear error each.

    >>> loaded = read_records("tests/fixtures/mmedit_vqa_eval_sample.json")                   # doctest: +SKIP
    >>> len(loaded.records), loaded.skipped                                                    # doctest: +SKIP
    (40, [])
    >>> image = load_image(loaded.records[0].image, image_root="editing-data")                 # doctest: +SKIP
    MissingImageError: image not found: editing-data/val2014/COCO_val2014_000000451435.jpg ...

Records with an empty answer are skipped as EasyEdit skips them, and counted (`LoadedRecords.skipped`, by their
index in the file); `strict=True` refuses the file instead. Malformed JSON, wrong types and absent fields are
never skipped: they raise one DataError naming the record.

What EasyEdit skips (`easyeditor/dataset/vqa.py`, `coco_caption.py`), by `skip_rule`:
- "alt" (default): `record['alt'] == ""`, the only test from Oct 2023 through 2024, the code that produced the
  MMEdit / UniKE / BalancEdit numbers. Any other empty field is refused (DataError), since EasyEdit would have
  scored it against an empty answer.
- "any-text": also a record with any empty text field (src, pred, rephrase, loc, loc_ans, m_loc_q, m_loc_a, ...),
  as EasyEdit's `vqa.py` does since Nov 2025 (its `coco_caption.py` still tests alt only). An empty image path is
  refused under both rules.
We count a whitespace-only value as empty (EasyEdit compares with "" exactly and would keep " ").

EasyEdit's image roots: `coco_image` (its `vis_root`) holds `image` and `m_loc`; `rephrase_image` (its
`rephrase_root`) holds `image_rephrase`. Here: `image_root` (also OKEDIT's `hard_loc_image`) and
`rephrase_image_root` (also OKEDIT's `image_rephrase_list`), see `image_roots`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from PIL import Image

from .records import ALL_IMAGE_FIELDS, REPHRASE_IMAGE_FIELDS, EmptyFieldError, MMEditRecord, OKEditRecord, RecordError

SKIP_RULES = {"alt": "a record whose alt is empty is skipped (EasyEdit 2023-2024, the papers' runs)",
              "any-text": "a record with any empty text field is skipped (EasyEdit's vqa.py since Nov 2025)"}


class DataError(ValueError):
    """A data file that cannot be read as records (malformed JSON, wrong top-level type, bad records)."""


class MissingImageError(FileNotFoundError):
    """An image a record names is not under the image root."""


def read_json_list(path: str | Path) -> list:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such data file: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if isinstance(data, dict) and "data" in data and isinstance(data["data"], list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def record_type(rows: list) -> type[MMEditRecord]:
    """OKEditRecord when the rows carry the OKEDIT fields, else MMEditRecord."""
    first = rows[0] if rows and isinstance(rows[0], dict) else {}
    return OKEditRecord if "hard_loc_image" in first and "rephrase_list" in first else MMEditRecord


@dataclasses.dataclass(frozen=True)
class SkippedRecord:
    """A record left out for an empty answer: its index in the file and the empty field(s), e.g. (7, "alt")."""
    index: int
    field: str


@dataclasses.dataclass
class LoadedRecords:
    """A file's kept records, each one's index in the file (`indices`), and the skipped ones.

        >>> loaded = read_records("editing-data/vqa/vqa_eval.json")          # doctest: +SKIP
        >>> loaded.n_rows, len(loaded.records), loaded.skipped[:1]            # doctest: +SKIP
        (5000, 4998, [SkippedRecord(index=812, field='alt')])
    """
    path: Path
    records: list
    indices: list[int]
    skipped: list[SkippedRecord]
    skip_rule: str = "alt"

    @property
    def n_rows(self) -> int:
        return len(self.records) + len(self.skipped)

    def summary(self, show: int = 20) -> dict:
        """What a run manifest records: counts exact, the skipped records listed up to `show`."""
        return {"file": str(self.path), "n_rows": self.n_rows, "n_records": len(self.records),
                "n_skipped": len(self.skipped), "skip_rule": self.skip_rule,
                "skipped": [{"index": s.index, "field": s.field} for s in self.skipped[:show]],
                "skipped_listed": min(show, len(self.skipped))}


def check_skip_rule(skip_rule: str) -> None:
    if skip_rule not in SKIP_RULES:
        raise ValueError(f"unknown skip_rule {skip_rule!r}; known: {', '.join(SKIP_RULES)}")


def parse_row(kind: type[MMEditRecord], row, index: int, where: str, skip_rule: str = "alt"):
    """The row as a record, or a SkippedRecord when `skip_rule` skips it; RecordError when it is bad."""
    check_skip_rule(skip_rule)
    try:
        return kind.from_dict(row, where=where)
    except EmptyFieldError as exc:
        text = [f for f in exc.fields if f not in ALL_IMAGE_FIELDS]
        hit = [f for f in text if f == "alt"] if skip_rule == "alt" else text
        if hit:
            return SkippedRecord(index, ", ".join(hit))
        hint = (" (EasyEdit 2023 skips only an empty alt; skip_rule='any-text' skips empty text fields too, as "
                "EasyEdit since 2025)") if text else ""
        raise RecordError(f"{exc}{hint}") from None


def read_records(path: str | Path, kind: type[MMEditRecord] | None = None, strict: bool = False,
                 skip_rule: str = "alt") -> LoadedRecords:
    """A file's records, those with an empty answer skipped and counted (see the module docstring); `strict`:
    DataError naming the first record that would be skipped. Any other bad record: DataError naming it."""
    check_skip_rule(skip_rule)
    rows = read_json_list(path)
    kind = kind or record_type(rows)
    loaded = LoadedRecords(Path(path), [], [], [], skip_rule)
    for i, row in enumerate(rows):
        where = f"{path} record {i}"
        try:
            out = parse_row(kind, row, i, where, skip_rule)
        except RecordError as exc:
            raise DataError(str(exc)) from None
        if isinstance(out, SkippedRecord):
            if strict:
                raise DataError(f"{where}: field(s) {out.field} empty; refused (strict); without strict the "
                                f"record is skipped, as EasyEdit skips it")
            loaded.skipped.append(out)
        else:
            loaded.records.append(out)
            loaded.indices.append(i)
    return loaded


def load_records(path: str | Path, kind: type[MMEditRecord] | None = None, strict: bool = False,
                 skip_rule: str = "alt") -> list[MMEditRecord]:
    """The kept records of a file (`read_records(...).records`: records with an empty answer left out)."""
    return read_records(path, kind, strict=strict, skip_rule=skip_rule).records


def image_path(relative: str, image_root: str | Path) -> Path:
    return Path(image_root) / relative


def load_image(relative: str, image_root: str | Path) -> Image.Image:
    """The RGB image a record names; MissingImageError (naming the full path) when it is absent or unreadable."""
    path = image_path(relative, image_root)
    if not path.is_file():
        raise MissingImageError(f"image not found: {path} (image root {image_root}; the record names {relative!r})")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except OSError as exc:
        raise MissingImageError(f"image unreadable: {path}: {exc}") from None


def guess_image_root(data_file: str | Path, relative: str | None) -> Path:
    """The nearest folder at or above the data file that holds `relative`'s top folder (else the file's folder).

    World files live at `<root>/vqa/eval.json` with images under `<root>/images/`; the official MMEdit download
    keeps `editing-data/vqa/vqa_eval.json` beside the COCO folders: both resolve without --image-root.
    """
    folder = Path(data_file).resolve().parent
    if relative:
        top = Path(relative).parts[0]
        for candidate in [folder, *folder.parents][:4]:
            if (candidate / top).exists():
                return candidate
    return folder


def image_roots(data_file: str | Path, records: list, image_root: str | Path | None = None,
                rephrase_image_root: str | Path | None = None) -> tuple[Path, Path]:
    """(image root, rephrase image root) for a file's records: `image_root`, else $MMEDIT_IMAGE_ROOT, else guessed
    from the first record's image (guess_image_root); `rephrase_image_root`, else $MMEDIT_REPHRASE_IMAGE_ROOT, else
    the image root (None or "" means not given; a notebook's parameters set the variables: `mmedit_lib.inputs`).

        >>> image_roots("editing-data/vqa/vqa_eval.json", recs, rephrase_image_root="/data/rephrase")  # doctest: +SKIP
        (PosixPath('.../editing-data'), PosixPath('/data/rephrase'))
    """
    first = records[0].image if records else None
    image_root = image_root or os.environ.get("MMEDIT_IMAGE_ROOT")
    rephrase_image_root = rephrase_image_root or os.environ.get("MMEDIT_REPHRASE_IMAGE_ROOT")
    root = Path(image_root) if image_root else guess_image_root(data_file, first)
    return root, Path(rephrase_image_root) if rephrase_image_root else root


def root_for(field: str, root: Path, rephrase_root: Path) -> Path:
    """The folder an image field is read under: the rephrase root for image_rephrase(_list), else the image root."""
    return rephrase_root if field in REPHRASE_IMAGE_FIELDS else root
