"""Write a world to disk: its facts, the backbones' training corpus, and (given a backbone) its edit cases.

    >>> write_world("results/world/tiny-blip2-opt", seed=0)                                   # doctest: +SKIP
    >>> write_cases("results/world/tiny-blip2-opt", World(0), answer_fn, template, sizes)     # doctest: +SKIP

Layout of the output folder (it is also the image root of every record):
    world.json, text_facts.json, corpus/examples.jsonl, corpus/scenes.jsonl, corpus/images/*.png
    vqa/{train,eval}.json, caption/{train,eval}.json, okedit/{train,eval}.json, cases.json (per-kind accuracy,
    competent kinds, counts), images/{vqa,caption,okedit,mloc}/*.png
Every file is written to a temporary name and renamed, so an interrupted run leaves no half-written file.
"""
from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

from .cases import CaseContext, ImageStore, category_counts, competent, kind_accuracy
from .corpus import CORPUS_EXAMPLES, CORPUS_IMAGES, make_corpus, scene_to_json, vocabulary
from .facts import COUNTRIES
from .questions import QUESTION_KINDS
from .render import png_bytes, render
from .world import World


SPLITS = ("eval", "train")


def case_sizes(smoke: bool = False, overrides: dict | None = None) -> dict:
    """benchmark -> split -> how many cases the world gets: each world benchmark's `world_sizes` (`smoke_sizes`
    when smoke), with `overrides` ({(benchmark, split): n}) on top.

        >>> case_sizes(smoke=True)["caption"]
        {'eval': 10, 'train': 10}
    """
    from ..data.benchmarks import BENCHMARKS, world_benchmarks
    sizes = {name: dict(BENCHMARKS[name].smoke_sizes if smoke else BENCHMARKS[name].world_sizes)
             for name in world_benchmarks()}
    for (name, split), n in (overrides or {}).items():
        if name not in sizes or split not in SPLITS:
            raise ValueError(f"no world cases for {name!r} split {split!r}; world benchmarks: {', '.join(sizes)}")
        sizes[name][split] = n
    return sizes


def write_json(path: Path, data, indent: int | None = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def world_description(world: World) -> dict:
    return {
        "seed": world.seed,
        "entities": [{**e.facts, "lookalike": e.lookalike, "pattern": ["".join(map(str, r)) for r in e.pattern],
                      "color": list(e.fg)} for e in world.entities],
        "countries": [dataclasses.asdict(c) for c in COUNTRIES.values()],
        "question_kinds": {k.name: {"domain": k.domain, "templates": list(k.templates),
                                    "answers": list(world.answers(k.name)), "keeps": sorted(k.keeps)}
                           for k in QUESTION_KINDS.values()},
        "vocabulary": vocabulary(world),
    }


def write_world(out: str | Path, seed: int = 0, n_images: int = CORPUS_IMAGES,
                n_examples: int = CORPUS_EXAMPLES) -> World:
    """world.json, the text fact table and the training corpus (exactly what train-backbone trains on)."""
    out = Path(out)
    world = World(seed)
    write_json(out / "world.json", world_description(world))
    facts = [{"kind": kind, "question": world.ask_text(kind, subject, random.Random(0), phrasing=0).text,
              "answer": QUESTION_KINDS[kind].answer(subject, {})} for kind, subject in world.text_facts()]
    write_json(out / "text_facts.json", facts)
    scenes, examples = make_corpus(world, n_images, n_examples, seed=seed)
    write_jsonl(out / "corpus" / "scenes.jsonl", ({"image": f"corpus/images/{i:05d}.png", **scene_to_json(s)}
                                                  for i, (s, _) in enumerate(scenes)))
    write_jsonl(out / "corpus" / "examples.jsonl", examples)
    image_dir = out / "corpus" / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    for i, (scene, layout) in enumerate(scenes):
        path = image_dir / f"{i:05d}.png"
        if not path.exists():
            path.write_bytes(png_bytes(render(scene, layout)))
    return world


def write_cases(out: str | Path, world: World, answer_fn, template: str, sizes: dict,
                backbone_name: str, provenance: dict | None = None) -> dict:
    """Edit cases for one backbone (its errors / its known facts), `sizes[benchmark][split]` of each world
    benchmark (`case_sizes`), and a summary of how they were chosen."""
    from ..data.benchmarks import BENCHMARKS
    out = Path(out)
    accuracy = kind_accuracy(world, answer_fn, template)
    kinds = competent(accuracy, world)
    if not kinds:
        raise RuntimeError(f"{backbone_name} is not competent on any question kind: {accuracy}")
    ctx = CaseContext(world, answer_fn, template, kinds, ImageStore(out))
    summary = {"backbone": backbone_name, "world_seed": world.seed, "kind_accuracy": accuracy,
               "competent_kinds": kinds, "sizes": {f"{name}_{split}": n for name, by_split in sizes.items()
                                                   for split, n in by_split.items()},
               "counts": {}, **(provenance or {})}
    for split in SPLITS:
        summary["counts"][split] = {}
        for name, by_split in sizes.items():
            benchmark = BENCHMARKS[name]
            cases = benchmark.world_cases(ctx, by_split[split], split)
            write_json(out / name / f"{split}.json", cases)
            summary["counts"][split][name] = category_counts(cases, benchmark.category_key)
    write_json(out / "cases.json", summary)
    return summary
