"""Load MMEdit / OKEDIT JSON files into records, and images from an image root, with one clear error each.

    >>> records = load_records("tests/fixtures/mmedit_vqa_eval_sample.json")                  # doctest: +SKIP
    >>> len(records)                                                                           # doctest: +SKIP
    40
    >>> image = load_image(records[0].image, image_root="editing-data")                        # doctest: +SKIP
    MissingImageError: image not found: editing-data/val2014/COCO_val2014_000000451435.jpg ...
"""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from .records import MMEditRecord, OKEditRecord, RecordError


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


def load_records(path: str | Path, kind: type[MMEditRecord] | None = None) -> list[MMEditRecord]:
    """All records of a file; raises DataError naming the first bad record (nothing partial is returned)."""
    rows = read_json_list(path)
    kind = kind or record_type(rows)
    records = []
    for i, row in enumerate(rows):
        try:
            records.append(kind.from_dict(row, where=f"{path} record {i}"))
        except RecordError as exc:
            raise DataError(str(exc)) from None
    return records


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
