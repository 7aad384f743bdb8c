"""Validate a data file: schema, empty fields, missing images. Collects every problem, raises nothing.

    >>> report = validate_file("tests/fixtures/mmedit_vqa_eval_sample.json", image_root="nowhere")  # doctest: +SKIP
    >>> report.n_records, report.ok                                                                 # doctest: +SKIP
    (40, False)
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .loaders import DataError, guess_image_root, image_path, read_json_list, record_type
from .records import RecordError


@dataclasses.dataclass
class ValidationReport:
    path: str
    n_records: int = 0
    schema: str = ""
    problems: list[str] = dataclasses.field(default_factory=list)
    missing_images: list[str] = dataclasses.field(default_factory=list)
    n_image_refs: int = 0
    extra_keys: list[str] = dataclasses.field(default_factory=list)
    image_root: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems and not self.missing_images

    def lines(self, show: int = 5) -> list[str]:
        out = [f"{self.path}: read {self.n_records} records ({self.schema}); image root {self.image_root}"]
        if self.extra_keys:
            out.append(f"  extra keys kept: {', '.join(self.extra_keys)}")
        for p in self.problems[:show]:
            out.append(f"  schema problem: {p}")
        if len(self.problems) > show:
            out.append(f"  ... and {len(self.problems) - show} more schema problems")
        if self.missing_images:
            out.append(f"  missing images: {len(self.missing_images)} distinct files (of {self.n_image_refs} image references), e.g.:")
            out.extend(f"    {m}" for m in self.missing_images[:show])
        out.append("  OK" if self.ok else f"  FAILED: {len(self.problems)} schema problem(s), "
                                          f"{len(self.missing_images)} missing image(s)")
        return out


def validate_file(path: str | Path, image_root: str | Path | None = None) -> ValidationReport:
    """Check every record; images are checked under `image_root` (default: guessed, see guess_image_root)."""
    report = ValidationReport(path=str(path))
    try:
        rows = read_json_list(path)
    except DataError as exc:
        report.problems.append(str(exc))
        return report
    kind = record_type(rows)
    report.schema = "OKEDIT-style" if kind.__name__ == "OKEditRecord" else "MMEdit"
    first = rows[0].get("image") if rows and isinstance(rows[0], dict) else None
    root = Path(image_root) if image_root is not None else guess_image_root(path, first)
    report.image_root = str(root)
    extra: dict[str, None] = {}
    seen_missing: set[str] = set()
    for i, row in enumerate(rows):
        report.n_records += 1
        try:
            record = kind.from_dict(row, where=f"record {i}")
        except RecordError as exc:
            report.problems.append(str(exc))
            continue
        extra.update(dict.fromkeys(record.extra))
        for rel in record.image_paths():
            report.n_image_refs += 1
            full = image_path(rel, root)
            if str(full) not in seen_missing and not full.is_file():
                seen_missing.add(str(full))
                report.missing_images.append(f"record {i}: {full}")
    report.extra_keys = list(extra)
    return report
