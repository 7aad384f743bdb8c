"""Training corpus of the tiny backbones: VQA, captions, text QA and in-context knowledge examples.

    >>> from mmedit_lib.world.world import World
    >>> from mmedit_lib.world.corpus import make_corpus
    >>> scenes, examples = make_corpus(World(0), n_images=50, n_examples=200, seed=0)
    >>> sorted({e["type"] for e in examples}) == ["caption", "in_context", "text", "vqa"]
    True

An example is `{"type", "image": image id or None, "turns": [[text, answer], ...]}`: the model reads each text and
is trained on each answer; `</s>` follows the last answer. In-context examples follow the IKE/MMEdit format
`New Fact: <q> <a> Prompt: <q'> <a'>`: demonstrations (copy / update / retain) then the final new fact and the
query, whose answer must be taken from the new fact when related and from the model's knowledge when not.
"""
from __future__ import annotations

import random
import re

from ..backbones.prompt_format import FACT_FORMAT, TINY_VQA_TEMPLATE, fact_prompt
from .facts import BACKGROUNDS, CENTURIES, COUNTRIES, KINDS, MATERIALS, NUMBER_WORDS, OBJECT_COLORS, SHAPES
from .questions import (CAPTION_PROMPTS, PLURAL, QUESTION_KINDS, VQA_KINDS, ask, caption, other_phrasing,
                        rephrase)
from .scenes import EntityScene, Layout
from .world import TEXT_PREFIX, World

VQA_TEMPLATE = TINY_VQA_TEMPLATE
MIX = {"vqa": 0.41, "caption": 0.09, "text": 0.225, "in_context": 0.275}
MAX_DEMOS = 40
CORPUS_IMAGES = 8000  # the default corpus: what the shipped backbones were trained on
CORPUS_EXAMPLES = 96000


def _demo_count(rng: random.Random) -> int:
    """Mostly short contexts, some as long as 40 demonstrations (so long positions are trained)."""
    r = rng.random()
    if r < 0.50:
        return 0
    if r < 0.85:
        return rng.randint(1, 6)
    if r < 0.95:
        return rng.randint(7, 20)
    return rng.randint(21, MAX_DEMOS)


def vqa_question(world: World, scene, rng: random.Random, exclude: str | None = None):
    """A random applicable VQA question about `scene` (never of kind `exclude`)."""
    domain = "entity" if isinstance(scene, EntityScene) else "shapes"
    kinds = [k for k in VQA_KINDS if k != exclude and QUESTION_KINDS[k].domain == domain]
    while True:
        q = ask(QUESTION_KINDS[rng.choice(kinds)], scene, rng)
        if q is not None:
            return q


def _text_question(world: World, rng: random.Random, phrasing=None):
    kind, subject = rng.choice(world.text_facts())
    return world.ask_text(kind, subject, rng, phrasing=phrasing), subject


def demonstration(world: World, rng: random.Random) -> list[str]:
    """One `New Fact: q a Prompt: q' a'` demonstration, text only (as in IKE's prompts)."""
    fact, subject = _text_question(world, rng)
    new_answer = world.counterfactual(fact.kind, fact.answer, rng)
    mode = rng.random()
    if mode < 1 / 3:  # copy
        query, answer = fact.text, new_answer
    elif mode < 2 / 3:  # update: a paraphrase takes the new answer
        query, answer = rephrase(fact, subject, other_phrasing(rng, fact.phrasing)).text, new_answer
    else:  # retain: an unrelated question keeps its own answer
        other, _ = _text_question(world, rng)
        while other.kind == fact.kind and other.args == fact.args:
            other, _ = _text_question(world, rng)
        query, answer = TEXT_PREFIX + other.text, other.answer
    return [fact_prompt(fact.text, new_answer, query), answer]


def _in_context(world: World, rng: random.Random, image_id: int, scene) -> dict:
    demos = [demonstration(world, rng) for _ in range(_demo_count(rng))]
    visual = rng.random() < 0.7
    if visual:
        fact = vqa_question(world, scene, rng)
        subject = scene
    else:
        fact, subject = _text_question(world, rng)
    new_answer = world.counterfactual(fact.kind, fact.answer, rng)
    mode = rng.random()
    if mode < 0.5:  # related: the answer comes from the new fact
        phrasing = fact.phrasing if rng.random() < 0.2 else other_phrasing(rng, fact.phrasing)
        query = rephrase(fact, subject, phrasing)
        prompt, answer = query.text, new_answer
    elif mode < 0.7 and visual:  # unrelated question about the same image
        query = vqa_question(world, scene, rng, exclude=fact.kind)
        prompt, answer = query.text, query.answer
    elif mode < 0.8 and visual:  # same kind, other arguments when possible: a hard locality case
        query = ask(QUESTION_KINDS[fact.kind], scene, rng)
        prompt, answer = query.text, query.answer
        if query.answer == fact.answer and query.args == fact.args:
            prompt, answer = rephrase(fact, subject, query.phrasing).text, new_answer
    else:  # unrelated text question (MMEdit's T-Loc with the edit in context)
        query, _ = _text_question(world, rng)
        while query.kind == fact.kind and query.args == fact.args:
            query, _ = _text_question(world, rng)
        prompt, answer = TEXT_PREFIX + query.text, query.answer
    turns = demos + [[fact_prompt(fact.text, new_answer, prompt), answer]]
    return {"type": "in_context", "image": image_id if visual else None, "turns": turns}


def scene_to_json(scene) -> dict:
    if isinstance(scene, EntityScene):
        return {"kind": "entity", "entity": scene.entity.name, "background": scene.background}
    return {"kind": "shapes", "background": scene.background,
            "objects": [[o.slot, o.color, o.shape, o.size] for o in scene.objects]}


def make_corpus(world: World, n_images: int, n_examples: int, seed: int):
    """(scenes, examples): `scenes[i]` = (scene, layout) of image i; examples reference images by index."""
    rng = random.Random(f"corpus-{world.seed}-{seed}")
    scenes = [(world.sample_scene(rng), Layout.sample(rng)) for _ in range(n_images)]
    kinds = list(MIX)
    weights = [MIX[k] for k in kinds]
    examples = []
    while len(examples) < n_examples:
        kind = rng.choices(kinds, weights)[0]
        image_id = rng.randrange(n_images)
        scene = scenes[image_id][0]
        if kind == "vqa":
            q = vqa_question(world, scene, rng)
            examples.append({"type": "vqa", "image": image_id, "kind": q.kind,
                             "turns": [[VQA_TEMPLATE.format(q.text), q.answer]]})
        elif kind == "caption":
            examples.append({"type": "caption", "image": image_id,
                             "turns": [[rng.choice(CAPTION_PROMPTS), caption(scene)]]})
        elif kind == "text":
            q, _ = _text_question(world, rng)
            examples.append({"type": "text", "image": None, "kind": q.kind,
                             "turns": [[TEXT_PREFIX + q.text, q.answer]]})
        else:
            examples.append(_in_context(world, rng, image_id, scene))
    return scenes, examples


def vocabulary(world: World) -> list[str]:
    """Every word the world can produce, in a fixed order (the tiny tokenizer's vocabulary)."""
    texts = [VQA_TEMPLATE, TEXT_PREFIX, FACT_FORMAT.format(question="", answer=""), " ".join(CAPTION_PROMPTS),
             "a the and on in background big small top bottom left right"]
    for kind in QUESTION_KINDS.values():
        texts.extend(kind.templates)
        texts.extend(kind.answers)
    texts += list(BACKGROUNDS) + list(OBJECT_COLORS) + list(SHAPES) + list(NUMBER_WORDS) + list(KINDS)
    texts += list(MATERIALS) + list(CENTURIES)
    for c in COUNTRIES.values():
        texts += [c.name, c.capital, c.language, c.continent, c.currency]
    texts += [e.name for e in world.entities]
    texts += list(PLURAL.values())
    words: dict[str, None] = {}
    for text in texts:
        for token in re.findall(r"\w+|[^\w\s]+", text.lower().replace("{", " ").replace("}", " ")):
            words.setdefault(token, None)
    return list(words)
