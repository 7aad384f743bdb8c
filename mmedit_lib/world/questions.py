"""Question kinds of the world: phrasings, answers, answer spaces, captions.

    >>> import random
    >>> from mmedit_lib.world.questions import QUESTION_KINDS, ask
    >>> from mmedit_lib.world.scenes import sample_shape_scene
    >>> scene = sample_shape_scene(random.Random(1))
    >>> q = ask(QUESTION_KINDS["background"], scene, random.Random(0))
    >>> q.answer == scene.background
    True

Each kind has eight phrasings (templates): the source question, rephrases for text generality and OKEDIT's
lists all come from them. `keeps` names what an image rephrase must preserve for the answer to stay true.
"""
from __future__ import annotations

import dataclasses
import random
from collections import Counter
from typing import Callable

from .facts import (BACKGROUNDS, CENTURIES, COUNTRIES, KINDS, MATERIALS, NUMBER_WORDS, OBJECT_COLORS,
                    POSITIONS, SHAPES, SIZES, Entity)
from .scenes import EntityScene, ShapeScene

PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles", "diamond": "diamonds",
          "cross": "crosses"}


@dataclasses.dataclass(frozen=True)
class QuestionKind:
    name: str
    domain: str  # "shapes", "entity" or "text"
    templates: tuple[str, ...]
    answers: tuple[str, ...]  # the answer space (chance level = 1 / len)
    choose: Callable  # (scene_or_subject, rng) -> template args dict, or None if the kind does not apply
    answer: Callable  # (scene_or_subject, args) -> answer string
    keeps: frozenset = frozenset()  # "background", "positions": what an image rephrase must keep

    @property
    def chance(self) -> float:
        return 1.0 / len(self.answers)


@dataclasses.dataclass(frozen=True)
class Question:
    kind: str
    args: tuple  # sorted (key, value) pairs for the template
    phrasing: int
    text: str
    answer: str


def _unique(values):
    counts = Counter(values)
    return [v for v in values if counts[v] == 1]


def _choose_unique_shape(scene, rng):
    if not isinstance(scene, ShapeScene):
        return None
    shapes = _unique([o.shape for o in scene.objects])
    return {"shape": rng.choice(shapes)} if shapes else None


def _choose_unique_color(scene, rng):
    if not isinstance(scene, ShapeScene):
        return None
    colors = _unique([o.color for o in scene.objects])
    return {"color": rng.choice(colors)} if colors else None


def _choose_unique_object(scene, rng):
    if not isinstance(scene, ShapeScene):
        return None
    pairs = _unique([(o.color, o.shape) for o in scene.objects])
    if not pairs:
        return None
    color, shape = rng.choice(pairs)
    return {"color": color, "shape": shape}


def _choose_any_shape(scene, rng):
    if not isinstance(scene, ShapeScene):
        return None
    present = sorted({o.shape for o in scene.objects})
    shape = rng.choice(present) if rng.random() < 0.75 else rng.choice(SHAPES)
    return {"shape": shape, "shapes": PLURAL[shape]}


def _only_shapes(scene, rng):
    return {} if isinstance(scene, ShapeScene) else None


def _only_entity(scene, rng):
    return {} if isinstance(scene, EntityScene) else None


def _find(scene, **attrs):
    return next(o for o in scene.objects if all(getattr(o, k) == v for k, v in attrs.items()))


def _text_country(subject, rng):
    return {"country": subject} if subject in COUNTRIES else None


def _text_entity(subject, rng):
    return {"name": subject.name} if isinstance(subject, Entity) else None


_KINDS = [
    QuestionKind("background", "shapes", (
        "what color is the background ?", "what is the color of the background ?",
        "which color does the background have ?", "what colour is the background of this picture ?",
        "tell me the background color .", "the background is which color ?",
        "what color is behind the objects ?", "name the color of the background ."),
        tuple(sorted(BACKGROUNDS)), _only_shapes, lambda s, a: s.background, frozenset({"background"})),
    QuestionKind("color_of_shape", "shapes", (
        "what color is the {shape} ?", "what is the color of the {shape} ?", "which color does the {shape} have ?",
        "what colour is the {shape} in the picture ?", "tell me the color of the {shape} .",
        "the {shape} is which color ?", "how is the {shape} colored ?", "name the color of the {shape} ."),
        tuple(sorted(OBJECT_COLORS)), _choose_unique_shape, lambda s, a: _find(s, shape=a["shape"]).color),
    QuestionKind("shape_of_color", "shapes", (
        "what shape is the {color} object ?", "what is the shape of the {color} object ?",
        "which shape does the {color} object have ?", "what kind of shape is {color} in the picture ?",
        "tell me the shape of the {color} object .", "the {color} object is which shape ?",
        "what form does the {color} thing have ?", "name the shape of the {color} object ."),
        SHAPES, _choose_unique_color, lambda s, a: _find(s, color=a["color"]).shape),
    QuestionKind("count_objects", "shapes", (
        "how many objects are there ?", "what is the number of objects in the picture ?",
        "how many shapes can you see ?", "count the objects in the image .",
        "how many things are in this picture ?", "what is the count of shapes ?",
        "the picture contains how many objects ?", "tell me how many objects there are ."),
        NUMBER_WORDS[1:], _only_shapes, lambda s, a: NUMBER_WORDS[len(s.objects)]),
    QuestionKind("count_shape", "shapes", (
        "how many {shapes} are there ?", "what is the number of {shapes} in the picture ?",
        "how many {shapes} can you see ?", "count the {shapes} in the image .",
        "how many {shapes} are in this picture ?", "what is the count of {shapes} ?",
        "the picture contains how many {shapes} ?", "tell me how many {shapes} there are ."),
        NUMBER_WORDS, _choose_any_shape,
        lambda s, a: NUMBER_WORDS[sum(o.shape == a["shape"] for o in s.objects)]),
    QuestionKind("position_of", "shapes", (
        "where is the {color} {shape} ?", "what is the position of the {color} {shape} ?",
        "in which corner is the {color} {shape} ?", "where can you see the {color} {shape} ?",
        "tell me where the {color} {shape} is .", "the {color} {shape} is in which corner ?",
        "where in the picture is the {color} {shape} ?", "name the corner of the {color} {shape} ."),
        POSITIONS, _choose_unique_object,
        lambda s, a: POSITIONS[_find(s, color=a["color"], shape=a["shape"]).slot], frozenset({"positions"})),
    QuestionKind("size_of", "shapes", (
        "is the {shape} big or small ?", "what is the size of the {shape} ?", "how big is the {shape} ?",
        "is the {shape} large or little ?", "tell me the size of the {shape} .", "the {shape} is which size ?",
        "what size does the {shape} have ?", "name the size of the {shape} ."),
        SIZES, _choose_unique_shape, lambda s, a: _find(s, shape=a["shape"]).size),
    QuestionKind("landmark_name", "entity", (
        "what is the name of this landmark ?", "what is this landmark called ?", "which landmark is this ?",
        "what landmark is shown in the picture ?", "tell me the name of this landmark .",
        "this landmark is called what ?", "what do people call this landmark ?", "name this landmark ."),
        (), _only_entity, lambda s, a: s.entity.name),
    QuestionKind("landmark_country", "entity", (
        "in which country is this landmark ?", "which country is this landmark in ?",
        "where is this landmark located ?", "in what country can you find this landmark ?",
        "tell me the country of this landmark .", "this landmark is in which country ?",
        "what country does this landmark belong to ?", "name the country of this landmark ."),
        tuple(sorted(COUNTRIES)), _only_entity, lambda s, a: s.entity.country),
    QuestionKind("landmark_kind", "entity", (
        "what kind of landmark is this ?", "what type of building is this ?", "what sort of landmark is shown ?",
        "which kind of landmark is in the picture ?", "tell me what kind of landmark this is .",
        "this landmark is what kind of structure ?", "what is this structure ?", "name the type of this landmark ."),
        KINDS, _only_entity, lambda s, a: s.entity.kind),
    QuestionKind("landmark_material", "entity", (
        "what is this landmark made of ?", "what material is this landmark built from ?",
        "which material was used for this landmark ?", "what is the building material of this landmark ?",
        "tell me what this landmark is made of .", "this landmark is made of what ?",
        "from what material is this landmark made ?", "name the material of this landmark ."),
        MATERIALS, _only_entity, lambda s, a: s.entity.material),
    QuestionKind("landmark_era", "entity", (
        "is this landmark ancient , medieval or modern ?", "from which era is this landmark ?",
        "how old is this landmark ?", "what era does this landmark come from ?",
        "tell me the era of this landmark .", "this landmark is from which era ?",
        "when was this landmark built , roughly ?", "name the era of this landmark ."),
        CENTURIES, _only_entity, lambda s, a: s.entity.era),
    QuestionKind("capital", "text", (
        "what is the capital of {country} ?", "which city is the capital of {country} ?",
        "what city is the capital of {country} ?", "name the capital of {country} .",
        "the capital of {country} is which city ?", "tell me the capital of {country} .",
        "where is the government of {country} seated ?", "{country} has which capital ?"),
        tuple(sorted(c.capital for c in COUNTRIES.values())), _text_country,
        lambda s, a: COUNTRIES[s].capital),
    QuestionKind("language", "text", (
        "what language is spoken in {country} ?", "which language do people speak in {country} ?",
        "what is the language of {country} ?", "name the language of {country} .",
        "the main language of {country} is what ?", "tell me the language spoken in {country} .",
        "people in {country} speak which language ?", "{country} speaks which language ?"),
        tuple(sorted({c.language for c in COUNTRIES.values()})), _text_country,
        lambda s, a: COUNTRIES[s].language),
    QuestionKind("continent", "text", (
        "on which continent is {country} ?", "which continent is {country} in ?",
        "what continent is {country} part of ?", "name the continent of {country} .",
        "{country} lies on which continent ?", "tell me the continent of {country} .",
        "where is {country} , on which continent ?", "{country} belongs to which continent ?"),
        tuple(sorted({c.continent for c in COUNTRIES.values()})), _text_country,
        lambda s, a: COUNTRIES[s].continent),
    QuestionKind("currency", "text", (
        "what is the currency of {country} ?", "which currency is used in {country} ?",
        "what money do people use in {country} ?", "name the currency of {country} .",
        "the currency of {country} is what ?", "tell me the currency of {country} .",
        "people in {country} pay with which currency ?", "{country} uses which currency ?"),
        tuple(sorted({c.currency for c in COUNTRIES.values()})), _text_country,
        lambda s, a: COUNTRIES[s].currency),
    QuestionKind("entity_country", "text", (
        "in which country is the {name} ?", "which country is the {name} in ?", "where is the {name} located ?",
        "in what country can you find the {name} ?", "tell me the country of the {name} .",
        "the {name} is in which country ?", "what country does the {name} belong to ?",
        "name the country of the {name} ."),
        tuple(sorted(COUNTRIES)), _text_entity, lambda s, a: s.country),
    QuestionKind("entity_kind", "text", (
        "what kind of landmark is the {name} ?", "what type of building is the {name} ?",
        "what sort of landmark is the {name} ?", "which kind of landmark is the {name} ?",
        "tell me what kind of landmark the {name} is .", "the {name} is what kind of structure ?",
        "what is the {name} ?", "name the type of the {name} ."),
        KINDS, _text_entity, lambda s, a: s.kind),
    QuestionKind("entity_material", "text", (
        "what is the {name} made of ?", "what material is the {name} built from ?",
        "which material was used for the {name} ?", "what is the building material of the {name} ?",
        "tell me what the {name} is made of .", "the {name} is made of what ?",
        "from what material is the {name} made ?", "name the material of the {name} ."),
        MATERIALS, _text_entity, lambda s, a: s.material),
]
QUESTION_KINDS: dict[str, QuestionKind] = {k.name: k for k in _KINDS}
VQA_KINDS = [k.name for k in _KINDS if k.domain in ("shapes", "entity")]
TEXT_KINDS = [k.name for k in _KINDS if k.domain == "text"]
N_PHRASINGS = 8
assert all(len(k.templates) == N_PHRASINGS for k in _KINDS)


def answer_space(kind: QuestionKind, entities: list[Entity]) -> tuple[str, ...]:
    return kind.answers if kind.answers else tuple(sorted(e.name for e in entities))


def ask(kind: QuestionKind, subject, rng: random.Random, phrasing: int | None = None,
        args: dict | None = None) -> Question | None:
    """One question of `kind` about `subject` (a scene, a country name or an Entity); None if it does not apply."""
    if args is None:
        args = kind.choose(subject, rng)
        if args is None:
            return None
    phrasing = rng.randrange(N_PHRASINGS) if phrasing is None else phrasing
    return Question(kind=kind.name, args=tuple(sorted(args.items())), phrasing=phrasing,
                    text=kind.templates[phrasing].format(**args), answer=kind.answer(subject, args))


def rephrase(question: Question, subject, phrasing: int) -> Question:
    """The same question about the same subject in another phrasing."""
    return ask(QUESTION_KINDS[question.kind], subject, random.Random(0), phrasing=phrasing,
               args=dict(question.args))


def other_phrasing(rng: random.Random, phrasing: int) -> int:
    """A random phrasing index other than `phrasing`."""
    return rng.choice([p for p in range(N_PHRASINGS) if p != phrasing])


def answer_for(question: Question, subject) -> str | None:
    """The true answer of `question` (same kind and arguments) about another subject; None if undefined."""
    kind = QUESTION_KINDS[question.kind]
    try:
        return kind.answer(subject, dict(question.args))
    except (StopIteration, AttributeError, KeyError):
        return None


CAPTION_PROMPTS = ("a photo of", "an image of", "a picture of", "a photograph of", "a rendering of",
                   "this image shows")


def caption(scene) -> str:
    """The one true caption of a scene, e.g. 'a big red circle and a small blue square on a gray background'."""
    if isinstance(scene, ShapeScene):
        parts = [f"a {o.size} {o.color} {o.shape}" for o in sorted(scene.objects, key=lambda o: o.slot)]
        return " and ".join(parts) + f" on a {scene.background} background"
    if isinstance(scene, EntityScene):
        e = scene.entity
        return f"the {e.name} {e.kind} in {e.country}"
    raise TypeError(f"no caption for {type(scene).__name__}")


def _template_args(template: str, text: str) -> dict | None:
    """The template arguments that make `template` read `text` (None when it cannot)."""
    import re
    import string
    pattern, names = "", []
    for literal, field, _, _ in string.Formatter().parse(template):
        pattern += re.escape(literal)
        if field is not None:
            pattern += f"(?P<{field}>.+?)" if field not in names else f"(?P={field})"
            names.append(field)
    match = re.fullmatch(pattern, text)
    return match.groupdict() if match else None


def training_rephrase(kind: str, text: str, avoid: tuple[str, ...] = ()) -> str | None:
    """Another phrasing of the world question `text` of `kind`, none of `avoid` (e.g. the eval rephrase):
    the first such template in order, so the same record always gets the same one. None if `text` is not
    one of the kind's phrasings.

        >>> training_rephrase("currency", "what is the currency of peru ?", ("which currency is used in peru ?",))
        'what money do people use in peru ?'
    """
    spec = QUESTION_KINDS.get(kind)
    if spec is None:
        return None
    for template in spec.templates:
        args = _template_args(template, text)
        if args is not None:
            break
    else:
        return None
    for template in spec.templates:
        candidate = template.format(**args)
        if candidate != text and candidate not in avoid:
            return candidate
    return None
