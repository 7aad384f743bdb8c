"""Edit cases from a backbone's own errors, in the MMEdit schema (and OKEDIT-style counterfactual cases).

    >>> answer = lambda images, prompts, max_new_tokens: ["red"] * len(prompts)          # any callable
    >>> cases = build_vqa_cases(World(0), answer, "question : {} short answer :", n=5, split="eval",
    ...                         competent_kinds=["color_of_shape"])                   # doctest: +SKIP

MMEdit built its data from BLIP-2's suboptimal answers; we do the same per backbone: candidates are drawn from a
seeded stream (identical for every backbone), the backbone answers them greedily, and its wrong answers on
question kinds where it is competent become edit cases (`pred` = its answer, `alt` = the truth). `answer_fn`
is `(images, prompts, max_new_tokens) -> answers`, so this module needs no model code.
"""
from __future__ import annotations

import dataclasses
import random
from collections import Counter
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from ..metrics.accuracy import normalize_answer
from .questions import (CAPTION_PROMPTS, N_PHRASINGS, QUESTION_KINDS, VQA_KINDS, ask, caption, other_phrasing,
                        rephrase)
from .render import png_bytes, render
from .scenes import Layout
from .variants import lookalike, rephrase_image
from .world import TEXT_PREFIX, World

AnswerFn = Callable[[list, list, int], list]
M_LOC_KINDS = ("background", "count_objects", "landmark_country", "landmark_kind", "landmark_material")
CHUNK = 256


class ImageStore:
    """Writes PNGs under `root/images/<group>/` (atomically, always: a rebuilt case never keeps a stale image);
    returns paths relative to `root`, the image root."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def put(self, group: str, name: str, scene, layout) -> str:
        rel = f"images/{group}/{name}.png"
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(png_bytes(render(scene, layout)))
        tmp.replace(path)
        return rel


def _locality(world: World, rng: random.Random, store: ImageStore, pool_size: int = 1000) -> dict:
    """A text locality question (T-Loc, NQ-style) and an unrelated VQA question with its own image (M-Loc)."""
    kind, subject = rng.choice(world.text_facts())
    q = world.ask_text(kind, subject, rng)
    index = rng.randrange(pool_size)
    m_rng = random.Random(f"mloc-{world.seed}-{index}")
    m_kind = QUESTION_KINDS[m_rng.choice(M_LOC_KINDS)]
    while True:
        scene = world.sample_scene_for(m_kind.name, m_rng)
        mq = ask(m_kind, scene, m_rng)
        if mq is not None:
            break
    path = store.put("mloc", f"{index:05d}", scene, Layout.sample(m_rng))
    return {"loc": TEXT_PREFIX + q.text, "loc_ans": q.answer, "m_loc": path, "m_loc_q": mq.text,
            "m_loc_a": mq.answer}


def kind_accuracy(world: World, answer_fn: AnswerFn, template: str, n_per_kind: int = 200, seed: int = 0):
    """Greedy exact-match accuracy per VQA kind on a calibration stream (decides where the backbone is competent)."""
    rng = random.Random(f"calibration-{world.seed}-{seed}")
    result = {}
    for kind in VQA_KINDS:
        items = []
        while len(items) < n_per_kind:
            scene = world.sample_scene_for(kind, rng)
            q = ask(QUESTION_KINDS[kind], scene, rng)
            if q is not None:
                items.append((render(scene, Layout.sample(rng)), q))
        answers = []
        for i in range(0, len(items), CHUNK):
            chunk = items[i:i + CHUNK]
            answers += answer_fn([img for img, _ in chunk], [template.format(q.text) for _, q in chunk], 12)
        result[kind] = sum(normalize_answer(a) == q.answer for a, (_, q) in zip(answers, items)) / len(items)
    return result


def competent(kind_acc: dict, world: World, margin: float = 0.20) -> list[str]:
    """Kinds whose accuracy is at least `margin` above chance."""
    return [k for k, acc in kind_acc.items()
            if acc >= 1.0 / len(world.answers(k)) + margin]


def _candidates(world: World, rng: random.Random, kinds: list[str]):
    """Endless stream of (scene, layout, question), kinds drawn uniformly."""
    while True:
        kind = QUESTION_KINDS[rng.choice(kinds)]
        scene = world.sample_scene_for(kind.name, rng)
        q = ask(kind, scene, rng)
        if q is not None:
            yield scene, Layout.sample(rng), q


def build_vqa_cases(world: World, answer_fn: AnswerFn, template: str, n: int, split: str, competent_kinds,
                    store: ImageStore, max_candidates: int = 200000) -> list[dict]:
    """E-VQA edit cases: the backbone's wrong answers on competent kinds."""
    rng = random.Random(f"vqa-{split}-{world.seed}")
    stream = _candidates(world, rng, sorted(competent_kinds))
    cases, seen = [], 0
    with tqdm(total=n, desc=f"E-VQA {split} cases", mininterval=5) as bar:
        while len(cases) < n:
            if seen >= max_candidates:
                raise RuntimeError(f"only {len(cases)} errors in {seen} candidates; the backbone is too accurate")
            chunk = [next(stream) for _ in range(CHUNK)]
            seen += CHUNK
            answers = answer_fn([render(s, lay) for s, lay, _ in chunk], [template.format(q.text) for *_, q in chunk],
                                12)
            for (scene, layout, q), pred in zip(chunk, answers):
                if normalize_answer(pred) == q.answer or len(cases) >= n:
                    continue
                case_id = f"vqa-{split}-{len(cases):05d}"
                new_scene, new_layout = rephrase_image(scene, layout, QUESTION_KINDS[q.kind].keeps, rng)
                record = {"src": q.text, "pred": normalize_answer(pred),
                          "rephrase": rephrase(q, scene, other_phrasing(rng, q.phrasing)).text, "alt": q.answer,
                          "image": store.put("vqa", case_id, scene, layout),
                          "image_rephrase": store.put("vqa", case_id + "-r", new_scene, new_layout)}
                record.update(_locality(world, rng, store))
                record.update({"case_id": case_id, "kind": q.kind})
                cases.append(record)
                bar.update(1)
    return cases


def build_caption_cases(world: World, answer_fn: AnswerFn, n: int, split: str, store: ImageStore,
                        max_candidates: int = 100000) -> list[dict]:
    """E-IC edit cases: captions the backbone gets wrong (`src` a caption prompt, `alt` the true caption)."""
    rng = random.Random(f"caption-{split}-{world.seed}")
    cases, seen = [], 0
    with tqdm(total=n, desc=f"E-IC {split} cases", mininterval=5) as bar:
        while len(cases) < n:
            if seen >= max_candidates:
                raise RuntimeError(f"only {len(cases)} caption errors in {seen} candidates")
            chunk = [(world.sample_scene(rng), Layout.sample(rng), rng.choice(CAPTION_PROMPTS)) for _ in range(CHUNK)]
            seen += CHUNK
            answers = answer_fn([render(s, lay) for s, lay, _ in chunk], [p for *_, p in chunk], 32)
            for (scene, layout, prompt), pred in zip(chunk, answers):
                target = caption(scene)
                if normalize_answer(pred) == target or len(cases) >= n:
                    continue
                case_id = f"caption-{split}-{len(cases):05d}"
                new_scene, new_layout = rephrase_image(scene, layout, frozenset({"background", "positions"}), rng)
                record = {"src": prompt, "pred": normalize_answer(pred),
                          "rephrase": rng.choice([p for p in CAPTION_PROMPTS if p != prompt]), "alt": target,
                          "image": store.put("caption", case_id, scene, layout),
                          "image_rephrase": store.put("caption", case_id + "-r", new_scene, new_layout)}
                record.update(_locality(world, rng, store))
                record.update({"case_id": case_id, "kind": "entity" if hasattr(scene, "entity") else "shapes"})
                cases.append(record)
                bar.update(1)
    return cases


def build_okedit_cases(world: World, answer_fn: AnswerFn, template: str, n: int, split: str, competent_kinds,
                       store: ImageStore, n_rephrases: int = 5) -> list[dict]:
    """OKEDIT-style cases: facts the backbone knows, edited to a counterfactual; look-alike hard locality."""
    rng = random.Random(f"okedit-{split}-{world.seed}")
    stream = _candidates(world, rng, sorted(competent_kinds))
    cases = []
    with tqdm(total=n, desc=f"OKEDIT {split} cases", mininterval=5) as bar:
        while len(cases) < n:
            chunk = [next(stream) for _ in range(CHUNK)]
            answers = answer_fn([render(s, lay) for s, lay, _ in chunk], [template.format(q.text) for *_, q in chunk],
                                12)
            for (scene, layout, q), pred in zip(chunk, answers):
                if normalize_answer(pred) != q.answer or len(cases) >= n:
                    continue
                twin = lookalike(scene, q, world.entity_by_name, rng)
                if twin is None:
                    continue
                twin_scene, twin_answer = twin
                case_id = f"okedit-{split}-{len(cases):05d}"
                phrasings = [p for p in range(N_PHRASINGS) if p != q.phrasing]
                rng.shuffle(phrasings)
                train_phrasing, test_phrasings = phrasings[0], phrasings[1:1 + n_rephrases]
                keeps = QUESTION_KINDS[q.kind].keeps
                image_rephrases = []
                for j in range(n_rephrases):
                    new_scene, new_layout = rephrase_image(scene, layout, keeps, rng)
                    image_rephrases.append(store.put("okedit", f"{case_id}-r{j}", new_scene, new_layout))
                rephrases = [rephrase(q, scene, p).text for p in test_phrasings]
                record = {"src": q.text, "pred": q.answer, "rephrase": rephrases[0],
                          "alt": world.counterfactual(q.kind, q.answer, rng),
                          "image": store.put("okedit", case_id, scene, layout), "image_rephrase": image_rephrases[0]}
                record.update(_locality(world, rng, store))
                record.update({
                    "case_id": case_id, "category": q.kind, "ground_truth": q.answer,
                    "rephrase_list": rephrases, "image_rephrase_list": image_rephrases,
                    "train_rephrase": rephrase(q, scene, train_phrasing).text,
                    "hard_loc_image": store.put("okedit", case_id + "-hard", twin_scene, layout),
                    "hard_loc_q": q.text, "hard_loc_a": twin_answer})
                cases.append(record)
                bar.update(1)
    return cases


@dataclasses.dataclass(frozen=True)
class CaseContext:
    """What a benchmark's `world_cases(ctx, n, split)` draws its edit cases with: the world, the backbone's greedy
    answers, its VQA template, the question kinds it is competent on, and the store its images go to."""
    world: World
    answer_fn: AnswerFn
    template: str
    competent_kinds: list
    store: ImageStore


def vqa_world_cases(ctx: CaseContext, n: int, split: str) -> list[dict]:
    """E-VQA's cases of the embedded world (`build_vqa_cases`)."""
    return build_vqa_cases(ctx.world, ctx.answer_fn, ctx.template, n, split, ctx.competent_kinds, ctx.store)


def caption_world_cases(ctx: CaseContext, n: int, split: str) -> list[dict]:
    """E-IC's cases of the embedded world (`build_caption_cases`)."""
    return build_caption_cases(ctx.world, ctx.answer_fn, n, split, ctx.store)


def okedit_world_cases(ctx: CaseContext, n: int, split: str) -> list[dict]:
    """OKEDIT's cases of the embedded world (`build_okedit_cases`)."""
    return build_okedit_cases(ctx.world, ctx.answer_fn, ctx.template, n, split, ctx.competent_kinds, ctx.store)


def category_counts(cases: list[dict], key: str = "kind") -> dict:
    return dict(sorted(Counter(c[key] for c in cases).items()))
