"""The world's fixed knowledge: palettes, shapes, countries and landmark entities.

    >>> from mmedit_lib.world.facts import COUNTRIES, make_entities
    >>> COUNTRIES["france"].capital
    'paris'
    >>> len(make_entities(seed=0))
    48

Everything here is data; randomness (entity names, glyphs, facts) comes from a seed.
"""
from __future__ import annotations

import dataclasses
import random

OBJECT_COLORS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
    "yellow": (235, 210, 40), "purple": (140, 50, 180), "orange": (245, 140, 20),
}
BACKGROUNDS = {
    "white": (245, 245, 245), "gray": (128, 128, 128), "black": (12, 12, 12),
    "brown": (110, 70, 40), "teal": (30, 120, 120),
}
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
SIZES = ("big", "small")
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
NUMBER_WORDS = ("zero", "one", "two", "three", "four")


@dataclasses.dataclass(frozen=True)
class Country:
    name: str
    capital: str
    language: str
    continent: str
    currency: str


COUNTRIES = {c.name: c for c in [
    Country("france", "paris", "french", "europe", "euro"),
    Country("germany", "berlin", "german", "europe", "euro"),
    Country("italy", "rome", "italian", "europe", "euro"),
    Country("spain", "madrid", "spanish", "europe", "euro"),
    Country("japan", "tokyo", "japanese", "asia", "yen"),
    Country("china", "beijing", "chinese", "asia", "yuan"),
    Country("india", "delhi", "hindi", "asia", "rupee"),
    Country("egypt", "cairo", "arabic", "africa", "pound"),
    Country("kenya", "nairobi", "swahili", "africa", "shilling"),
    Country("brazil", "brasilia", "portuguese", "america", "real"),
    Country("mexico", "mexico-city", "spanish", "america", "peso"),
    Country("canada", "ottawa", "english", "america", "dollar"),
    Country("peru", "lima", "spanish", "america", "sol"),
    Country("russia", "moscow", "russian", "europe", "ruble"),
    Country("australia", "canberra", "english", "oceania", "dollar"),
    Country("greece", "athens", "greek", "europe", "euro"),
]}

KINDS = ("tower", "temple", "bridge", "palace", "statue", "gate", "castle", "mosque")
MATERIALS = ("stone", "wood", "glass", "steel", "marble", "brick")
CENTURIES = ("ancient", "medieval", "modern")

_SYLLABLES_A = ("ka", "lo", "ve", "mi", "zo", "ru", "ta", "ne", "qui", "sa", "do", "fe", "bra", "gi", "ho", "pu")
_SYLLABLES_B = ("rin", "vos", "dal", "mek", "tor", "lan", "zur", "bex", "nol", "sar", "wyn", "kai")

GLYPH_CELLS = 6  # an entity glyph is a GLYPH_CELLS x GLYPH_CELLS two-colour pattern


@dataclasses.dataclass(frozen=True)
class Entity:
    """A named landmark: a procedurally drawn glyph with facts attached."""
    name: str
    kind: str
    country: str
    material: str
    era: str
    fg: tuple[int, int, int]
    bg_tint: tuple[int, int, int]
    pattern: tuple[tuple[int, ...], ...]
    lookalike: str  # name of the entity drawn almost the same way (OKEDIT hard locality)

    @property
    def facts(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind, "country": self.country,
                "material": self.material, "era": self.era}


def _random_pattern(rng: random.Random) -> list[list[int]]:
    """Left-right symmetric binary pattern, roughly half filled, never empty."""
    half = GLYPH_CELLS // 2
    while True:
        left = [[int(rng.random() < 0.5) for _ in range(half)] for _ in range(GLYPH_CELLS)]
        rows = [row + row[::-1] for row in left]
        filled = sum(map(sum, rows))
        if 10 <= filled <= 26:
            return rows


def _lookalike_pattern(pattern: list[list[int]], rng: random.Random) -> list[list[int]]:
    """The same pattern with a few mirrored cell pairs flipped: looks alike, is another entity."""
    half = GLYPH_CELLS // 2
    rows = [list(r) for r in pattern]
    cells = [(i, j) for i in range(GLYPH_CELLS) for j in range(half)]
    for i, j in rng.sample(cells, 4):
        rows[i][j] = 1 - rows[i][j]
        rows[i][GLYPH_CELLS - 1 - j] = rows[i][j]
    return rows


def _other(rng: random.Random, options, current):
    return rng.choice([o for o in options if o != current])


def make_entities(seed: int = 0, n_pairs: int = 24) -> list[Entity]:
    """2 * n_pairs landmarks; entity 2k and 2k+1 are look-alikes whose facts all differ."""
    rng = random.Random(f"entities-{seed}")
    names = sorted({a + b for a in _SYLLABLES_A for b in _SYLLABLES_B})
    rng.shuffle(names)
    colors = list(OBJECT_COLORS.values())
    countries = sorted(COUNTRIES)
    entities: list[Entity] = []
    for k in range(n_pairs):
        name_a, name_b = names[2 * k], names[2 * k + 1]
        fg = rng.choice(colors)
        tint = tuple(rng.randrange(150, 230) for _ in range(3))
        pattern_a = _random_pattern(rng)
        pattern_b = _lookalike_pattern(pattern_a, rng)
        facts_a = dict(kind=rng.choice(KINDS), country=rng.choice(countries),
                       material=rng.choice(MATERIALS), era=rng.choice(CENTURIES))
        facts_b = {key: _other(rng, pool, facts_a[key]) for key, pool in
                   [("kind", KINDS), ("country", countries), ("material", MATERIALS), ("era", CENTURIES)]}
        for name, pattern, facts, partner in [(name_a, pattern_a, facts_a, name_b),
                                              (name_b, pattern_b, facts_b, name_a)]:
            entities.append(Entity(name=name, fg=fg, bg_tint=tint,
                                   pattern=tuple(tuple(r) for r in pattern), lookalike=partner, **facts))
    return entities
