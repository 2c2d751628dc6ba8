"""Render the Mandelbrot set as tiles, one lambdamr task per tile, and save it as a PNG.

    python -m examples.mandelbrot                       # 2400 x 1800, 24 tiles, local backend
    python -m examples.mandelbrot --width 4000 --height 3000 --tiles 64 --backend aws

The driver computes the float64 pixel grid ONCE from the full image's coordinates; each task
gets its tile's slice of that grid, so the tiled image is identical, pixel for pixel, to a
single-process render (``render(..., tiles=1)`` with no executor).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lambdamr.cli.help import HelpFormatter

Window = tuple[float, float, float, float]  # xmin, xmax, ymin, ymax in the complex plane
FULL_SET: Window = (-2.5, 1.0, -1.3125, 1.3125)  # 4:3, like the default image
ESCAPE_RADIUS_SQUARED = 4.0
BLOCK_PIXELS = 16_384  # the working arrays of a block (~1 MB) stay in the CPU caches


@dataclass(frozen=True)
class Tile:
    """A rectangle of pixels: rows ``row0:row1``, columns ``col0:col1``."""

    row0: int
    row1: int
    col0: int
    col1: int


def pixel_grid(width: int, height: int, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """The real parts (one per column) and imaginary parts (one per row) of the pixel centres."""
    xmin, xmax, ymin, ymax = window
    if width < 1 or height < 1:
        raise ValueError(f"image size {width}x{height}: both sides must be at least 1 pixel")
    if not (xmin < xmax and ymin < ymax):
        raise ValueError(f"window {window}: need xmin < xmax and ymin < ymax")
    # Row 0 is the top of the image, so the imaginary axis runs from ymax down to ymin.
    return np.linspace(xmin, xmax, width), np.linspace(ymax, ymin, height)


def escape_counts(re: np.ndarray, im: np.ndarray, max_iter: int) -> np.ndarray:
    """Iterations before z -> z^2 + c escapes |z| > 2, for c = re[col] + i im[row].

    Points that never escape get ``max_iter``. Works through the tile in blocks of pixels
    small enough for the CPU caches, so a pixel costs the same in a big tile as in a small one.
    """
    rows, cols = len(im), len(re)
    cx = np.broadcast_to(re[np.newaxis, :], (rows, cols)).ravel()
    cy = np.broadcast_to(im[:, np.newaxis], (rows, cols)).ravel()
    counts = np.empty(rows * cols, dtype=np.int32)
    for start in range(0, rows * cols, BLOCK_PIXELS):
        stop = start + BLOCK_PIXELS
        counts[start:stop] = escape_block(cx[start:stop], cy[start:stop], max_iter)
    return counts.reshape(rows, cols)


def escape_block(cx: np.ndarray, cy: np.ndarray, max_iter: int) -> np.ndarray:
    """Escape counts of the points cx + i cy, iterating only those still inside.

    Real float64 arithmetic, one numpy operation per step, so that a pixel's value does not
    depend on the array it is computed in (no fused multiply-add): tiles match a whole render.
    """
    counts = np.full(len(cx), max_iter, dtype=np.int32)
    active = np.arange(len(cx))
    zx = np.zeros(len(cx))
    zy = np.zeros(len(cx))
    for iteration in range(max_iter):
        zx2 = zx * zx
        zy2 = zy * zy
        escaped = (zx2 + zy2) > ESCAPE_RADIUS_SQUARED
        if escaped.any():
            counts[active[escaped]] = iteration
            keep = ~escaped
            active, cx, cy, zx, zy = active[keep], cx[keep], cy[keep], zx[keep], zy[keep]
            zx2, zy2 = zx2[keep], zy2[keep]
            if active.size == 0:
                break
        zy = 2.0 * zx * zy + cy
        zx = zx2 - zy2 + cx
    return counts


def render_tile(re: np.ndarray, im: np.ndarray, max_iter: int) -> np.ndarray:
    """One task: the escape counts of one tile (int32, rows x cols)."""
    return escape_counts(re, im, max_iter)


def tile_layout(tiles: int) -> tuple[int, int]:
    """Split ``tiles`` into (rows, columns) of tiles, as close to square as divides exactly."""
    if tiles < 1:
        raise ValueError(f"tiles={tiles}: need at least 1 tile")
    rows = max(r for r in range(1, math.isqrt(tiles) + 1) if tiles % r == 0)
    return rows, tiles // rows


def split_image(width: int, height: int, tiles: int) -> list[Tile]:
    """``tiles`` rectangles that cover a ``width`` x ``height`` image exactly once."""
    tile_rows, tile_cols = tile_layout(tiles)
    if tile_rows > height or tile_cols > width:
        raise ValueError(f"{tiles} tiles do not fit in a {width}x{height} image")
    row_edges = np.linspace(0, height, tile_rows + 1).astype(int)
    col_edges = np.linspace(0, width, tile_cols + 1).astype(int)
    return [
        Tile(int(row_edges[r]), int(row_edges[r + 1]), int(col_edges[c]), int(col_edges[c + 1]))
        for r in range(tile_rows)
        for c in range(tile_cols)
    ]


def render(
    width: int,
    height: int,
    max_iter: int,
    window: Window = FULL_SET,
    tiles: int = 1,
    executor: Any = None,
) -> np.ndarray:
    """Escape counts of the whole image (int32, height x width).

    With an executor (a ``LambdaExecutor``, or any ``concurrent.futures`` executor), each tile
    is one task of a single ``map`` job; without one, tiles are rendered one after the other in
    this process.
    """
    image, _ = render_job(width, height, max_iter, window, tiles, executor)
    return image


def render_job(
    width: int,
    height: int,
    max_iter: int,
    window: Window = FULL_SET,
    tiles: int = 1,
    executor: Any = None,
) -> tuple[np.ndarray, Any]:
    """Like ``render``, also returning the lambdamr job (``None`` without a lambdamr executor)."""
    if max_iter < 1:
        raise ValueError(f"max_iter={max_iter}: need at least 1 iteration")
    re, im = pixel_grid(width, height, window)
    layout = split_image(width, height, tiles)
    re_parts = [re[t.col0 : t.col1] for t in layout]
    im_parts = [im[t.row0 : t.row1] for t in layout]
    if executor is None:
        parts: Any = map(render_tile, re_parts, im_parts, [max_iter] * len(layout))
    else:
        parts = executor.map(render_tile, re_parts, im_parts, [max_iter] * len(layout))
    job = getattr(parts, "job", None)  # any concurrent.futures executor works; lambdamr has a job
    image = np.empty((height, width), dtype=np.int32)
    for tile, part in zip(layout, parts):
        image[tile.row0 : tile.row1, tile.col0 : tile.col1] = part
    return image, job


def to_rgb(counts: np.ndarray, max_iter: int, colormap: str = "twilight_shifted") -> np.ndarray:
    """Colour an escape-count image: points inside the set black, the rest by log count."""
    from matplotlib import colormaps

    shade = np.log1p(counts.astype(np.float64)) / math.log1p(max_iter)
    rgb = colormaps[colormap](shade)[..., :3]
    rgb[counts >= max_iter] = 0.0
    return (rgb * 255).round().astype(np.uint8)


def save_png(path: str, counts: np.ndarray, max_iter: int, colormap: str = "twilight_shifted") -> None:
    """Write the coloured image as a PNG."""
    # matplotlib already draws the benchmark plots and owns the colour maps; its imsave writes
    # the PNG (through pillow, which it depends on), so the example needs no other library.
    from matplotlib import image as mpimg

    mpimg.imsave(path, to_rgb(counts, max_iter, colormap), format="png")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line options."""
    parser = argparse.ArgumentParser(prog="python -m examples.mandelbrot", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--width", type=int, default=2400, help="image width in pixels")
    parser.add_argument("--height", type=int, default=1800, help="image height in pixels")
    parser.add_argument("--iterations", type=int, default=500, help="maximum iterations per pixel")
    parser.add_argument("--tiles", type=int, default=24, help="number of tiles (one task each)")
    parser.add_argument(
        "--window",
        type=float,
        nargs=4,
        default=list(FULL_SET),
        metavar=("XMIN", "XMAX", "YMIN", "YMAX"),
        help="the rectangle of the complex plane to draw",
    )
    parser.add_argument("--backend", choices=("local", "aws"), default="local", help="where the tasks run")
    parser.add_argument("--memory", type=int, default=1024, help="task memory in MB (Lambda's size)")
    parser.add_argument("--colormap", default="twilight_shifted", help="a matplotlib colour map name")
    parser.add_argument("--out", default="mandelbrot.png", help="the PNG file to write")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, executor: Any) -> np.ndarray:
    """Render with ``executor``, save the PNG, print the job summary; return the counts."""
    started = time.perf_counter()
    counts, job = render_job(args.width, args.height, args.iterations, tuple(args.window), args.tiles, executor)
    save_png(args.out, counts, args.iterations, args.colormap)
    elapsed = time.perf_counter() - started
    inside = float((counts >= args.iterations).mean())
    print(
        f"mandelbrot {args.width}x{args.height}, {args.iterations} iterations, {args.tiles} tiles: "
        f"{elapsed:.2f} s end to end (workers' start-up, the job, writing the PNG), {inside:.1%} of pixels "
        f"inside the set -> {args.out}"
    )
    if job is not None:
        print(job.summary())
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    args = parse_args(argv)
    from lambdamr import LambdaExecutor

    with LambdaExecutor(backend=args.backend, memory_mb=args.memory) as executor:
        run(args, executor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
