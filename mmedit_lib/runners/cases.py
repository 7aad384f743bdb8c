"""Edit cases ready to run: a record's edit request and its five probes, images loaded and processed once.

    >>> cases = load_cases(backbone, "results/world/tiny-blip2-opt", "vqa", n=200, seed=0)   # doctest: +SKIP
    >>> cases[0].probes["t_gen"].prompt                                                      # doctest: +SKIP
    'question : what is the building material of this landmark ? short answer :'

Probes (the MMEdit schema's fields): `rel` = (image, src) -> alt; `t_gen` = (image, rephrase) -> alt; `m_gen` =
(image_rephrase, src) -> alt; `t_loc` = the text-only `loc` question with `loc_ans`, through the language model
alone; `m_loc` = (m_loc image, m_loc_q) -> m_loc_a. E-VQA questions go through the backbone's VQA template; E-IC
prompts (`src`, e.g. "a photo of") are used as they are.
"""
from __future__ import annotations

import dataclasses
import functools
import random
from collections.abc import Sequence
from pathlib import Path

from ..backbones.backbone import Backbone, Query
from ..data.loaders import DataError, guess_image_root, load_image, load_records
from ..editors.base import EditRequest

TASKS = ("vqa", "caption")
ACCURACY_PROBES = ("rel", "t_gen", "m_gen")
LOCALITY_PROBES = ("t_loc", "m_loc")


@dataclasses.dataclass
class Case:
    case_id: str
    task: str
    request: EditRequest
    probes: dict[str, Query]


# The official MMEdit download's file names (editing-data/<task>/...), tried when <task>/<split>.json is absent.
OFFICIAL_NAMES = {("vqa", "eval"): "vqa_eval.json", ("vqa", "train"): "vqa_train.json",
                  ("caption", "eval"): "caption_eval_edit.json", ("caption", "train"): "caption_train_edit.json"}


def data_file(data_dir: str | Path, task: str, split: str = "eval") -> Path:
    """`<data_dir>/<task>/<split>.json` (the embedded world), else the official MMEdit name in the same folder."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    ours = Path(data_dir) / task / f"{split}.json"
    official = Path(data_dir) / task / OFFICIAL_NAMES[(task, split)]
    return official if not ours.exists() and official.exists() else ours


def select_indices(total: int, n: int, seed: int) -> list[int]:
    """n record indices drawn without replacement by `seed` (the same n and seed give the same cases)."""
    if n < 1 or n > total:
        raise ValueError(f"n must be between 1 and the {total} records available; got {n}")
    return sorted(random.Random(f"cases-{seed}").sample(range(total), n))


def record_case(bb: Backbone, rec, task: str, index: int, root: Path, split: str = "eval") -> Case:
    """One record as a case: its edit request and five probes, images loaded and processed."""
    case_id = str(rec.extra.get("case_id", f"{task}-{split}-{index:05d}"))
    image, image_rephrase, m_loc = (bb.pixel_values([load_image(p, root)])[0]
                                    for p in (rec.image, rec.image_rephrase, rec.m_loc))
    prompt = bb.vqa_prompt if task == "vqa" else (lambda text: text)
    edit = Query(image, prompt(rec.src), rec.alt)
    probes = {"rel": edit,
              "t_gen": Query(image, prompt(rec.rephrase), rec.alt),
              "m_gen": Query(image_rephrase, prompt(rec.src), rec.alt),
              "t_loc": Query(None, rec.loc, rec.loc_ans),
              "m_loc": Query(m_loc, bb.vqa_prompt(rec.m_loc_q), rec.m_loc_a)}
    return Case(case_id, task, EditRequest(edit, rec, case_id), probes)


def load_cases(bb: Backbone, data_dir: str | Path, task: str, n: int, seed: int = 0, split: str = "eval",
               image_root: str | Path | None = None) -> list[Case]:
    """n cases of `task`; DataError / MissingImageError name the first bad record or image (nothing partial)."""
    path = data_file(data_dir, task, split)
    records = load_records(path)
    if not records:
        raise DataError(f"{path}: no records")
    root = Path(image_root) if image_root else guess_image_root(path, records[0].image)
    return [record_case(bb, records[i], task, i, root, split) for i in select_indices(len(records), n, seed)]


class TrainSplit(Sequence):
    """The train split as cases, images loaded when a case is first read (what editors' `prepare` is given).

        >>> train = TrainSplit.load(bb, "results/world/tiny-blip2-opt", ["vqa"])      # doctest: +SKIP
        >>> len(train.records), train[0].probes["t_gen"].target                        # doctest: +SKIP
    """

    def __init__(self, bb: Backbone, records: list, tasks: list[str], roots: list[Path], cache: int = 512):
        self.bb, self.records, self.tasks, self.roots = bb, records, tasks, roots
        self._case = functools.lru_cache(maxsize=cache)(self._load)

    @classmethod
    def load(cls, bb: Backbone, data_dir: str | Path, tasks: list[str]) -> "TrainSplit":
        records, task_of, roots = [], [], []
        for task in tasks:
            path = data_file(data_dir, task, "train")
            recs = load_records(path)
            if not recs:
                raise DataError(f"{path}: no records")
            root = guess_image_root(path, recs[0].image)
            records += recs
            task_of += [task] * len(recs)
            roots += [root] * len(recs)
        return cls(bb, records, task_of, roots)

    def _load(self, i: int) -> Case:
        return record_case(self.bb, self.records[i], self.tasks[i], i, self.roots[i], "train")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._case(i if i >= 0 else i + len(self))

