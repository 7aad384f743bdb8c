"""Run an editor over edit cases in a setting, store one row per case, resume where a killed run stopped.

    >>> spec = RunSpec(editor="ft-last", backbone="tiny-blip2-opt", task="vqa", setting="one-step", n=200)
    >>> result = run(spec)                                  # doctest: +SKIP
    >>> summarize(result.rows)                              # doctest: +SKIP

Settings:
- `one-step`: edit, evaluate the case, restore, next case (a group = one case);
- `seq` with `k`: apply K edits in order, keep them, then evaluate every case of the sequence; locality always
  against the *unedited* model; restore all (a group = one sequence);
- `cross-task`: `seq` with K = 10 drawn as 5 E-VQA + 5 E-IC cases per sequence (`task` is "cross-task"); the
  metrics of both tasks are pooled, as UniKE Table 3 reports them.

Besides the metrics, each row records its edit's `edit_seconds` and `edit_peak_mb` (`memory.edit_memory`: the
high-water mark during the edit above what was in use before it), `eval_seconds` (its share of the group's
evaluation pass), `prepare_seconds` (the build time of what `prepare` made, cached or not) and `peak_memory_mb`
(the process's peak so far).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import resource
import subprocess
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..backbones.backbone import Backbone, state_hash
from ..editors.registry import get_spec, make_editor, make_hparams, sequential_problem
from ..metrics.protocols import check_protocols
from ..paths import REPO_ROOT
from ..data.benchmarks import cross_tasks
from .cases import TASKS, Case, TrainSplit, data_file, data_summary, load_cases
from .evaluate import evaluate_cases, locality_reference
from .memory import edit_memory, process_peak_mb
from ..locks import exclusive
from .store import RunStore, key_hash, log_run, run_id_for

SETTINGS = ("one-step", "seq", "cross-task")
TIMING_FIELDS = ("edit_seconds", "eval_seconds", "edit_peak_mb", "peak_memory_mb", "prepare_seconds")
CROSS_TASK_K = 10


@dataclasses.dataclass
class RunSpec:
    editor: str
    backbone: str
    task: str = "vqa"  # vqa | caption | cross-task
    setting: str = "one-step"
    n: int = 200  # edit cases (for seq/cross-task: a multiple of k)
    k: int = 1
    seed: int = 0
    accuracy_protocol: str = "tf-token"
    locality_protocol: str = "answer-argmax"
    hparams: dict = dataclasses.field(default_factory=dict)  # overrides of the editor's defaults
    data_dir: str | None = None  # default results/world/<backbone>
    backbone_path: str | None = None
    # How the backbone is loaded (None: `registry.resolve_dtype`, i.e. $MMEDIT_DTYPE or the device's default; the
    # spec's image size and prompt format). What it was loaded with is in the run key and every row.
    dtype: str | None = None
    image_size: int | None = None
    prompt_format: str | None = None
    # The data: image folders (None: `data.loaders.image_roots`, i.e. $MMEDIT_IMAGE_ROOT /
    # $MMEDIT_REPHRASE_IMAGE_ROOT, else found from the data file; the rephrased images default to the image root),
    # and whether a record with an empty answer refuses the file (`strict`) instead of being skipped as EasyEdit
    # skips it (counted and named in the manifest's "data").
    image_root: str | None = None
    rephrase_image_root: str | None = None
    strict: bool = False

    def check(self) -> None:
        """ValueError with one clear message for any bad parameter (before anything is loaded or written)."""
        from ..backbones.prompt_format import get_format
        from ..backbones.registry import DTYPES
        get_spec(self.editor)
        check_protocols(self.accuracy_protocol, self.locality_protocol)
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; known: {', '.join(DTYPES)}")
        if self.prompt_format is not None:
            get_format(self.prompt_format)
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size must be a positive number of pixels; got {self.image_size}")
        if self.setting not in SETTINGS:
            raise ValueError(f"unknown setting {self.setting!r}; known: {', '.join(SETTINGS)}")
        if self.setting == "cross-task":
            if self.task != "cross-task":
                raise ValueError("the cross-task setting draws from both tasks: use task 'cross-task'")
            if self.k != CROSS_TASK_K:
                raise ValueError(f"cross-task editing uses k={CROSS_TASK_K} (5 E-VQA + 5 E-IC per sequence)")
        elif self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; known: {', '.join(TASKS)} (or cross-task)")
        if self.setting == "one-step" and self.k != 1:
            raise ValueError("one-step editing has k=1; use --setting seq for K sequential edits")
        if self.setting == "seq" and self.k < 2:
            raise ValueError(f"sequential editing needs k >= 2; got {self.k}")
        if self.setting != "one-step":
            problem = sequential_problem(self.editor, make_hparams(self.editor, self.backbone, **self.hparams))
            if problem:
                raise ValueError(f"{self.editor} does not support sequential editing: {problem}")
        if self.n < 1 or self.n % self.k:
            raise ValueError(f"n must be a positive multiple of k={self.k}; got {self.n}")

    @property
    def setting_label(self) -> str:
        return {"one-step": "one-step", "seq": f"seq-{self.k}", "cross-task": "cross-task"}[self.setting]


@dataclasses.dataclass
class RunResult:
    run_id: str
    folder: Path
    rows: list[dict]
    manifest: dict
    reused: bool


def default_data_dir(backbone: str) -> Path:
    return REPO_ROOT / "results" / "world" / backbone


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions() -> dict:
    import transformers
    from .. import __version__
    return {"mmedit_lib": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


def peak_memory_mb(bb: Backbone) -> float:
    if bb.device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(bb.device) / 2**20, 1)
    # the process's peak RSS since it started (edit_memory resets the kernel's counter, and remembers the peak first)
    return process_peak_mb() or round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _file_sha(path: Path) -> str:
    import hashlib
    return hashlib.sha256(path.read_bytes()).hexdigest()


def backbone_inputs(bb: Backbone) -> dict:
    """What the run key and every row record of how the backbone was loaded: dtype, image size, prompt format."""
    from ..backbones.registry import dtype_name
    return {"dtype": dtype_name(bb.dtype), "image_size": bb.image_size, "prompt_format": bb.prompt_format.name}


def check_backbone(spec: RunSpec, bb: Backbone) -> None:
    """ValueError when a given backbone was loaded otherwise than `spec` asks (dtype, image size, format)."""
    have = backbone_inputs(bb)
    for field in ("dtype", "image_size", "prompt_format"):
        wanted = getattr(spec, field)
        if wanted is not None and wanted != have[field]:
            raise ValueError(f"the run asks for {field} {wanted!r} but the backbone given was loaded with "
                             f"{have[field]!r}")


def run_key(spec: RunSpec, bb: Backbone, hparams, data_files: list[Path]) -> dict:
    return {"editor": spec.editor, "hparams": dataclasses.asdict(hparams),
            "hparams_hash": key_hash(dataclasses.asdict(hparams))[:12], "backbone": spec.backbone,
            "backbone_sha256": state_hash(bb.model), **backbone_inputs(bb),
            "task": spec.task, "setting": spec.setting_label,
            "n": spec.n, "k": spec.k, "seed": spec.seed, "accuracy_protocol": spec.accuracy_protocol,
            "locality_protocol": spec.locality_protocol,
            "data": {str(p.relative_to(p.parents[1])): _file_sha(p) for p in data_files}}


def groups_of(spec: RunSpec, bb: Backbone, data_dir: Path) -> tuple[list[list[Case]], list[Path]]:
    """The run's cases, grouped as they are edited (loading every image first: bad input fails before writing)."""
    roots = {"image_root": spec.image_root, "rephrase_image_root": spec.rephrase_image_root, "strict": spec.strict}
    if spec.setting == "cross-task":  # each sequence: CROSS_TASK_K / 2 cases of E-VQA, then as many of E-IC
        tasks = cross_tasks()
        share, step = spec.n // len(tasks), CROSS_TASK_K // len(tasks)
        cases = [load_cases(bb, data_dir, task, share, spec.seed, **roots) for task in tasks]
        groups = [[c for part in cases for c in part[i:i + step]] for i in range(0, share, step)]
        return groups, [data_file(data_dir, task) for task in tasks]
    cases = load_cases(bb, data_dir, spec.task, spec.n, spec.seed, **roots)
    return [cases[i:i + spec.k] for i in range(0, len(cases), spec.k)], [data_file(data_dir, spec.task)]


def plan(spec: RunSpec, bb: Backbone | None = None):
    """(editor, backbone, data folder, case groups, run key): what `run` settles before it looks for stored rows
    (ValueError, DataError, MissingImageError for bad input, before anything is written)."""
    spec.check()
    editor = make_editor(spec.editor, backbone=spec.backbone, **spec.hparams)
    if bb is None:
        from ..backbones.registry import load_backbone
        bb = load_backbone(spec.backbone, path=spec.backbone_path, dtype=spec.dtype, image_size=spec.image_size,
                           prompt_format=spec.prompt_format)
    check_backbone(spec, bb)
    data_dir = Path(spec.data_dir) if spec.data_dir else default_data_dir(spec.backbone)
    groups, files = groups_of(spec, bb, data_dir)
    if editor.spec.prepare is not None:
        files += [data_file(data_dir, f.parent.name, "train") for f in files]
    return editor, bb, data_dir, groups, run_key(spec, bb, editor.hparams, files)


def run(spec: RunSpec, bb: Backbone | None = None, runs_dir: str | Path | None = None, force: bool = False,
        progress: bool = True, reuse_only: bool = False) -> RunResult:
    """Run (or reuse, or resume) the run `spec` names; returns its rows in case order. `reuse_only`: only read a
    completed run (LookupError naming it when there is none), as summaries of other notebooks' runs do."""
    started = time.perf_counter()
    editor, bb, data_dir, groups, key = plan(spec, bb)
    root = Path(runs_dir or REPO_ROOT / "results" / "runs")
    run_id = run_id_for(json.loads(json.dumps(key, sort_keys=True)))
    if reuse_only:  # a summary of other notebooks' runs: read them, never compute (or create) one
        folder = root / run_id
        if not (folder / "manifest.json").exists() or json.loads((folder / "manifest.json").read_text())[
                "status"] != "complete":
            raise LookupError(f"run {folder.name} ({spec.editor}, {spec.task}, {spec.setting_label}, n={spec.n}) "
                              f"has not been computed: execute the notebook that computes it first")
    with exclusive(root / ".locks" / f"{run_id}.lock"):  # another process computing the same run: wait, then reuse
        result = _run_locked(spec, bb, editor, key, groups, data_dir, root, runs_dir, force, progress)
    manifest = result.manifest
    log_run({"run_id": result.run_id, "editor": spec.editor, "backbone": spec.backbone, "task": spec.task,
             "setting": spec.setting_label, "n": spec.n, "computed": not result.reused,
             "seconds": round(time.perf_counter() - started, 1),
             "run_seconds": _run_seconds(manifest)})
    return result


def _run_seconds(manifest: dict) -> float | None:
    """How long the run took when it was computed (created to finished; a resumed run counts its pause too)."""
    if "finished" not in manifest:
        return None
    parse = dt.datetime.fromisoformat
    return (parse(manifest["finished"]) - parse(manifest["created"])).total_seconds()


def _run_locked(spec: RunSpec, bb: Backbone, editor, key: dict, groups: list[list[Case]], data_dir: Path,
                root: Path, runs_dir, force: bool, progress: bool) -> RunResult:
    store = RunStore.open(root, key, force=force)
    done = store.completed_groups()
    if len(done) == len(groups) and store.manifest()["status"] == "complete":
        return RunResult(store.run_id, store.folder, store.rows(), store.manifest(), reused=True)

    if editor.spec.prepare is not None:  # trained on the train split only, never on the cases it is scored on
        tasks = list(cross_tasks()) if spec.task == "cross-task" else [spec.task]
        runs_root = Path(runs_dir) if runs_dir else REPO_ROOT / "results" / "runs"
        train = TrainSplit.load(bb, data_dir, tasks, image_root=spec.image_root,
                                rephrase_image_root=spec.rephrase_image_root, strict=spec.strict)
        editor.prepare(bb, train, cache_dir=runs_root.parent / "prepared")
    # every data file read: its records, and those skipped for an empty answer (counted and named, never silent)
    splits = ["eval", "train"] if editor.spec.prepare is not None else ["eval"]
    tasks = list(cross_tasks()) if spec.task == "cross-task" else [spec.task]
    data_summaries = {f"{task}/{split}": data_summary(data_dir, task, split, strict=spec.strict)
                      for task in tasks for split in splits}
    todo = [g for g in range(len(groups)) if g not in done]
    todo_cases = [c for g in todo for c in groups[g]]
    reference = locality_reference(bb, todo_cases, spec.locality_protocol) if todo_cases else {}
    common = {"run_id": store.run_id, "editor": spec.editor, "hparams_hash": key["hparams_hash"],
              "backbone": spec.backbone, **backbone_inputs(bb), "task": spec.task, "setting": spec.setting_label,
              "seed": spec.seed,
              "accuracy_protocol": spec.accuracy_protocol, "locality_protocol": spec.locality_protocol,
              "git_sha": git_sha(), "versions": versions(),
              "prepare_seconds": editor.prepare_meta["prepare_seconds"]}
    before = state_hash(bb.model)
    bar = tqdm(todo, desc=f"{spec.editor} {spec.setting_label} {spec.task}", disable=not progress, mininterval=2)
    for g in bar:
        cases = groups[g]
        edits, seconds, peaks = [], [], []
        try:
            for position, case in enumerate(cases):
                torch.manual_seed(spec.seed * 1_000_003 + g * 1_009 + position)
                with edit_memory(bb.device) as peak:
                    started = time.perf_counter()
                    edits.append(editor.edit(bb, case.request))
                    seconds.append(time.perf_counter() - started)
                peaks.append(peak.mb)
            started = time.perf_counter()
            scores = evaluate_cases(bb, cases, reference, spec.accuracy_protocol, spec.locality_protocol)
            eval_seconds = (time.perf_counter() - started) / len(cases)
        finally:
            for edit in reversed(edits):
                edit.restore()
        memory = peak_memory_mb(bb)
        rows = [{**common, "case_id": c.case_id, "case_task": c.task, "group": g, "group_size": len(cases),
                 "position": i, **s, "edit_seconds": round(t, 4), "eval_seconds": round(eval_seconds, 4),
                 "edit_peak_mb": m, "peak_memory_mb": memory}
                for i, (c, s, t, m) in enumerate(zip(cases, scores, seconds, peaks))]
        store.append_group(rows)
    if state_hash(bb.model) != before:
        raise RuntimeError(f"{spec.editor} did not restore the backbone bit-exactly")
    store.finish({"n_rows": sum(len(g) for g in groups), "git_sha": common["git_sha"], "data": data_summaries,
                  "versions": common["versions"], "prepare_seconds": editor.prepare_meta["prepare_seconds"],
                  "prepare_cached": editor.prepare_meta["cached"]})
    return RunResult(store.run_id, store.folder, store.rows(), store.manifest(), reused=False)
