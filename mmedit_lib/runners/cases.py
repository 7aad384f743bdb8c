"""Edit cases ready to run: a record's edit request and its five probes, images loaded and processed once.

    >>> cases = load_cases(backbone, "results/world/tiny-blip2-opt", "vqa", n=200, seed=0)   # doctest: +SKIP
    >>> cases[0].probes["t_gen"].prompt                                                      # doctest: +SKIP
    'question : what is the building material of this landmark ? short answer :'

Probes (the MMEdit schema's fields): `rel` = (image, src) -> alt; `t_gen` = (image, rephrase) -> alt; `m_gen` =
(image_rephrase, src) -> alt; `t_loc` = the text-only `loc` question with `loc_ans`, through the language model
alone; `m_loc` = (m_loc image, m_loc_q) -> m_loc_a. E-VQA questions go through the backbone's VQA template; E-IC
prompts (`src`, e.g. "a photo of") are used as they are.

The OKEDIT-style task (`okedit`, BalancEdit App. A/C) has several probes per metric, named `t_gen`, `t_gen:1`, ...:
T-Gen is the mean over every question of `rephrase_list` (same image), I-Gen (`m_gen`) the mean over every image
of `image_rephrase_list` (same question), and `m_loc` is the hard locality: the look-alike image
(`hard_loc_image`, `hard_loc_q`), whose answer must stay what the unedited model said. `t_loc` is as in MMEdit.

Images: `image`, `m_loc` and `hard_loc_image` under `image_root` (default: guessed from the data file's folder),
`image_rephrase` and `image_rephrase_list` under `rephrase_image_root` (default: the image root), as EasyEdit's
`coco_image` / `rephrase_image`. Records with an empty answer are skipped as EasyEdit skips them (`strict=True`:
refused), see `data.loaders`; a case keeps its record's index in the file in its id, so skipping renumbers nothing.
"""
from __future__ import annotations

import dataclasses
import functools
import random
from collections.abc import Sequence
from pathlib import Path

from ..backbones.backbone import Backbone, Query
from ..data.benchmarks import BENCHMARKS, ProbeBuilder, get_benchmark
from ..data.loaders import DataError, LoadedRecords, image_roots, load_image, read_records
from ..editors.base import EditRequest

TASKS = BENCHMARKS.keys()  # every registered benchmark (`data.benchmarks`), plugins' included
ACCURACY_PROBES = ("rel", "t_gen", "m_gen")
LOCALITY_PROBES = ("t_loc", "m_loc")


def metric_of(probe: str) -> str:
    """The metric a probe counts towards: `t_gen:3` -> `t_gen` (OKEDIT's several rephrases per metric)."""
    return probe.split(":", 1)[0]


@dataclasses.dataclass
class Case:
    case_id: str
    task: str
    request: EditRequest
    probes: dict[str, Query]


def data_file(data_dir: str | Path, task: str, split: str = "eval") -> Path:
    """`<data_dir>/<task>/<split>.json` (the embedded world), else the benchmark's official name in the same folder
    (the official MMEdit download's `editing-data/<task>/...`)."""
    official_name = get_benchmark(task).official.get(split)
    ours = Path(data_dir) / task / f"{split}.json"
    official = Path(data_dir) / task / official_name if official_name else ours
    return official if not ours.exists() and official.exists() else ours


def select_indices(total: int, n: int, seed: int) -> list[int]:
    """n record indices drawn without replacement by `seed` (the same n and seed give the same cases)."""
    if n < 1 or n > total:
        raise ValueError(f"n must be between 1 and the {total} records available; got {n}")
    return sorted(random.Random(f"cases-{seed}").sample(range(total), n))


def training_rephrase(rec, task: str) -> str:
    """A rephrase of `rec.src` meant for training, never an evaluated one: the record's own (OKEDIT
    `train_rephrase`, the official MMEdit `rephrased_questions_train`), else, for world records, another of the
    world's phrasings of the question (another caption prompt for E-IC); "" when there is none."""
    own = str(getattr(rec, "train_rephrase", "") or rec.extra.get("train_rephrase", "")).strip()
    if own:
        return own
    official = rec.extra.get("rephrased_questions_train")
    if isinstance(official, list) and official and str(official[0]).strip():
        return str(official[0])
    evaluated = (rec.rephrase, *getattr(rec, "rephrase_list", ()))
    if get_benchmark(task).prompt == "raw":  # caption prompts
        from ..world.questions import CAPTION_PROMPTS
        return next((p for p in CAPTION_PROMPTS if p != rec.src and p not in evaluated), "")
    if "kind" in rec.extra:
        from ..world.questions import training_rephrase as world_rephrase
        return world_rephrase(str(rec.extra["kind"]), rec.src, evaluated) or ""
    return ""


def record_case(bb: Backbone, rec, task: str, index: int, root: Path, split: str = "eval",
                rephrase_root: Path | None = None) -> Case:
    """One record as a case (`index`: its position in the file): its edit request and probes, images loaded and
    processed; rephrased images under `rephrase_root` (default: `root`)."""
    benchmark = get_benchmark(task)
    case_id = str(rec.extra.get("case_id", f"{task}-{split}-{index:05d}"))
    rephrase_root = rephrase_root if rephrase_root is not None else root
    if not isinstance(rec, benchmark.record):
        raise DataError(f"record {case_id} is not a {benchmark.record.__name__} ({benchmark.label} records: "
                        f"{', '.join(benchmark.record.required)})")

    def pixels(path, under=root):
        return bb.pixel_values([load_image(path, under)])[0]
    image = pixels(rec.image)
    prompt = (lambda text: text) if benchmark.prompt == "raw" else bb.vqa_prompt
    edit = Query(image, prompt(rec.src), rec.alt)
    build = ProbeBuilder(image, pixels, lambda path: pixels(path, rephrase_root), prompt, bb.vqa_prompt, Query)
    probes = {"rel": edit, **benchmark.probes(build, rec)}  # in metric order: rel, t_gen, m_gen, t_loc, m_loc
    missing = [m for m in benchmark.metrics if m not in probes]
    extra = sorted({metric_of(p) for p in probes} - set(benchmark.metrics))
    if missing or extra:
        raise ValueError(f"benchmark {task} scores {', '.join(benchmark.metrics)}: its probes() gave "
                         + "; ".join(([f"no {', '.join(missing)} probe"] if missing else [])
                                     + ([f"a probe for {', '.join(extra)}"] if extra else [])))
    train = training_rephrase(rec, task)
    request = EditRequest(edit, rec, case_id, train_prompt=prompt(train) if train else "")
    return Case(case_id, task, request, probes)


def task_records(data_dir: str | Path, task: str, split: str = "eval", strict: bool = False,
                 skip_rule: str = "alt") -> LoadedRecords:
    """The kept records of `task`'s `split` file, with the skipped ones; DataError when none is kept."""
    path = data_file(data_dir, task, split)
    loaded = read_records(path, strict=strict, skip_rule=skip_rule)
    if not loaded.records:
        raise DataError(f"{path}: no records" + (f" ({len(loaded.skipped)} skipped for an empty answer)"
                                                 if loaded.skipped else ""))
    return loaded


def data_summary(data_dir: str | Path, task: str, split: str = "eval", strict: bool = False,
                 show: int = 20, skip_rule: str = "alt") -> dict:
    """What the run manifest records of a data file: records kept, skipped (exact count; listed up to `show`).

        >>> data_summary("editing-data", "vqa")                                              # doctest: +SKIP
        {'file': 'editing-data/vqa/vqa_eval.json', 'n_rows': 5000, 'n_records': 4999, 'n_skipped': 1,
         'skip_rule': 'alt', 'skipped': [{'index': 812, 'field': 'alt'}], 'skipped_listed': 1}
    """
    return read_records(data_file(data_dir, task, split), strict=strict, skip_rule=skip_rule).summary(show)


def load_cases(bb: Backbone, data_dir: str | Path, task: str, n: int, seed: int = 0, split: str = "eval",
               image_root: str | Path | None = None, rephrase_image_root: str | Path | None = None,
               strict: bool = False, skip_rule: str = "alt") -> list[Case]:
    """n cases of `task`, drawn among the kept records; DataError / MissingImageError name the first bad record or
    image (nothing partial). Roots: see the module docstring; `skip_rule`: see `data.loaders`."""
    loaded = task_records(data_dir, task, split, strict, skip_rule)
    root, rephrase_root = image_roots(loaded.path, loaded.records, image_root, rephrase_image_root)
    return [record_case(bb, loaded.records[i], task, loaded.indices[i], root, split, rephrase_root)
            for i in select_indices(len(loaded.records), n, seed)]


class TrainSplit(Sequence):
    """The train split as cases, images loaded when a case is first read (what editors' `prepare` is given).

        >>> train = TrainSplit.load(bb, "results/world/tiny-blip2-opt", ["vqa"])      # doctest: +SKIP
        >>> len(train.records), train[0].probes["t_gen"].target                        # doctest: +SKIP
    """

    def __init__(self, bb: Backbone, records: list, tasks: list[str], roots: list[Path], cache: int = 512,
                 rephrase_roots: list[Path] | None = None, indices: list[int] | None = None,
                 skipped: dict[str, list] | None = None):
        self.bb, self.records, self.tasks, self.roots = bb, records, tasks, roots
        self.rephrase_roots = rephrase_roots if rephrase_roots is not None else roots
        self.indices = indices if indices is not None else list(range(len(records)))  # each record's index in its file
        self.skipped = skipped or {}  # task -> the SkippedRecords of its train file
        self._case = functools.lru_cache(maxsize=cache)(self._load)

    @classmethod
    def load(cls, bb: Backbone, data_dir: str | Path, tasks: list[str], image_root: str | Path | None = None,
             rephrase_image_root: str | Path | None = None, strict: bool = False,
             skip_rule: str = "alt") -> "TrainSplit":
        """The train files of `tasks`; roots and skipping as `load_cases` (one image root for every task)."""
        records, task_of, roots, rephrase_roots, indices, skipped = [], [], [], [], [], {}
        for task in tasks:
            loaded = task_records(data_dir, task, "train", strict, skip_rule)
            root, rephrase_root = image_roots(loaded.path, loaded.records, image_root, rephrase_image_root)
            records += loaded.records
            indices += loaded.indices
            task_of += [task] * len(loaded.records)
            roots += [root] * len(loaded.records)
            rephrase_roots += [rephrase_root] * len(loaded.records)
            skipped[task] = loaded.skipped
        return cls(bb, records, task_of, roots, rephrase_roots=rephrase_roots, indices=indices, skipped=skipped)

    def _load(self, i: int) -> Case:
        return record_case(self.bb, self.records[i], self.tasks[i], self.indices[i], self.roots[i], "train",
                           self.rephrase_roots[i])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._case(i if i >= 0 else i + len(self))

