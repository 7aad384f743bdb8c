"""The World: entities, fact subjects and scene samplers for one seed.

    >>> from mmedit_lib.world.world import World
    >>> w = World(seed=0)
    >>> len(w.entities), len(w.text_facts())
    (48, 208)
"""
from __future__ import annotations

import dataclasses
import random

from .facts import COUNTRIES, Entity, make_entities
from .questions import QUESTION_KINDS, TEXT_KINDS, Question, answer_space, ask
from .scenes import sample_entity_scene, sample_shape_scene

TEXT_PREFIX = "nq question: "  # MMEdit's T-Loc questions come from NQ and carry this prefix


@dataclasses.dataclass
class World:
    seed: int = 0

    def __post_init__(self):
        self.entities: list[Entity] = make_entities(self.seed)
        self.entity_by_name = {e.name: e for e in self.entities}

    def sample_scene(self, rng: random.Random, entity_share: float = 0.35):
        if rng.random() < entity_share:
            return sample_entity_scene(rng, self.entities)
        return sample_shape_scene(rng)

    def sample_scene_for(self, kind: str, rng: random.Random):
        """A scene of the domain a VQA kind asks about (landmark kinds: an entity; others: shapes)."""
        return self.sample_scene(rng, entity_share=1.0 if QUESTION_KINDS[kind].domain == "entity" else 0.0)

    def text_subjects(self, kind: str) -> list:
        domain = QUESTION_KINDS[kind].choose
        subjects = sorted(COUNTRIES) if "country" in domain.__name__ else self.entities
        return list(subjects)

    def text_facts(self) -> list[tuple[str, object]]:
        """Every (text kind, subject) pair: the text-only fact table."""
        return [(kind, subject) for kind in TEXT_KINDS for subject in self.text_subjects(kind)]

    def ask_text(self, kind: str, subject, rng: random.Random, phrasing: int | None = None) -> Question:
        return ask(QUESTION_KINDS[kind], subject, rng, phrasing=phrasing)

    def answers(self, kind: str) -> tuple[str, ...]:
        return answer_space(QUESTION_KINDS[kind], self.entities)

    def counterfactual(self, kind: str, truth: str, rng: random.Random) -> str:
        return rng.choice([a for a in self.answers(kind) if a != truth])
