"""Command line: `python -m mmedit_lib {world,train-backbone,report-backbone,validate,run,notebooks,book} ...`.

    $ python -m mmedit_lib world --out results/world/tiny-blip2-opt --seed 0 --backbone tiny-blip2-opt
    $ python -m mmedit_lib train-backbone tiny-minigpt4 --seed 0
    $ python -m mmedit_lib validate tests/fixtures/mmedit_vqa_eval_sample.json --image-root /data/mmedit
    $ python -m mmedit_lib run --editor ft-last --backbone tiny-blip2-opt --task vqa --setting one-step --n 200
    $ python -m mmedit_lib notebooks --only mmedit_table2_main --smoke
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .overrides import parse_pairs


def _threads(n: int | None) -> None:
    import torch
    n = n or int(os.environ.get("MMEDIT_THREADS", "1"))
    torch.set_num_threads(n)  # deliberate: a busy core makes multithreaded torch ~100x slower here


def cmd_world(args) -> int:
    from .world.writer import case_sizes, write_cases, write_world
    out = Path(args.out)
    started = time.time()
    world = write_world(out, seed=args.seed)
    print(f"world seed {args.seed}: {len(world.entities)} entities, {len(world.text_facts())} text facts, "
          f"corpus written to {out / 'corpus'} ({time.time() - started:.1f}s)")
    if args.backbone:
        from .backbones.registry import load_backbone
        from .backbones.report import answer_fn
        bb = load_backbone(args.backbone, path=args.backbone_path)
        overrides = {key: getattr(args, dest) for key, dest in args.case_fields.items()
                     if getattr(args, dest) is not None}
        sizes = case_sizes(smoke=args.smoke, overrides=overrides)
        from .backbones.backbone import state_hash
        summary = write_cases(out, world, answer_fn(bb), bb.vqa_template, sizes, bb.name,
                              provenance={"backbone_state_sha256": state_hash(bb.model)})
        print(f"edit cases for {bb.name} ({time.time() - started:.1f}s); competent kinds: "
              f"{', '.join(summary['competent_kinds'])}")
        for split, counts in summary["counts"].items():
            print(f"  {split}: " + ", ".join(f"{task} {sum(c.values())}" for task, c in counts.items()))
    return 0


def cmd_train_backbone(args) -> int:
    from .backbones.registry import get_spec, save_tiny_backbone
    from .backbones.train import TrainConfig, train_tiny_backbone
    from .paths import BACKBONES_DIR
    spec = get_spec(args.name)
    if not spec.tiny:
        print(f"error: {args.name} is a full-size checkpoint; only tiny backbones are trained here", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else BACKBONES_DIR / args.name
    try:
        overrides = parse_config_overrides(args.set, TrainConfig())
        cfg = TrainConfig.for_family(spec.family, spec.architecture,
                                     **{**overrides, "seed": args.seed, "world_seed": args.world_seed})
        if args.max_stage2_steps is not None:
            cfg.max_stage2_steps = args.max_stage2_steps
        cfg.check(spec.family)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    model, tokenizer, log = train_tiny_backbone(spec.family, cfg, spec.architecture)
    save_tiny_backbone(out, model, tokenizer)
    log_path = out / "training_log.json"
    log_path.write_text(json.dumps(log) + "\n")
    print(f"trained {args.name} in {log['total_seconds']}s -> {out}")
    if not args.no_report:
        write_report(args.name, out)
    return 0


def parse_config_overrides(pairs: list[str], defaults) -> dict:
    """`["opt_position_scale=0", "stage2_epochs=1.2"]` -> typed values (`overrides.typed_pairs`); unknown keys and
    bad values raise ValueError."""
    from .overrides import defaults_of, typed_pairs
    for pair in pairs:
        key = pair.partition("=")[0]
        if key in ("seed", "world_seed"):
            raise ValueError(f"--set {pair!r}: use --{key.replace('_', '-')}")
    return typed_pairs("train-backbone", defaults_of(defaults), pairs, what="setting")


def write_report(name: str, folder: Path) -> dict:
    """Evaluate a trained tiny backbone on held-out world data; write folder/report.json and print it."""
    import torch
    from .backbones.registry import load_backbone
    from .backbones.report import REPORT_N_PER_KIND, REPORT_SEED, evaluate_backbone, format_report
    from .world.world import World
    log = json.loads((folder / "training_log.json").read_text())
    world_seed = log["config"]["world_seed"]
    started = time.time()
    report = evaluate_backbone(load_backbone(name, path=folder), World(world_seed))
    report.update({"backbone": name, "world_seed": world_seed, "seed": log["config"]["seed"],
                   "training_seconds": log["total_seconds"], "training_threads": log["threads"],
                   "threads": torch.get_num_threads(), "n_per_kind": REPORT_N_PER_KIND, "report_seed": REPORT_SEED,
                   "report_seconds": round(time.time() - started, 1)})
    (folder / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(format_report(report))
    return report


def cmd_report_backbone(args) -> int:
    from .backbones.registry import default_path
    write_report(args.name, Path(args.path) if args.path else default_path(args.name))
    return 0


def cmd_validate(args) -> int:
    from .data.validate import validate_file
    report = validate_file(args.file, image_root=args.image_root, rephrase_image_root=args.rephrase_image_root,
                           strict=args.strict, task=args.task)
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


def cmd_run(args) -> int:
    from .data.loaders import DataError, MissingImageError
    from .metrics.aggregate import format_summary, summarize
    from .runners.run import RunSpec, run
    try:
        hparams = parse_pairs(args.set)
        k = args.k if args.k is not None else (10 if args.setting == "cross-task" else 1)
        task = "cross-task" if args.setting == "cross-task" else args.task
        spec = RunSpec(editor=args.editor, backbone=args.backbone, task=task, setting=args.setting, n=args.n, k=k,
                       seed=args.seed, accuracy_protocol=args.protocol, locality_protocol=args.locality_protocol,
                       hparams=hparams, data_dir=args.data_dir, backbone_path=args.backbone_path, dtype=args.dtype,
                       image_size=args.image_size, prompt_format=args.prompt_format, image_root=args.image_root,
                       rephrase_image_root=args.rephrase_image_root, strict=args.strict)
        spec.check()
        from .editors.registry import make_hparams
        make_hparams(spec.editor, spec.backbone, **hparams)
        result = run(spec, runs_dir=args.runs_dir, force=args.force)
    except (ValueError, DataError, MissingImageError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"run {result.run_id} ({'reused' if result.reused else 'computed'}; {len(result.rows)} rows in "
          f"{result.folder})")
    key = result.manifest["key"]
    print(f"{spec.editor} on {spec.backbone} ({key['dtype']}, {key['image_size']} px, {key['prompt_format']} "
          f"prompts), {spec.task}, {spec.setting_label}, n={spec.n}, seed {spec.seed}; "
          f"protocols {spec.accuracy_protocol} / {spec.locality_protocol}; mean and 95% bootstrap CI, %")
    for name, data in result.manifest.get("data", {}).items():
        if data["n_skipped"]:
            print(f"{name}: {data['n_skipped']} of {data['n_rows']} records skipped for an empty answer, as EasyEdit "
                  f"skips them (--strict refuses instead); see the manifest")
    print(format_summary(summarize(result.rows)))
    return 0


def cmd_notebooks(args) -> int:
    from .notebooks import NotebookError, run_notebooks
    try:
        run_notebooks(only=args.only, smoke=args.smoke, parameters=parse_pairs(args.param, "--param"), jobs=args.jobs)
    except (NotebookError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def cmd_book(args) -> int:
    from .notebooks import NotebookError, build_book
    try:
        html = build_book(smoke=args.smoke)
    except NotebookError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"book built: {html / 'index.html'}")
    return 0


def cmd_convert_minigpt4(args) -> int:
    from .backbones.convert_minigpt4 import ConversionError, convert_folder
    try:
        report = convert_folder([Path(p) for p in args.checkpoint], Path(args.vicuna), Path(args.out),
                                args.vision_heads, args.qformer_heads, args.vision_layers)
    except (ConversionError, FileNotFoundError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    reasons: dict = {}
    for key, reason in report["dropped"].items():
        reasons.setdefault(reason, []).append(key)
    print(f"converted into {args.out} (vocabulary {report['vocab']} + <image>, pad = eos); dropped "
          f"{len(report['dropped'])} tensors MiniGPT-4 does not run:")
    for reason, keys in reasons.items():
        print(f"  {len(keys):4d} {reason}: {keys[0]}{' ...' if len(keys) > 1 else ''}")
    return 0


def cmd_dry_run(args) -> int:
    """`dry-run --backbone blip2-opt-2.7b --random-weights --dtype bfloat16`: every editor on the full-size
    architecture with random weights, measured (runners/dry_run.py); the table goes to --out as it grows."""
    from .runners.dry_run import ORDER, DryRunSpec, format_table, run_dry_run
    if not args.random_weights:
        print("error: dry-run builds the architecture with random weights and needs --random-weights (it loads no "
              "checkpoint)", file=sys.stderr)
        return 2
    spec = DryRunSpec(backbone=args.backbone, dtype=args.dtype, editors=tuple(args.editors or ORDER),
                      steps=args.steps, prepare_cases=args.prepare_cases, seed=args.seed,
                      image_size=args.image_size, prompt_format=args.prompt_format)
    try:
        spec.check()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out or f"results/dry_run/{spec.backbone}-{spec.dtype}.json")
    rows = run_dry_run(spec, out)
    print(format_table(rows))
    print(f"written: {out} and {out.with_suffix('.csv')}")
    return 0 if all(r["status"] == "ok" or r["status"].startswith("does not fit") for r in rows) else 1


def cmd_recompute(args) -> int:
    """`recompute OLD/results/runs --groups 20`: the first groups of stored runs recomputed with today's code and
    their rows compared field by field (runners/recompute.py); exit 1 when any row differs."""
    from .runners.recompute import recompute
    folders = sorted(p.parent for root in args.runs for p in Path(root).glob("**/manifest.json"))
    folders = [f for f in folders if not args.match or any(m in f.name for m in args.match)]
    if not folders:
        print("error: no stored run (a folder with manifest.json) under " + " ".join(args.runs), file=sys.stderr)
        return 2
    reports = []
    for folder in folders:
        try:
            report = recompute(folder, args.work_dir, groups=args.groups, prepared_dir=args.prepared_dir)
        except ValueError as error:
            report = {"run": folder.name, "rows": 0, "identical": False, "differ": [str(error)]}
        reports.append(report)
        added = f" (hparams added since, at their defaults: {report['added']})" if report.get("added") else ""
        print(f"{report['run']}: {report['rows']} rows, "
              f"{'identical' if report['identical'] else 'DIFFER: ' + ', '.join(report['differ'])}{added}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(reports, indent=1) + "\n")
    same = sum(r["identical"] for r in reports)
    print(f"{same} of {len(reports)} runs identical ({sum(r['rows'] for r in reports)} rows compared)")
    return 0 if same == len(reports) else 1


def build_parser() -> argparse.ArgumentParser:
    from .data.benchmarks import BENCHMARKS, world_benchmarks
    parser = argparse.ArgumentParser(prog="python -m mmedit_lib", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default $MMEDIT_THREADS or 1)")
    sub = parser.add_subparsers(dest="command", required=True)

    w = sub.add_parser("world", help="generate the embedded world (and a backbone's edit cases)")
    w.add_argument("--out", required=True)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--backbone", help="also build edit cases from this backbone's errors")
    w.add_argument("--backbone-path", help="local folder of the backbone (default: the registry's)")
    w.add_argument("--smoke", action="store_true", help="a handful of cases per split (seconds)")
    counts = {}
    for name in world_benchmarks():  # --n-vqa-eval, --n-okedit-train, ...: one per world benchmark and split
        for split, default in BENCHMARKS[name].world_sizes.items():
            dest = f"n_{name}_{split}".replace("-", "_")
            w.add_argument(f"--n-{name}-{split}", type=int, default=None, dest=dest,
                           help=f"{BENCHMARKS[name].label} {split} cases (default {default})")
            counts[(name, split)] = dest
    w.set_defaults(func=cmd_world, case_fields=counts)

    t = sub.add_parser("train-backbone", help="train a tiny backbone on the world and write its report")
    t.add_argument("name")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--world-seed", type=int, default=0)
    t.add_argument("--out", help="output folder (default results/backbones/NAME)")
    t.add_argument("--max-stage2-steps", type=int, default=None)
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a TrainConfig field, e.g. --set opt_position_scale=0 (repeatable)")
    t.add_argument("--no-report", action="store_true")
    t.set_defaults(func=cmd_train_backbone)

    r = sub.add_parser("report-backbone", help="(re)write a tiny backbone's report.json from held-out world data")
    r.add_argument("name")
    r.add_argument("--path", help="the backbone's folder (default results/backbones/NAME)")
    r.set_defaults(func=cmd_report_backbone)

    v = sub.add_parser("validate", help="check a MMEdit/OKEDIT JSON file and its images")
    v.add_argument("file")
    v.add_argument("--image-root", help="folder the image paths are relative to (default: found from the file)")
    v.add_argument("--rephrase-image-root", help="folder image_rephrase paths (e.g. val2014_image_rephrase/...) are "
                                                 "relative to (default: the image root)")
    v.add_argument("--strict", action="store_true",
                   help="fail on records with an empty answer instead of skipping them (as EasyEdit does)")
    v.add_argument("--task", choices=list(BENCHMARKS), help="the benchmark whose records it holds (default: the "
                                                             "schema its first record's keys show)")
    v.set_defaults(func=cmd_validate)

    e = sub.add_parser("run", help="run an editor over edit cases; print metrics with 95%% CIs; store the rows")
    e.add_argument("--editor", required=True)
    e.add_argument("--backbone", default="tiny-blip2-opt")
    e.add_argument("--backbone-path", help="local folder of the backbone (default: the registry's)")
    e.add_argument("--task", default="vqa", choices=list(BENCHMARKS),
                   help="a benchmark (data.benchmarks; okedit: <data-dir>/okedit/eval.json or okedit_eval.json)")
    e.add_argument("--setting", default="one-step", choices=["one-step", "seq", "cross-task"])
    e.add_argument("--k", type=int, default=None, help="edits per sequence (seq; cross-task uses 10)")
    e.add_argument("--n", type=int, default=200, help="edit cases")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--protocol", default="tf-token", help="accuracy protocol: tf-token | tf-exact | gen-exact")
    e.add_argument("--locality-protocol", default="answer-argmax", help="answer-argmax | topk-all")
    e.add_argument("--data-dir", help="folder with <task>/eval.json, or the official MMEdit editing-data/ folder "
                   "(vqa/vqa_eval.json, caption/caption_eval_edit.json); default results/world/BACKBONE")
    e.add_argument("--runs-dir", help="results store (default results/runs)")
    e.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="the backbone's dtype (default $MMEDIT_DTYPE, else float32 on CPU, bfloat16 on a GPU); "
                        "editors train in float32 whatever it is")
    e.add_argument("--image-size", type=int, help="image pixels (default: 364 for real backbones, as EasyEdit)")
    e.add_argument("--prompt-format", choices=["blip2", "minigpt4-chat"],
                   help="how the image is wrapped in the prompt (default: the backbone's)")
    e.add_argument("--image-root", help="folder of the images and m_loc images (default $MMEDIT_IMAGE_ROOT, else "
                   "found from the data file)")
    e.add_argument("--rephrase-image-root", help="folder of the rephrased images (default $MMEDIT_REPHRASE_IMAGE_ROOT, "
                   "else the image root)")
    e.add_argument("--strict", action="store_true",
                   help="refuse a data file with empty answers (default: skip those records, as EasyEdit does)")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="editor hparam override")
    e.add_argument("--force", action="store_true", help="recompute even if this run exists")
    e.set_defaults(func=cmd_run)

    nb = sub.add_parser("notebooks", help="execute the notebooks with papermill into results/executed/")
    nb.add_argument("--only", action="append", help="notebook name (repeatable; default all)")
    nb.add_argument("--smoke", action="store_true", help="a handful of cases each (seconds)")
    nb.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="papermill parameter")
    nb.add_argument("--jobs", type=int, default=1, help="notebooks executed at once, one process each (default 1)")
    nb.set_defaults(func=cmd_notebooks)

    bk = sub.add_parser("book", help="build the Jupyter Book (HTML, offline) from the executed notebooks")
    bk.add_argument("--smoke", action="store_true", help="from the smoke notebooks")
    bk.set_defaults(func=cmd_book)

    cv = sub.add_parser("convert-minigpt4", help="convert MiniGPT-4 (EVA ViT-g, Q-Former, llama_proj, Vicuna) into "
                                                 "a Blip2ForConditionalGeneration folder that loads as minigpt4-7b")
    cv.add_argument("--checkpoint", action="append", required=True,
                    help="a .pth/.safetensors with MiniGPT-4/LAVIS names (repeat: EVA ViT-g, BLIP-2, MiniGPT-4; later "
                         "files win)")
    cv.add_argument("--vicuna", required=True, help="the Vicuna-7B folder in the Hugging Face LLaMA layout")
    cv.add_argument("--out", required=True, help="output folder")
    cv.add_argument("--vision-heads", type=int, default=16, help="EVA ViT-g attention heads (16)")
    cv.add_argument("--qformer-heads", type=int, default=12, help="Q-Former attention heads (12)")
    cv.add_argument("--vision-layers", type=int, default=39, help="EVA blocks kept (BLIP-2 keeps 39 of 40)")
    cv.set_defaults(func=cmd_convert_minigpt4)

    dr = sub.add_parser("dry-run", help="every editor on a full-size architecture with random weights: prepare, one "
                                        "edit, finite weights, exact restore, seconds and peak memory")
    dr.add_argument("--backbone", required=True, help="blip2-opt-2.7b | minigpt4-7b (backbones/published/*.json)")
    dr.add_argument("--random-weights", action="store_true", help="required: build with random weights (no checkpoint)")
    dr.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    dr.add_argument("--editors", nargs="+", help="editors, in this order (default: all, most used first)")
    dr.add_argument("--steps", type=int, help="optimisation steps per edit for FT, GRACE, BalancEdit, T-Patcher, "
                                               "UniKE (default: their hparams)")
    dr.add_argument("--prepare-cases", type=int, default=3, help="train cases given to prepare (default 3)")
    dr.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    dr.add_argument("--image-size", type=int, help="pixels (default: the backbone's, 364 as EasyEdit runs them)")
    dr.add_argument("--prompt-format", help="blip2 | minigpt4-chat (default: the backbone's)")
    dr.add_argument("--out", help="JSON table (default results/dry_run/BACKBONE-DTYPE.json; a .csv beside it)")
    dr.set_defaults(func=cmd_dry_run)

    rc = sub.add_parser("recompute", help="recompute the first groups of stored runs with today's code and compare "
                                          "their rows (a refactor changes no result)")
    rc.add_argument("runs", nargs="+", help="run folders, or folders holding them (e.g. OLD/results/runs)")
    rc.add_argument("--groups", type=int, default=20, help="groups (cases, in one-step runs) recomputed per run")
    rc.add_argument("--match", nargs="+", help="only runs whose id contains one of these")
    rc.add_argument("--work-dir", default="/tmp/mmedit-recompute", help="where the recomputed runs are written")
    rc.add_argument("--prepared-dir", help="prepared artefacts to reuse (default: prepare afresh)")
    rc.add_argument("--out", help="write the comparison as JSON here")
    rc.set_defaults(func=cmd_recompute)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _threads(args.threads)
    return args.func(args)
