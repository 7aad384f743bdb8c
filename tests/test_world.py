import hashlib
import random
from pathlib import Path

import pytest

from mmedit_lib.backbones.tokenizer import build_word_tokenizer
from mmedit_lib.world.corpus import make_corpus, vocabulary
from mmedit_lib.world.facts import GLYPH_CELLS, make_entities
from mmedit_lib.world.questions import (N_PHRASINGS, QUESTION_KINDS, VQA_KINDS, answer_for, ask, caption,
                                        rephrase)
from mmedit_lib.world.render import png_bytes, render
from mmedit_lib.world.scenes import Layout
from mmedit_lib.world.variants import lookalike, rephrase_image
from mmedit_lib.world.world import World
from mmedit_lib.world.writer import write_world


def tree_digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_world_files(tmp_path):
    write_world(tmp_path / "a", seed=3, n_images=40, n_examples=200)
    write_world(tmp_path / "b", seed=3, n_images=40, n_examples=200)
    a, b = tree_digest(tmp_path / "a"), tree_digest(tmp_path / "b")
    assert len(a) == 40 + 4  # corpus images + world.json, text_facts.json, scenes.jsonl, examples.jsonl
    assert a == b
    write_world(tmp_path / "c", seed=4, n_images=40, n_examples=200)
    assert tree_digest(tmp_path / "c") != a


def test_same_scene_and_layout_give_identical_png_bytes():
    world = World(0)
    for i in range(20):
        rng1, rng2 = random.Random(i), random.Random(i)
        s1, s2 = world.sample_scene(rng1), world.sample_scene(rng2)
        assert png_bytes(render(s1, Layout.sample(rng1))) == png_bytes(render(s2, Layout.sample(rng2)))


def test_entities_have_distinct_glyphs_and_lookalikes_differ_in_every_fact():
    entities = make_entities(0)
    patterns = {e.pattern for e in entities}
    assert len(patterns) == len(entities)
    by_name = {e.name: e for e in entities}
    for e in entities:
        twin = by_name[e.lookalike]
        assert twin.lookalike == e.name and twin.fg == e.fg
        differing = sum(a != b for ra, rb in zip(e.pattern, twin.pattern) for a, b in zip(ra, rb))
        assert 0 < differing <= 8 < GLYPH_CELLS * GLYPH_CELLS // 2
        assert all(e.facts[k] != twin.facts[k] for k in ("name", "kind", "country", "material", "era"))


def test_every_kind_has_at_least_four_distinct_phrasings():
    for kind in QUESTION_KINDS.values():
        assert len(set(kind.templates)) == N_PHRASINGS >= 4, kind.name


@pytest.mark.parametrize("kind_name", VQA_KINDS)
def test_image_rephrase_keeps_the_answer_and_changes_the_pixels(kind_name):
    world, rng = World(0), random.Random(kind_name)
    kind, checked = QUESTION_KINDS[kind_name], 0
    while checked < 40:
        scene = world.sample_scene(rng, entity_share=1.0 if kind.domain == "entity" else 0.0)
        q = ask(kind, scene, rng)
        if q is None:
            continue
        layout = Layout.sample(rng)
        new_scene, new_layout = rephrase_image(scene, layout, kind.keeps, rng)
        assert answer_for(q, new_scene) == q.answer
        assert render(new_scene, new_layout).tobytes() != render(scene, layout).tobytes()
        for p in range(N_PHRASINGS):
            assert rephrase(q, scene, p).answer == q.answer
        checked += 1


@pytest.mark.parametrize("kind_name", VQA_KINDS)
def test_lookalike_changes_the_answer(kind_name):
    world, rng = World(0), random.Random(kind_name)
    kind, found = QUESTION_KINDS[kind_name], 0
    for _ in range(200):
        scene = world.sample_scene(rng, entity_share=1.0 if kind.domain == "entity" else 0.0)
        q = ask(kind, scene, rng)
        if q is None:
            continue
        twin = lookalike(scene, q, world.entity_by_name, rng)
        if twin is not None:
            twin_scene, twin_answer = twin
            assert twin_answer != q.answer and answer_for(q, twin_scene) == twin_answer
            found += 1
    assert found >= 20


def test_captions_describe_the_scene():
    world, rng = World(0), random.Random(0)
    for _ in range(20):
        scene = world.sample_scene(rng)
        text = caption(scene)
        if hasattr(scene, "entity"):
            assert scene.entity.name in text and scene.entity.country in text
        else:
            assert text.endswith(f"on a {scene.background} background")
            assert text.count(" and ") == len(scene.objects) - 1


def test_corpus_has_every_type_long_contexts_and_no_unknown_words():
    world = World(0)
    scenes, examples = make_corpus(world, n_images=100, n_examples=3000, seed=0)
    types = {e["type"] for e in examples}
    assert types == {"vqa", "caption", "text", "in_context"}
    demo_counts = [len(e["turns"]) - 1 for e in examples if e["type"] == "in_context"]
    assert max(demo_counts) >= 35 and min(demo_counts) == 0
    # the final in-context turn: a related query takes the new fact's (counterfactual) answer
    related = [e for e in examples if e["type"] == "in_context" and e["turns"][-1][0].split(" prompt : ")[0]
               .endswith(" " + e["turns"][-1][1])]
    assert len(related) > 100
    tok = build_word_tokenizer(vocabulary(world))
    texts = [t for e in examples for turn in e["turns"] for t in turn]
    assert all(tok.unk_token_id not in tok(t, add_special_tokens=False)["input_ids"] for t in texts)


def test_text_fact_table_covers_countries_and_entities():
    world = World(0)
    facts = world.text_facts()
    kinds = {k for k, _ in facts}
    assert {"capital", "language", "continent", "entity_country"} <= kinds
    assert len(facts) == 16 * 4 + 48 * 3


def test_stage1_labels_follow_the_scene_layout():
    from mmedit_lib.world.facts import SHAPES
    from mmedit_lib.world.labels import IGNORE, patch_quadrant_shapes, scene_labels
    from mmedit_lib.world.scenes import EntityScene, ShapeObject, ShapeScene
    scene = ShapeScene("gray", (ShapeObject(1, "red", "cross", "big"), ShapeObject(2, "blue", "circle", "small")))
    grid = patch_quadrant_shapes(scene, 8).reshape(8, 8)
    empty = len(SHAPES)
    assert (grid[:4, :4] == empty).all() and (grid[4:, 4:] == empty).all()  # top left, bottom right: no object
    assert (grid[:4, 4:] == SHAPES.index("cross")).all() and (grid[4:, :4] == SHAPES.index("circle")).all()
    world = World(0)
    entity = world.entities[3]
    labels = scene_labels(EntityScene(entity, "tint"), {e.name: i for i, e in enumerate(world.entities)})
    assert labels["entity"] == 3
    assert labels["glyph"].tolist() == [cell for row in entity.pattern for cell in row]
    assert (patch_quadrant_shapes(EntityScene(entity, "tint"), 8) == IGNORE).all()
    assert (scene_labels(scene, {})["glyph"] == IGNORE).all()


def test_patch_colour_labels_are_the_centre_pixel_at_8_px_and_reach_small_objects_at_16():
    """The 8-px cells' centre pixels label every patch size: one pixel per 8-px patch, a vote of four at 16 px."""
    import numpy as np
    from mmedit_lib.world.facts import OBJECT_COLORS
    from mmedit_lib.world.labels import COLOR_NAMES, patch_colors
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    first, second = OBJECT_COLORS[COLOR_NAMES[0]], OBJECT_COLORS[COLOR_NAMES[1]]  # colour classes 0 and 1
    image[10:15, 10:15] = first  # a small object off the 16-px patch centre (8, 8), on the 8-px centre (12, 12)
    image[36, 36] = second
    image[44, 44] = second
    image[36, 44] = first  # patch (2, 2) at 16 px: two cells of colour 1 against one of colour 0
    at8, at16 = patch_colors(image, 8), patch_colors(image, 16)
    other = len(COLOR_NAMES)
    assert at8.shape == (64,) and at8[1 * 8 + 1] == 0 and at8[0] == other
    assert at8[4 * 8 + 4] == 1 and at8[5 * 8 + 5] == 1 and at8[4 * 8 + 5] == 0
    assert at16.shape == (16,) and at16[0] == 0 and at16[2 * 4 + 2] == 1 and at16[1] == other
    with pytest.raises(ValueError, match="multiple of 8, not 12"):
        patch_colors(image, 12)
