"""The built-in generated dataset: captioned synthetic images drawn with PIL.

Distribution (every draw from ``numpy.random.default_rng([seed, split])``):

- an image holds one object (probability ``1 - two_object_prob``) or two objects in
  different cells of a 3×3 grid;
- an object has a colour (7: red, green, blue, yellow, purple, orange, white), a shape
  (5: circle, square, triangle, cross, star), a size (small, large: about 28% and 46% of
  the image side) and a position (the 9 grid cells: "top left" ... "bottom right");
- rendering is jittered: position ±1/12 of the side inside the cell, size ±10%, each
  colour channel ±25, background grey level uniform in [0, 60] plus Gaussian pixel
  noise (σ = 8), so no two images are equal;
- each image gets ``captions_per_image`` captions from different templates (and, for
  two objects, either order), e.g. "a small red circle at the top left",
  "top left: a small red circle", "a red circle at the top left; it is small".

630 single-object descriptions and 176,400 two-object ones exist, so the validation
split is not a lookup of training images. The group id of an image is its description
(the set of objects): images that read the same are positives of each other, and
retrieval counts any caption (image) of the right group as a hit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from losskit.train.data.base import CaptionedImages, TensorImages

__all__ = ["COLOURS", "POSITIONS", "SHAPES", "SIZES", "SceneObject", "generate_split"]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 175, 60),
    "blue": (45, 95, 240),
    "yellow": (235, 220, 40),
    "purple": (150, 60, 215),
    "orange": (245, 140, 25),
    "white": (240, 240, 240),
}
SHAPES = ("circle", "square", "triangle", "cross", "star")
#: object diameter as a fraction of the image side
SIZES: dict[str, float] = {"small": 0.28, "large": 0.46}
POSITIONS = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip

_SINGLE_TEMPLATES = (
    "a {size} {colour} {shape} {where}",
    "{pos}: a {size} {colour} {shape}",
    "a {colour} {shape} {where}; it is {size}",
    "one {size} {shape}, coloured {colour}, {where}",
)
_PAIR_TEMPLATES = (
    "a {a} {where_a} and a {b} {where_b}",
    "{a} {where_a}, {b} {where_b}",
    "{where_a} a {a}, {where_b} a {b}",
)


@dataclass(frozen=True, order=True)
class SceneObject:
    """One drawn object; the tuple of objects of an image is its description."""

    colour: str
    shape: str
    size: str
    position: str

    @property
    def where(self) -> str:
        return "in the center" if self.position == "center" else f"at the {self.position}"


def _fix_articles(text: str) -> str:
    """"a orange" -> "an orange"."""
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)


def _single_caption(obj: SceneObject, template: str) -> str:
    return _fix_articles(
        template.format(size=obj.size, colour=obj.colour, shape=obj.shape, where=obj.where, pos=obj.position)
    )


def _pair_caption(a: SceneObject, b: SceneObject, template: str) -> str:
    return _fix_articles(
        template.format(
            a=f"{a.size} {a.colour} {a.shape}", where_a=a.where, b=f"{b.size} {b.colour} {b.shape}", where_b=b.where
        )
    )


def _draw(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, d: float, fill: tuple[int, int, int]) -> None:
    r = d / 2
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        s = r * 0.85
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=fill)
    elif shape == "cross":
        t = r / 3
        draw.rectangle((cx - r, cy - t, cx + r, cy + t), fill=fill)
        draw.rectangle((cx - t, cy - r, cx + t, cy + r), fill=fill)
    else:  # star: 5 points, inner radius 0.45 r
        angles = np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        draw.polygon([(cx + q * np.cos(a), cy - q * np.sin(a)) for q, a in zip(radii, angles)], fill=fill)


def _sample_objects(rng: np.random.Generator, two_object_prob: float) -> tuple[SceneObject, ...]:
    count = 2 if rng.random() < two_object_prob else 1
    cells = rng.choice(len(POSITIONS), size=count, replace=False)
    objects = [
        SceneObject(
            colour=list(COLOURS)[rng.integers(len(COLOURS))],
            shape=SHAPES[rng.integers(len(SHAPES))],
            size=list(SIZES)[rng.integers(len(SIZES))],
            position=POSITIONS[cell],
        )
        for cell in cells
    ]
    return tuple(sorted(objects))


def _render(objects: tuple[SceneObject, ...], image_size: int, rng: np.random.Generator) -> np.ndarray:
    """``uint8 [H, W, 3]`` picture of ``objects`` on a grey background (noise is added later, in bulk)."""
    grey = int(rng.integers(0, 61))
    image = Image.new("RGB", (image_size, image_size), (grey, grey, grey))
    draw = ImageDraw.Draw(image)
    cell = image_size / 3
    for obj in objects:
        row, col = divmod(POSITIONS.index(obj.position), 3)
        cx = (col + 0.5) * cell + rng.uniform(-1, 1) * image_size / 12
        cy = (row + 0.5) * cell + rng.uniform(-1, 1) * image_size / 12
        d = SIZES[obj.size] * image_size * rng.uniform(0.9, 1.1)
        jitter = rng.integers(-25, 26, size=3)
        fill = tuple(min(max(int(c + j), 0), 255) for c, j in zip(COLOURS[obj.colour], jitter))
        _draw(draw, obj.shape, cx, cy, d, fill)  # type: ignore[arg-type]
    return np.asarray(image)


def _captions(objects: tuple[SceneObject, ...], count: int, rng: np.random.Generator) -> list[str]:
    if len(objects) == 1:
        templates = rng.choice(len(_SINGLE_TEMPLATES), size=min(count, len(_SINGLE_TEMPLATES)), replace=False)
        return [_single_caption(objects[0], _SINGLE_TEMPLATES[t]) for t in templates]
    out = []
    for t in rng.choice(len(_PAIR_TEMPLATES), size=min(count, len(_PAIR_TEMPLATES)), replace=False):
        a, b = objects if rng.random() < 0.5 else objects[::-1]
        out.append(_pair_caption(a, b, _PAIR_TEMPLATES[t]))
    return out


def generate_split(
    num_images: int,
    *,
    seed: int,
    split: int,
    image_size: int = 32,
    captions_per_image: int = 3,
    two_object_prob: float = 0.3,
) -> CaptionedImages:
    """Draw one split of the generated dataset (deterministic in ``seed`` and ``split``).

    Args:
        num_images: images in the split.
        seed: dataset seed; ``split`` (0 train, 1 validation) selects an independent stream.
        image_size: side of the square images in pixels.
        captions_per_image: captions per image (at most 4 for one object, 3 for two).
        two_object_prob: probability that an image holds two objects.

    Returns:
        a :class:`CaptionedImages` with pixels ``uint8 [num_images, 3, S, S]`` in memory.
    """
    rng = np.random.default_rng([seed, split])
    pixels = np.empty((num_images, image_size, image_size, 3), dtype=np.uint8)
    captions: list[str] = []
    caption_image: list[int] = []
    groups: dict[tuple[SceneObject, ...], int] = {}
    image_group = []
    for i in range(num_images):
        objects = _sample_objects(rng, two_object_prob)
        pixels[i] = _render(objects, image_size, rng)
        texts = _captions(objects, captions_per_image, rng)
        captions.extend(texts)
        caption_image.extend([i] * len(texts))
        image_group.append(groups.setdefault(objects, len(groups)))
    noise = rng.standard_normal(size=pixels.shape, dtype=np.float32) * 8.0
    pixels = np.clip(pixels + noise, 0, 255).astype(np.uint8)
    return CaptionedImages(
        images=TensorImages(torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()),  # [N, 3, S, S]
        captions=captions,
        caption_image=torch.tensor(caption_image, dtype=torch.long),
        image_group=torch.tensor(image_group, dtype=torch.long),
        skipped=[],
    )
