"""A benchmark is one object: its record type, official file names, how a record becomes its probes, and its names
in the papers (the idea of ROME's `DS_DICT`).

    >>> from mmedit_lib.data.benchmarks import BENCHMARKS, get_benchmark
    >>> list(BENCHMARKS)
    ['vqa', 'caption', 'okedit']
    >>> get_benchmark("caption").label, get_benchmark("okedit").official["eval"]
    ('E-IC', 'okedit_eval.json')

The runners (`runners.cases`: file names, probes), the CLI's `--task` choices, the cross-task mix (the benchmarks
with `cross_task`) and the reports' dataset names read these objects. A benchmark of your own is one module with a
`BENCHMARK` on the Python path, named in `$MMEDIT_PLUGINS` (see `plugins`); its data are `<data_dir>/<name>/
<split>.json` (or its `official` names there).

Probes, per record (`probes(build, record)`, with `build` the case's `ProbeBuilder`): `rel` (the edit itself),
`t_gen`, `m_gen`, `t_loc`, `m_loc`, each a `Query`; a metric may have several probes (`t_gen:1`, ...), averaged.
`metrics` says which of the five a benchmark scores (`rel` always; default all): its `probes` give exactly those,
and its rows hold `None` for the others, which tables show as NaN (`metrics.aggregate.summarize`).

The embedded world: a benchmark with `world_cases(ctx, n, split)` (ctx a `world.cases.CaseContext`: the world, the
backbone's answers, its competent question kinds, the image store) gets `<world>/<name>/<split>.json` written by
`python -m mmedit_lib world --backbone B` and `world.ensure.ensure_world`, `world_sizes` cases per split
(`smoke_sizes` for the small world; `--n-<name>-<split>` overrides); `category_key` names the record field that
`cases.json` counts cases by. A benchmark without `world_cases` has no embedded data: pass `data_dir`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from .. import plugins
from ..metrics.aggregate import METRICS
from ..world.cases import caption_world_cases, okedit_world_cases, vqa_world_cases
from .records import MMEditRecord, OKEditRecord



@dataclasses.dataclass(frozen=True)
class ProbeBuilder:
    """What a benchmark's `probes` builds queries with, for one record: the edit image's pixels, images loaded
    from the image root or the rephrase image root, and the prompt rule of its benchmark."""
    image: object  # the record's `image`, processed
    pixels: Callable  # (path) -> pixels, under the image root
    rephrase_pixels: Callable  # (path) -> pixels, under the rephrase image root
    prompt: Callable[[str], str]  # the benchmark's prompt rule (the VQA template, or the text as it is)
    vqa_prompt: Callable[[str], str]  # the backbone's VQA template (locality questions are questions)
    query: Callable  # Query(pixels | None, prompt, target)


def mmedit_probes(build: ProbeBuilder, rec) -> dict:
    """MMEdit's five probes (E-VQA, E-IC)."""
    q = build.query
    return {"t_gen": q(build.image, build.prompt(rec.rephrase), rec.alt),
            "m_gen": q(build.rephrase_pixels(rec.image_rephrase), build.prompt(rec.src), rec.alt),
            "t_loc": q(None, rec.loc, rec.loc_ans),
            "m_loc": q(build.pixels(rec.m_loc), build.vqa_prompt(rec.m_loc_q), rec.m_loc_a)}


def okedit_probes(build: ProbeBuilder, rec) -> dict:
    """OKEDIT's (BalancEdit App. A/C): every rephrase of `rephrase_list` (T-Gen), every image of
    `image_rephrase_list` (I-Gen), MMEdit's text locality, and the look-alike image as the (hard) image locality."""
    q, out = build.query, {}
    for j, text in enumerate(rec.rephrase_list):
        out["t_gen" if j == 0 else f"t_gen:{j}"] = q(build.image, build.prompt(text), rec.alt)
    for j, path in enumerate(rec.image_rephrase_list):
        out["m_gen" if j == 0 else f"m_gen:{j}"] = q(build.rephrase_pixels(path), build.prompt(rec.src), rec.alt)
    out["t_loc"] = q(None, rec.loc, rec.loc_ans)
    out["m_loc"] = q(build.pixels(rec.hard_loc_image), build.vqa_prompt(rec.hard_loc_q), rec.hard_loc_a)
    return out


@dataclasses.dataclass(frozen=True)
class Benchmark:
    name: str  # the task name: `run --task`, `<data_dir>/<name>/`
    label: str  # the papers' name for it
    record: type  # the record type its files hold
    probes: Callable[[ProbeBuilder, object], dict]  # record -> t_gen, m_gen, t_loc, m_loc probes (rel is the edit)
    official: dict = dataclasses.field(default_factory=dict)  # split -> the official download's file name
    prompt: str = "vqa"  # "vqa": questions go through the backbone's VQA template; "raw": prompts used as they are
    cross_task: bool = False  # one of the two tasks UniKE's cross-task setting mixes (Table 3)
    paper_dataset: str = ""  # BalancEdit's name for its dataset column ("" when BalancEdit does not report it)
    summary: str = ""
    world_cases: Callable | None = None  # (CaseContext, n, split) -> record dicts: its cases in the embedded world
    world_sizes: dict = dataclasses.field(default_factory=dict)  # split -> cases the world gets
    smoke_sizes: dict = dataclasses.field(default_factory=dict)  # split -> cases the small (smoke) world gets
    category_key: str = "kind"  # the record field cases.json counts cases by
    metrics: tuple[str, ...] = METRICS  # the row metrics it scores, in METRICS' order, rel among them


BENCHMARKS: dict[str, Benchmark] = {}


def register(benchmark: Benchmark) -> Benchmark:
    """Add `benchmark` (ValueError when another one has its name, or its name is a setting's)."""
    if not isinstance(benchmark, Benchmark):
        raise TypeError(f"register takes a Benchmark, got {type(benchmark).__name__}")
    if "rel" not in benchmark.metrics or list(benchmark.metrics) != [m for m in METRICS if m in benchmark.metrics] \
            or not set(benchmark.metrics) <= set(METRICS):
        raise ValueError(f"benchmark {benchmark.name!r}: metrics {benchmark.metrics} must be among {METRICS}, in that "
                         f"order, with rel")
    if benchmark.name == "cross-task":
        raise ValueError("'cross-task' names the setting that mixes benchmarks, not a benchmark")
    if benchmark.name in BENCHMARKS and BENCHMARKS[benchmark.name] is not benchmark:
        raise ValueError(f"two benchmarks are named {benchmark.name!r}")
    BENCHMARKS[benchmark.name] = benchmark
    return benchmark


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def world_benchmarks() -> tuple[str, ...]:
    """The benchmarks the embedded world writes cases for, in order."""
    return tuple(name for name, b in BENCHMARKS.items() if b.world_cases is not None)


def cross_tasks() -> tuple[str, ...]:
    """The benchmarks UniKE's cross-task setting mixes, in order (E-VQA, E-IC)."""
    return tuple(name for name, b in BENCHMARKS.items() if b.cross_task)


def load_plugins(names: str | None = None) -> list[str]:
    """Register the BENCHMARK(S) of the plugin modules (default `$MMEDIT_PLUGINS`); the modules imported."""
    return plugins.load("BENCHMARK", "BENCHMARKS", register, names)


for _benchmark in (
    Benchmark("vqa", "E-VQA", MMEditRecord, mmedit_probes, {"eval": "vqa_eval.json", "train": "vqa_train.json"},
              cross_task=True, paper_dataset="MMEDIT",
              summary="MMEdit's editing VQA: (image, question) -> answer, VQAv2-style",
              world_cases=vqa_world_cases, world_sizes={"eval": 1000, "train": 3000},
              smoke_sizes={"eval": 20, "train": 20}),
    Benchmark("caption", "E-IC", MMEditRecord, mmedit_probes,
              {"eval": "caption_eval_edit.json", "train": "caption_train_edit.json"}, prompt="raw", cross_task=True,
              summary="MMEdit's editing image captioning: (image, caption prompt) -> caption, COCO-style",
              world_cases=caption_world_cases, world_sizes={"eval": 500, "train": 3000},
              smoke_sizes={"eval": 10, "train": 10}),
    Benchmark("okedit", "OKEDIT", OKEditRecord, okedit_probes,
              {"eval": "okedit_eval.json", "train": "okedit_train.json"}, paper_dataset="OKEDIT",
              summary="BalancEdit's OKEDIT: counterfactual answers, several rephrases and images, look-alike locality",
              world_cases=okedit_world_cases, world_sizes={"eval": 1000, "train": 1000},
              smoke_sizes={"eval": 20, "train": 10}, category_key="category"),
):
    register(_benchmark)
load_plugins()
