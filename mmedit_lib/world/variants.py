"""Variants of a scene: the re-rendered image (image rephrase) and the look-alike (OKEDIT hard locality).

    >>> import random
    >>> from mmedit_lib.world.scenes import sample_shape_scene, Layout
    >>> rng = random.Random(0)
    >>> scene = sample_shape_scene(rng)
    >>> new_scene, new_layout = rephrase_image(scene, Layout.sample(rng), keeps=frozenset(), rng=rng)
    >>> sorted(o.color for o in new_scene.objects) == sorted(o.color for o in scene.objects)
    True
"""
from __future__ import annotations

import dataclasses
import random

from .facts import BACKGROUNDS, OBJECT_COLORS, SHAPES, SIZES
from .questions import Question, answer_for, QUESTION_KINDS
from .scenes import EntityScene, Layout, ShapeObject, ShapeScene


def rephrase_image(scene, layout: Layout, keeps: frozenset, rng: random.Random):
    """Same content, new rendering: new jitter and scale; a new background and slot arrangement unless kept."""
    new_layout = Layout.sample(rng)
    while new_layout == layout:
        new_layout = Layout.sample(rng)
    if isinstance(scene, EntityScene):
        options = ["tint"] + sorted(b for b in BACKGROUNDS if b != "black")
        background = scene.background if "background" in keeps else rng.choice(
            [b for b in options if b != scene.background])
        return dataclasses.replace(scene, background=background), new_layout
    if isinstance(scene, ShapeScene):
        background = scene.background if "background" in keeps else rng.choice(
            [b for b in sorted(BACKGROUNDS) if b != scene.background])
        objects = scene.objects
        if "positions" not in keeps:
            slots = rng.sample(range(4), len(objects))
            objects = tuple(sorted((dataclasses.replace(o, slot=s) for o, s in zip(objects, slots)),
                                   key=lambda o: o.slot))
        return ShapeScene(background=background, objects=objects), new_layout
    raise TypeError(f"cannot rephrase {type(scene).__name__}")


def _mutations(scene: ShapeScene, rng: random.Random):
    """Single-attribute changes of a shape scene, in random order."""
    out = []
    for i, o in enumerate(scene.objects):
        for field, pool in (("color", sorted(OBJECT_COLORS)), ("shape", SHAPES), ("size", SIZES)):
            for value in pool:
                if value != getattr(o, field):
                    objs = list(scene.objects)
                    objs[i] = dataclasses.replace(o, **{field: value})
                    out.append(ShapeScene(scene.background, tuple(objs)))
        if len(scene.objects) > 1:
            out.append(ShapeScene(scene.background, scene.objects[:i] + scene.objects[i + 1:]))
    free = [s for s in range(4) if s not in {o.slot for o in scene.objects}]
    for i, o in enumerate(scene.objects):  # the same object moved to a free corner
        for s in free:
            objs = list(scene.objects)
            objs[i] = dataclasses.replace(o, slot=s)
            out.append(ShapeScene(scene.background, tuple(sorted(objs, key=lambda x: x.slot))))
    for s in free:
        new = ShapeObject(s, rng.choice(sorted(OBJECT_COLORS)), rng.choice(SHAPES), rng.choice(SIZES))
        out.append(ShapeScene(scene.background, tuple(sorted(scene.objects + (new,), key=lambda o: o.slot))))
    out += [ShapeScene(b, scene.objects) for b in sorted(BACKGROUNDS) if b != scene.background]
    rng.shuffle(out)
    return out


def lookalike(scene, question: Question, entity_by_name: dict, rng: random.Random):
    """A scene that looks almost the same but where `question` has another (defined) answer; None if none."""
    if isinstance(scene, EntityScene):
        twin = entity_by_name[scene.entity.lookalike]
        candidate = dataclasses.replace(scene, entity=twin)
        answer = answer_for(question, candidate)
        return (candidate, answer) if answer is not None and answer != question.answer else None
    kind = QUESTION_KINDS[question.kind]
    for candidate in _mutations(scene, rng):
        if kind.choose is not None and not _applies(kind, candidate, question):
            continue
        answer = answer_for(question, candidate)
        if answer is not None and answer != question.answer:
            return candidate, answer
    return None


def _applies(kind, scene, question: Question) -> bool:
    """The question's referring expression still picks out exactly one object (or needs none)."""
    args = dict(question.args)
    if "color" in args and "shape" in args:
        return sum(o.color == args["color"] and o.shape == args["shape"] for o in scene.objects) == 1
    if "shape" in args and "shapes" not in args:
        return sum(o.shape == args["shape"] for o in scene.objects) == 1
    if "color" in args:
        return sum(o.color == args["color"] for o in scene.objects) == 1
    return True
