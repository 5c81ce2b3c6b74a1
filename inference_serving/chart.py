"""Minimal line charts rendered with Pillow: title, axes with round ticks, grid, legend.

A run's plots must cost a fraction of the run itself; Pillow imports and draws a chart in
milliseconds where a general plotting library takes about a second to import and lay out.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 800, 450
SCALE = 2  # drawn at twice the size, then downsampled: anti-aliased lines and text
LEFT, RIGHT, TOP, BOTTOM = 80, 20, 40, 55
COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
          (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
GRID = (225, 225, 225)
INK = (30, 30, 30)


def _palette() -> Image.Image:
    """Every colour a downsampled chart holds: each ink over white at 0, 1/4, … 4/4 coverage
    (what a SCALE × SCALE box average of a hard edge gives)."""
    levels = SCALE * SCALE
    colours = dict.fromkeys(
        tuple(round(255 + (v - 255) * k / levels) for v in ink)
        for ink in (INK, GRID, *COLORS) for k in range(levels + 1))
    image = Image.new("P", (1, 1))
    image.putpalette([v for colour in colours for v in colour])
    return image


PALETTE = _palette()


@dataclass(slots=True)
class Series:
    """One line: points, legend label, colour index, dashed, drawn as steps (a CDF)."""

    xs: Sequence[float]
    ys: Sequence[float]
    label: str = ""
    color: int = 0
    dashed: bool = False
    steps: bool = False


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        low, high = 0.0, 1.0
    if high - low < 1e-12:
        low, high = low - 1, high + 1
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [k * step for k in range(first, last + 1)]


def _label(value: float) -> str:
    text = f"{value:.6g}"
    return "0" if text in ("-0", "0") else text


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size * SCALE)


def _dashes(points: list[tuple[float, float]], on: float, off: float) -> list[list[tuple]]:
    """Split a polyline into dash pieces of `on` pixels separated by `off`."""
    pieces: list[list[tuple]] = []
    current: list[tuple] = [points[0]] if points else []
    drawing, left = True, on
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        length = math.hypot(x1 - x0, y1 - y0)
        done = 0.0
        while length - done > left:
            done += left
            t = done / length
            point = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)
            if drawing:
                current.append(point)
                pieces.append(current)
            else:
                current = [point]
            drawing, left = not drawing, off if drawing else on
        left -= length - done
        if drawing:
            current.append((x1, y1))
    if drawing and len(current) > 1:
        pieces.append(current)
    return pieces


def line_chart(title: str, xlabel: str, ylabel: str, series: Sequence[Series]) -> bytes:
    """The chart as PNG bytes (equal inputs give equal bytes)."""
    s = SCALE
    image = Image.new("RGB", (WIDTH * s, HEIGHT * s), "white")
    draw = ImageDraw.Draw(image)
    xs = [x for line in series for x in line.xs]
    ys = [y for line in series for y in line.ys]
    xticks = nice_ticks(min(xs, default=0.0), max(xs, default=1.0))
    yticks = nice_ticks(min(ys, default=0.0), max(ys, default=1.0))
    x0, x1, y0, y1 = xticks[0], xticks[-1], yticks[0], yticks[-1]
    left, right, top, bottom = LEFT * s, (WIDTH - RIGHT) * s, TOP * s, (HEIGHT - BOTTOM) * s

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (right - left),
                bottom - (y - y0) / (y1 - y0) * (bottom - top))

    small, large = _font(12), _font(15)
    for x in xticks:
        gx = px(x, y0)[0]
        draw.line([(gx, top), (gx, bottom)], fill=GRID, width=s)
        draw.text((gx, bottom + 6 * s), _label(x), font=small, fill=INK, anchor="ma")
    for y in yticks:
        gy = px(x0, y)[1]
        draw.line([(left, gy), (right, gy)], fill=GRID, width=s)
        draw.text((left - 6 * s, gy), _label(y), font=small, fill=INK, anchor="rm")
    draw.rectangle([left, top, right, bottom], outline=INK, width=s)
    for line in series:
        points = [px(x, y) for x, y in zip(line.xs, line.ys, strict=True)]
        if line.steps:
            points = [p for a, b in zip(points, points[1:], strict=False)
                      for p in (a, (b[0], a[1]))] + points[-1:]
        color = COLORS[line.color % len(COLORS)]
        pieces = _dashes(points, 8 * s, 5 * s) if line.dashed else [points]
        for piece in pieces:
            if len(piece) > 1:
                draw.line(piece, fill=color, width=2 * s, joint="curve")
            elif piece:
                draw.point(piece, fill=color)
    draw.text(((left + right) / 2, 10 * s), title, font=large, fill=INK, anchor="ma")
    draw.text(((left + right) / 2, (HEIGHT - 8) * s), xlabel, font=small, fill=INK,
              anchor="md")
    text = Image.new("RGB", (int(draw.textlength(ylabel, font=small)) + 4 * s, 18 * s),
                     "white")
    ImageDraw.Draw(text).text((2 * s, 0), ylabel, font=small, fill=INK)
    rotated = text.rotate(90, expand=True)
    image.paste(rotated, (8 * s, int((top + bottom - rotated.height) / 2)))
    labelled = [line for line in series if line.label]
    if labelled:
        row = 18 * s
        width = max(int(draw.textlength(line.label, font=small)) for line in labelled)
        box = [left + 10 * s, top + 10 * s, left + (44 + 10) * s + width,
               top + 14 * s + row * len(labelled)]
        draw.rectangle(box, fill="white", outline=GRID, width=s)
        for k, line in enumerate(labelled):
            y = box[1] + 4 * s + row * k + row / 2
            sample = [(box[0] + 6 * s, y), (box[0] + 34 * s, y)]
            color = COLORS[line.color % len(COLORS)]
            for piece in (_dashes(sample, 8 * s, 5 * s) if line.dashed else [sample]):
                draw.line(piece, fill=color, width=2 * s)
            draw.text((box[0] + 40 * s, y), line.label, font=small, fill=INK, anchor="lm")
    buffer = io.BytesIO()
    # A 2x2 box average is the cheapest anti-aliasing. Mapping it onto the chart's own palette
    # keeps every colour (a generic quantizer drops the faint grid) and makes the PNG encoding,
    # most of a chart's cost, four times cheaper; level 1 compresses a flat chart well.
    image.reduce(SCALE).quantize(palette=PALETTE, dither=Image.Dither.NONE).save(
        buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
