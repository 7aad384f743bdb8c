"""Validate a data file: schema, empty answers (skipped, as EasyEdit skips them), missing images. Collects every
problem, raises nothing.

    >>> report = validate_file("editing-data/vqa/vqa_eval.json", image_root="editing-data",
    ...                        rephrase_image_root="/data/val2014_rephrase_root")                 # doctest: +SKIP
    >>> report.n_records, report.n_skipped, report.ok                                             # doctest: +SKIP
    (5000, 2, True)

`image` and `m_loc` (OKEDIT: `hard_loc_image`) are checked under the image root, `image_rephrase` (OKEDIT:
`image_rephrase_list`) under the rephrase image root (default: the image root). A skipped record is reported by
index and field, and is not a failure unless `strict`; its images are not checked (EasyEdit never opens them).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .loaders import (DataError, SkippedRecord, check_skip_rule, image_path, image_roots, parse_row, read_json_list,
                      record_type, root_for)
from .records import RecordError


@dataclasses.dataclass
class ValidationReport:
    path: str
    n_records: int = 0  # rows read, kept and skipped
    schema: str = ""
    problems: list[str] = dataclasses.field(default_factory=list)
    missing_images: list[str] = dataclasses.field(default_factory=list)
    n_image_refs: int = 0
    extra_keys: list[str] = dataclasses.field(default_factory=list)
    image_root: str = ""
    rephrase_image_root: str = ""
    skipped: list[SkippedRecord] = dataclasses.field(default_factory=list)
    strict: bool = False
    skip_rule: str = "alt"

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.missing_images and not (self.strict and self.skipped)

    def lines(self, show: int = 5) -> list[str]:
        roots = f"image root {self.image_root}"
        if self.rephrase_image_root != self.image_root:
            roots += f"; rephrase image root {self.rephrase_image_root}"
        out = [f"{self.path}: read {self.n_records} records ({self.schema}); {roots}"]
        if self.extra_keys:
            out.append(f"  extra keys kept: {', '.join(self.extra_keys)}")
        if self.skipped:
            verdict = "refused (strict)" if self.strict else "skipped, as EasyEdit skips them"
            out.append(f"  records with an empty answer: {self.n_skipped} {verdict} (rule {self.skip_rule!r}): "
                       + ", ".join(f"record {s.index} ({s.field})" for s in self.skipped[:show])
                       + (f", ... and {self.n_skipped - show} more" if self.n_skipped > show else ""))
        for p in self.problems[:show]:
            out.append(f"  schema problem: {p}")
        if len(self.problems) > show:
            out.append(f"  ... and {len(self.problems) - show} more schema problems")
        if self.missing_images:
            out.append(f"  missing images: {len(self.missing_images)} distinct files (of {self.n_image_refs} image references), e.g.:")
            out.extend(f"    {m}" for m in self.missing_images[:show])
        refused = f", {self.n_skipped} record(s) with an empty answer (strict)" if self.strict and self.skipped else ""
        out.append("  OK" if self.ok else f"  FAILED: {len(self.problems)} schema problem(s), "
                                          f"{len(self.missing_images)} missing image(s){refused}")
        return out


def validate_file(path: str | Path, image_root: str | Path | None = None,
                  rephrase_image_root: str | Path | None = None, strict: bool = False,
                  skip_rule: str = "alt", task: str | None = None) -> ValidationReport:
    """Check every record; images under `image_root` (default: guessed, see loaders.guess_image_root) and the
    rephrased ones under `rephrase_image_root` (default: the image root). `skip_rule`: see loaders. `task`: check
    against that benchmark's record type (`data.benchmarks`; default: the schema the first record's keys show)."""
    check_skip_rule(skip_rule)
    report = ValidationReport(path=str(path), strict=strict, skip_rule=skip_rule)
    try:
        rows = read_json_list(path)
    except DataError as exc:
        report.problems.append(str(exc))
        return report
    if task is not None:
        from .benchmarks import get_benchmark
        benchmark = get_benchmark(task)
        kind, report.schema = benchmark.record, benchmark.label
    else:
        kind = record_type(rows)
        report.schema = "OKEDIT-style" if kind.__name__ == "OKEditRecord" else "MMEdit"
    parsed = []
    for i, row in enumerate(rows):
        report.n_records += 1
        try:
            out = parse_row(kind, row, i, where=f"record {i}", skip_rule=skip_rule)
        except RecordError as exc:
            report.problems.append(str(exc))
            continue
        if isinstance(out, SkippedRecord):
            report.skipped.append(out)
        else:
            parsed.append((i, out))
    root, rephrase_root = image_roots(path, [r for _, r in parsed], image_root, rephrase_image_root)
    report.image_root, report.rephrase_image_root = str(root), str(rephrase_root)
    extra: dict[str, None] = {}
    seen_missing: set[str] = set()
    for i, record in parsed:
        extra.update(dict.fromkeys(record.extra))
        for field, rel in record.image_refs():
            report.n_image_refs += 1
            full = image_path(rel, root_for(field, root, rephrase_root))
            if str(full) not in seen_missing and not full.is_file():
                seen_missing.add(str(full))
                report.missing_images.append(f"record {i} ({field}): {full}")
    report.extra_keys = list(extra)
    return report
