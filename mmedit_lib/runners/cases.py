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
import random
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


def load_cases(bb: Backbone, data_dir: str | Path, task: str, n: int, seed: int = 0, split: str = "eval",
               image_root: str | Path | None = None) -> list[Case]:
    """n cases of `task`; DataError / MissingImageError name the first bad record or image (nothing partial)."""
    path = data_file(data_dir, task, split)
    records = load_records(path)
    if not records:
        raise DataError(f"{path}: no records")
    root = Path(image_root) if image_root else guess_image_root(path, records[0].image)
    cases = []
    for i in select_indices(len(records), n, seed):
        rec = records[i]
        case_id = str(rec.extra.get("case_id", f"{task}-{split}-{i:05d}"))
        image, image_rephrase, m_loc = (bb.pixel_values([load_image(p, root)])[0]
                                        for p in (rec.image, rec.image_rephrase, rec.m_loc))
        prompt = bb.vqa_prompt if task == "vqa" else (lambda text: text)
        edit = Query(image, prompt(rec.src), rec.alt)
        probes = {"rel": edit,
                  "t_gen": Query(image, prompt(rec.rephrase), rec.alt),
                  "m_gen": Query(image_rephrase, prompt(rec.src), rec.alt),
                  "t_loc": Query(None, rec.loc, rec.loc_ans),
                  "m_loc": Query(m_loc, bb.vqa_prompt(rec.m_loc_q), rec.m_loc_a)}
        cases.append(Case(case_id, task, EditRequest(edit, rec, case_id), probes))
    return cases
