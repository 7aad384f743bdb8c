"""Scene specifications: what an image shows, independent of how it is drawn.

    >>> import random
    >>> from mmedit_lib.world.scenes import sample_shape_scene
    >>> scene = sample_shape_scene(random.Random(0))
    >>> 1 <= len(scene.objects) <= 4
    True

A ShapeScene is a 2x2 grid of slots holding coloured shapes on a background; an EntityScene is one landmark
glyph on a background. A Layout holds the nuisance factors (jitter, scale) that a re-render changes.
"""
from __future__ import annotations

import dataclasses
import random

from .facts import BACKGROUNDS, OBJECT_COLORS, POSITIONS, SHAPES, SIZES, Entity


@dataclasses.dataclass(frozen=True)
class ShapeObject:
    slot: int  # index into facts.POSITIONS
    color: str
    shape: str
    size: str


@dataclasses.dataclass(frozen=True)
class ShapeScene:
    background: str
    objects: tuple[ShapeObject, ...]

    kind = "shapes"

    def with_background(self, background: str) -> "ShapeScene":
        return dataclasses.replace(self, background=background)


@dataclasses.dataclass(frozen=True)
class EntityScene:
    entity: Entity
    background: str  # "tint" (the entity's own tint) or a BACKGROUNDS name

    kind = "entity"


@dataclasses.dataclass(frozen=True)
class BlankScene:
    """A uniform image (BalancEdit's black / white negative anchors)."""
    color: str

    kind = "blank"


@dataclasses.dataclass(frozen=True)
class Layout:
    """Nuisance factors of one rendering: per-slot pixel offsets and a size scale."""
    offsets: tuple[tuple[int, int], ...]
    scale: float

    @staticmethod
    def sample(rng: random.Random) -> "Layout":
        return Layout(offsets=tuple((rng.randint(-3, 3), rng.randint(-3, 3)) for _ in range(4)),
                      scale=rng.uniform(0.85, 1.1))


def sample_shape_scene(rng: random.Random, n_objects: int | None = None) -> ShapeScene:
    n = n_objects or rng.choice((1, 2, 2, 3, 3, 4))
    slots = sorted(rng.sample(range(len(POSITIONS)), n))
    background = rng.choice(sorted(BACKGROUNDS))
    objects = tuple(ShapeObject(slot=s, color=rng.choice(sorted(OBJECT_COLORS)), shape=rng.choice(SHAPES),
                                size=rng.choice(SIZES)) for s in slots)
    return ShapeScene(background=background, objects=objects)


def sample_entity_scene(rng: random.Random, entities: list[Entity]) -> EntityScene:
    background = rng.choice(["tint", "tint"] + sorted(b for b in BACKGROUNDS if b != "black"))
    return EntityScene(entity=rng.choice(entities), background=background)
