"""Training report of a backbone on held-out world data: is it competent, consistent and context-following?

    >>> from mmedit_lib.backbones.report import evaluate_backbone
    >>> report = evaluate_backbone(load_backbone("tiny-blip2-opt"), World(0))      # doctest: +SKIP
    >>> report["vqa_token_accuracy"]                                                # doctest: +SKIP
    0.71

Everything is measured on scenes and renders never seen in training (their own seeded stream).
"""
from __future__ import annotations

import random

import numpy as np
import torch
from tqdm.auto import tqdm

from .prompt_format import fact_prompt
from ..metrics.accuracy import normalize_answer, token_accuracy
from ..world.corpus import demonstration, vqa_question
from ..world.cases import M_LOC_KINDS
from ..world.questions import (CAPTION_PROMPTS, QUESTION_KINDS, VQA_KINDS, ask, caption, other_phrasing,
                               rephrase)
from ..world.render import render
from ..world.scenes import Layout
from ..world.variants import rephrase_image
from ..world.world import TEXT_PREFIX, World
from .backbone import Backbone, Query

IN_CONTEXT_DEMOS = (0, 8, 40)
REPORT_N_PER_KIND = 150
REPORT_SEED = 12345


def _batched(fn, items, size):
    out = []
    for i in range(0, len(items), size):
        out.extend(fn(items[i:i + size]))
    return out


def token_accuracies(bb: Backbone, queries: list[Query], batch_size: int = 64) -> list[float]:
    def run(chunk):
        return [token_accuracy(lg, t) for lg, t in bb.target_logits(chunk)]
    with torch.no_grad():
        return _batched(run, queries, batch_size)


def greedy_answers(bb: Backbone, queries: list[Query], batch_size: int = 64, max_new_tokens: int = 12):
    return _batched(lambda chunk: bb.greedy(chunk, max_new_tokens), queries, batch_size)


def _held_out_vqa(world: World, kind: str, n: int, rng: random.Random):
    """n (scene, layout, question) triples of one kind on fresh scenes."""
    out = []
    while len(out) < n:
        scene = world.sample_scene_for(kind, rng)
        q = ask(QUESTION_KINDS[kind], scene, rng)
        if q is not None:
            out.append((scene, Layout.sample(rng), q))
    return out


def _in_context_prompt(world: World, rng: random.Random, n_demos: int, fact, new_answer: str, query_text: str):
    demos = [demonstration(world, rng) for _ in range(n_demos)]
    context = " ".join(f"{text} {answer}" for text, answer in demos)
    return (context + " " if context else "") + fact_prompt(fact.text, new_answer, query_text)


def evaluate_backbone(bb: Backbone, world: World, n_per_kind: int = REPORT_N_PER_KIND, seed: int = REPORT_SEED,
                      batch_size: int = 64) -> dict:
    rng = random.Random(f"report-{world.seed}-{seed}")
    report: dict = {"per_kind": {}}
    all_token, consistent_image, consistent_text = [], [], []
    m_loc_correct = []
    for kind in tqdm(VQA_KINDS, desc=f"report {bb.name}", mininterval=5):
        items = _held_out_vqa(world, kind, n_per_kind, rng)
        images = [render(s, lay) for s, lay, _ in items]
        queries = [Query(img, bb.vqa_prompt(q.text), q.answer) for img, (_, _, q) in zip(images, items)]
        tok = token_accuracies(bb, queries, batch_size)
        answers = greedy_answers(bb, queries, batch_size)
        exact = [normalize_answer(a) == normalize_answer(q.answer) for a, (_, _, q) in zip(answers, items)]
        # consistency on the correctly answered ones: another rendering, another phrasing
        correct = [i for i, ok in enumerate(exact) if ok]
        rerendered, rephrased = [], []
        for i in correct:
            scene, layout, q = items[i]
            new_scene, new_layout = rephrase_image(scene, layout, QUESTION_KINDS[kind].keeps, rng)
            rerendered.append(Query(render(new_scene, new_layout), bb.vqa_prompt(q.text)))
            other = other_phrasing(rng, q.phrasing)
            rephrased.append(Query(images[i], bb.vqa_prompt(rephrase(q, scene, other).text)))
        img_same = [normalize_answer(a) == normalize_answer(items[i][2].answer)
                    for a, i in zip(greedy_answers(bb, rerendered, batch_size), correct)]
        txt_same = [normalize_answer(a) == normalize_answer(items[i][2].answer)
                    for a, i in zip(greedy_answers(bb, rephrased, batch_size), correct)]
        kind_info = QUESTION_KINDS[kind]
        n_answers = len(kind_info.answers) or len(world.entities)
        report["per_kind"][kind] = {
            "token_accuracy": float(np.mean(tok)), "exact": float(np.mean(exact)), "chance": 1.0 / n_answers,
            "same_on_rerender": float(np.mean(img_same)) if img_same else None,
            "same_on_rephrase": float(np.mean(txt_same)) if txt_same else None, "n": len(items)}
        all_token += tok
        consistent_image += img_same
        consistent_text += txt_same
        if kind in M_LOC_KINDS:
            m_loc_correct += exact
    report["vqa_token_accuracy"] = float(np.mean(all_token))
    report["vqa_exact"] = float(np.mean([v["exact"] for v in report["per_kind"].values()]))
    report["same_on_rerender"] = float(np.mean(consistent_image))
    report["same_on_rephrase"] = float(np.mean(consistent_text))
    report["m_loc_pool_accuracy"] = float(np.mean(m_loc_correct))
    report["m_loc_kinds"] = list(M_LOC_KINDS)

    scenes = [(world.sample_scene(rng), Layout.sample(rng)) for _ in range(3 * n_per_kind)]
    caps = [Query(render(s, lay), rng.choice(CAPTION_PROMPTS), caption(s)) for s, lay in scenes]
    report["caption_token_accuracy"] = float(np.mean(token_accuracies(bb, caps, batch_size)))
    cap_answers = greedy_answers(bb, caps, batch_size, max_new_tokens=32)
    report["caption_exact"] = float(np.mean([normalize_answer(a) == normalize_answer(q.target)
                                             for a, q in zip(cap_answers, caps)]))

    facts = world.text_facts()
    text_qs = [world.ask_text(kind, subject, rng) for kind, subject in facts]
    text_queries = [Query(None, TEXT_PREFIX + q.text, q.answer) for q in text_qs]
    text_answers = greedy_answers(bb, text_queries, batch_size)
    report["text_qa_exact"] = float(np.mean([normalize_answer(a) == normalize_answer(q.answer)
                                             for a, q in zip(text_answers, text_qs)]))
    report["text_qa_n"] = len(text_qs)

    report["in_context_following"] = {}
    for n_demos in IN_CONTEXT_DEMOS:
        queries, targets = [], []
        for _ in range(n_per_kind):
            scene, layout = world.sample_scene(rng), Layout.sample(rng)
            fact = vqa_question(world, scene, rng)
            new_answer = world.counterfactual(fact.kind, fact.answer, rng)
            other = rephrase(fact, scene, other_phrasing(rng, fact.phrasing))
            prompt = _in_context_prompt(world, rng, n_demos, fact, new_answer, other.text)
            queries.append(Query(render(scene, layout), prompt))
            targets.append(new_answer)
        answers = greedy_answers(bb, queries, 16 if n_demos > 8 else batch_size)
        report["in_context_following"][str(n_demos)] = float(np.mean(
            [normalize_answer(a) == normalize_answer(t) for a, t in zip(answers, targets)]))
        report.setdefault("in_context_prompt_tokens", {})[str(n_demos)] = int(
            max(len(bb.encode([q]).input_ids[0]) for q in queries[:20]))
    return report


def answer_fn(bb: Backbone, batch_size: int = 64):
    """`(images, prompts, max_new_tokens) -> greedy answers`: what edit-case construction needs of a backbone."""
    def answer(images, prompts, max_new_tokens):
        queries = [Query(img, p) for img, p in zip(images, prompts)]
        return greedy_answers(bb, queries, batch_size, max_new_tokens)
    return answer


def format_report(report: dict) -> str:
    lines = ["kind                 tok-acc  exact  chance  same-rerender  same-rephrase"]
    for kind, r in report["per_kind"].items():
        fmt = lambda v: "   -  " if v is None else f"{v:6.1%}"
        lines.append(f"{kind:20s} {r['token_accuracy']:6.1%} {r['exact']:6.1%} {r['chance']:6.1%}   "
                     f"{fmt(r['same_on_rerender'])}        {fmt(r['same_on_rephrase'])}")
    lines += [f"E-VQA token accuracy      {report['vqa_token_accuracy']:.1%}",
              f"caption token accuracy    {report['caption_token_accuracy']:.1%} (exact {report['caption_exact']:.1%})",
              f"text-only fact QA         {report['text_qa_exact']:.1%} of {report['text_qa_n']}",
              f"M-Loc pool answered       {report['m_loc_pool_accuracy']:.1%}",
              f"same answer, re-rendered  {report['same_on_rerender']:.1%}",
              f"same answer, rephrased    {report['same_on_rephrase']:.1%}",
              "in-context following      " + ", ".join(f"{k} demos {v:.1%}" for k, v in
                                                       report["in_context_following"].items())]
    return "\n".join(lines)
