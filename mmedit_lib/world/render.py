"""Draw scenes as small RGB images, deterministically.

    >>> import random
    >>> from mmedit_lib.world.scenes import sample_shape_scene, Layout
    >>> from mmedit_lib.world.render import render
    >>> rng = random.Random(0)
    >>> render(sample_shape_scene(rng), Layout.sample(rng)).size
    (64, 64)

No anti-aliasing and no randomness inside: the same scene and layout give the same pixels, and PNG bytes.
"""
from __future__ import annotations

import io

from PIL import Image, ImageDraw

from .facts import BACKGROUNDS, GLYPH_CELLS, OBJECT_COLORS
from .scenes import BlankScene, EntityScene, Layout, ShapeScene

IMAGE_SIZE = 64
_CELL = IMAGE_SIZE // 2
_BLANK_COLORS = {"black": (0, 0, 0), "white": (255, 255, 255)}


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: int, cy: int, r: int, fill) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    elif shape == "cross":
        w = max(2, r // 2)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _render_shapes(scene: ShapeScene, layout: Layout) -> Image.Image:
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        row, col = divmod(obj.slot, 2)
        dx, dy = layout.offsets[obj.slot]
        radius = round((13 if obj.size == "big" else 7) * layout.scale)
        radius = min(radius, 13)
        cx = col * _CELL + _CELL // 2 + max(-(_CELL // 2 - radius - 1), min(dx, _CELL // 2 - radius - 1))
        cy = row * _CELL + _CELL // 2 + max(-(_CELL // 2 - radius - 1), min(dy, _CELL // 2 - radius - 1))
        _draw_shape(draw, obj.shape, cx, cy, radius, OBJECT_COLORS[obj.color])
    return image


def _render_entity(scene: EntityScene, layout: Layout) -> Image.Image:
    entity = scene.entity
    bg = entity.bg_tint if scene.background == "tint" else BACKGROUNDS[scene.background]
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), bg)
    draw = ImageDraw.Draw(image)
    cell = max(5, round(8 * layout.scale))  # glyph side = GLYPH_CELLS * cell pixels
    side = cell * GLYPH_CELLS
    free = IMAGE_SIZE - side
    dx, dy = layout.offsets[0]
    x0 = max(0, min(free, free // 2 + 2 * dx))
    y0 = max(0, min(free, free // 2 + 2 * dy))
    draw.rectangle((x0 - 1, y0 - 1, x0 + side, y0 + side), outline=(20, 20, 20))
    for i, row in enumerate(entity.pattern):
        for j, on in enumerate(row):
            if on:
                draw.rectangle((x0 + j * cell, y0 + i * cell, x0 + (j + 1) * cell - 1, y0 + (i + 1) * cell - 1),
                               fill=entity.fg)
    return image


def render(scene, layout: Layout) -> Image.Image:
    """The image of `scene` drawn with the nuisance factors of `layout`."""
    if isinstance(scene, ShapeScene):
        return _render_shapes(scene, layout)
    if isinstance(scene, EntityScene):
        return _render_entity(scene, layout)
    if isinstance(scene, BlankScene):
        return Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), _BLANK_COLORS[scene.color])
    raise TypeError(f"cannot render {type(scene).__name__}")


def png_bytes(image: Image.Image) -> bytes:
    """PNG encoding with fixed settings, so equal pixels give equal bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()
