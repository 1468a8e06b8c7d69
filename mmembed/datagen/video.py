"""Synthetic video-classification corpus: short clips of shapes moving in ten distinct ways."""

from __future__ import annotations

import argparse
import colorsys
import csv
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, ImageDraw

from mmembed.data.splits import SPLITS
from mmembed.datagen import corpus_folder

# Bump when the rendering changes, so ensure_video_corpus rebuilds corpora made by older code.
GENERATOR_VERSION = 2

CLASS_NAMES = (
    "moving left",
    "moving right",
    "moving up",
    "moving down",
    "rotating clockwise",
    "rotating counterclockwise",
    "growing",
    "shrinking",
    "bouncing",
    "standing still",
)
SHAPES = ("circle", "square", "triangle", "star")

DEFAULT_SPEC: dict[str, Any] = dict(
    seed=0,
    videos_per_class=100,
    num_frames=16,
    size=64,
    fps=8,
    split_fractions=(0.7, 0.15, 0.15),
    max_distractors=2,
    noise_std=5.0,
    crf=20,
)

# Shapes are drawn this many times larger, then box-filtered down, so slow sub-pixel motion
# still changes the pixels (anti-aliasing).
SUPERSAMPLE = 4


@dataclass
class Track:
    """One object's appearance and its per-frame centre, radius and angle (pixels, degrees)."""

    shape: str
    colour: np.ndarray
    x: np.ndarray
    y: np.ndarray
    radius: np.ndarray
    angle: np.ndarray


def class_folder(name: str) -> str:
    return name.replace(" ", "_")


# --- motions -----------------------------------------------------------------------------------
# Motions other than rotation describe the whole clip (total travel, growth, bounces) rather
# than a per-frame speed, so the classes stay recognisable at any num_frames. Size ranges are
# shared between classes so one frame does not give the class away.


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    hue, saturation, value = rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.6, 1.0)
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value), dtype=np.float32) * 255


def _static_radius(rng: np.random.Generator, size: int) -> float:
    return rng.uniform(0.09, 0.16) * size


def _linear(dx: int, dy: int) -> Callable:
    def motion(rng: np.random.Generator, t: np.ndarray, size: int):
        radius = _static_radius(rng, size)
        travel = rng.uniform(0.4, 0.65) * size
        room = size - 2 * radius - travel
        along = radius + rng.uniform(0, room) + travel * t
        if dx + dy < 0:  # moving left or up: start at the far end
            along = size - along
        across = np.full_like(t, rng.uniform(radius, size - radius))
        x, y = (along, across) if dx else (across, along)
        return x, y, np.full_like(t, radius), np.full_like(t, rng.uniform(0, 360))

    return motion


def _static_position(rng: np.random.Generator, t: np.ndarray, size: int, radius: float):
    return (
        np.full_like(t, rng.uniform(radius, size - radius)),
        np.full_like(t, rng.uniform(radius, size - radius)),
    )


def _rotating(direction: int) -> Callable:
    # Image y points down, so a clockwise turn on screen is an increasing angle. Unlike the
    # other motions the turn is set per frame: a star repeats every 72 degrees, so past 36
    # degrees between the frames a model sees its body seems to turn the other way (the
    # wagon-wheel effect). At most 17 degrees per frame stays below that with frame stride 2.
    def motion(rng: np.random.Generator, t: np.ndarray, size: int):
        radius = _static_radius(rng, size)
        x, y = _static_position(rng, t, size, radius)
        frames = np.arange(len(t))
        angle = rng.uniform(0, 360) + direction * rng.uniform(10, 17) * frames
        return x, y, np.full_like(t, radius), angle

    return motion


def _scaling(grow: bool) -> Callable:
    def motion(rng: np.random.Generator, t: np.ndarray, size: int):
        small, large = rng.uniform(0.05, 0.07) * size, rng.uniform(0.17, 0.21) * size
        x, y = _static_position(rng, t, size, large)
        radius = small + (large - small) * (t if grow else 1 - t)
        return x, y, radius, np.full_like(t, rng.uniform(0, 360))

    return motion


def _bouncing(rng: np.random.Generator, t: np.ndarray, size: int):
    radius = _static_radius(rng, size)
    height = rng.uniform(0.3, 0.5) * size
    floor = rng.uniform(radius + height, size - radius)
    bounces = rng.uniform(1.5, 2.5)
    y = floor - height * np.abs(np.sin(math.pi * (bounces * t + rng.random())))
    x = np.full_like(t, rng.uniform(radius, size - radius))
    return x, y, np.full_like(t, radius), np.full_like(t, rng.uniform(0, 360))


def _standing_still(rng: np.random.Generator, t: np.ndarray, size: int):
    radius = _static_radius(rng, size)
    x, y = _static_position(rng, t, size, radius)
    return x, y, np.full_like(t, radius), np.full_like(t, rng.uniform(0, 360))


MOTIONS: dict[str, Callable] = {
    "moving left": _linear(-1, 0),
    "moving right": _linear(1, 0),
    "moving up": _linear(0, -1),
    "moving down": _linear(0, 1),
    "rotating clockwise": _rotating(1),
    "rotating counterclockwise": _rotating(-1),
    "growing": _scaling(grow=True),
    "shrinking": _scaling(grow=False),
    "bouncing": _bouncing,
    "standing still": _standing_still,
}


def _target_track(class_name: str, rng: np.random.Generator, num_frames: int, size: int) -> Track:
    t = np.linspace(0.0, 1.0, num_frames)
    x, y, radius, angle = MOTIONS[class_name](rng, t, size)
    return Track(str(rng.choice(SHAPES)), _random_colour(rng), x, y, radius, angle)


def _distractor_track(rng: np.random.Generator, num_frames: int, size: int) -> Track:
    """A small object on a jittery random walk: it moves, but in no consistent direction."""
    radius = rng.uniform(0.035, 0.06) * size
    position = rng.uniform(radius, size - radius, 2)
    velocity = rng.normal(0, 0.02 * size, 2)
    positions = []
    for _ in range(num_frames):
        positions.append(position.copy())
        velocity = 0.6 * velocity + rng.normal(0, 0.015 * size, 2)
        position = position + velocity
        for axis in range(2):  # reflect off the borders
            if not radius <= position[axis] <= size - radius:
                velocity[axis] = -velocity[axis]
                position[axis] = np.clip(position[axis], radius, size - radius)
    positions = np.array(positions)
    angle = rng.uniform(0, 360) + np.cumsum(rng.normal(0, 25, num_frames))
    return Track(
        str(rng.choice(SHAPES)),
        _random_colour(rng),
        positions[:, 0],
        positions[:, 1],
        np.full(num_frames, radius),
        angle,
    )


# --- rendering ---------------------------------------------------------------------------------


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Muted low-frequency colour noise, sometimes with faint stripes: texture, no objects."""
    cells = int(rng.integers(3, 9))
    grid = rng.uniform(0, 255, (cells, cells, 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(grid).resize((size, size), Image.BICUBIC), np.float32)
    base = rng.uniform(60, 190, 3).astype(np.float32)
    image = base + (smooth - 127.5) * rng.uniform(0.1, 0.3)
    if rng.random() < 0.5:
        angle, period = rng.uniform(0, math.pi), rng.uniform(4, 12)
        yy, xx = np.mgrid[0:size, 0:size]
        stripes = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
        image += stripes[..., None] * rng.uniform(4, 10)
    return image


def _outline(shape: str, cx: float, cy: float, radius: float, angle: float) -> list[tuple]:
    if shape == "star":
        radii = [radius if k % 2 == 0 else 0.45 * radius for k in range(10)]
    else:
        corners = {"circle": 48, "square": 4, "triangle": 3}[shape]
        radii = [radius] * corners
    step = 360 / len(radii)
    points = []
    for k, r in enumerate(radii):
        theta = math.radians(angle + k * step)
        points.append((cx + r * math.cos(theta), cy + r * math.sin(theta)))
    return points


def _coverage(box: tuple[int, int], draw: Callable[[ImageDraw.ImageDraw], None]) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of whatever ``draw`` paints on a supersampled canvas."""
    width, height = box
    canvas = Image.new("L", (width * SUPERSAMPLE, height * SUPERSAMPLE), 0)
    draw(ImageDraw.Draw(canvas))
    small = canvas.resize(box, Image.BOX)
    return np.asarray(small, np.float32)[..., None] / 255.0


def _paint(image: np.ndarray, track: Track, frame: int, size: int) -> None:
    x, y, radius = track.x[frame], track.y[frame], track.radius[frame]
    # Only the pixels around the object are drawn: full-frame canvases made rendering 3x slower.
    reach = radius + 2
    left, top = max(int(x - reach), 0), max(int(y - reach), 0)
    right, bottom = min(int(x + reach) + 2, size), min(int(y + reach) + 2, size)
    if right <= left or bottom <= top:
        return
    s = SUPERSAMPLE
    cx, cy, r, angle = (x - left) * s, (y - top) * s, radius * s, track.angle[frame]
    box = (right - left, bottom - top)
    region = image[top:bottom, left:right]  # a view: painting it paints the frame
    body = _coverage(box, lambda d: d.polygon(_outline(track.shape, cx, cy, r, angle), 255))
    region *= 1 - body
    region += body * track.colour
    # An off-centre marker makes every shape's orientation visible (a plain circle would look
    # the same whether it rotates or not).
    theta = math.radians(angle)
    mx, my = cx + 0.55 * r * math.cos(theta), cy + 0.55 * r * math.sin(theta)
    mr = max(0.35 * r, 1.2 * s)
    marker = _coverage(box, lambda d: d.ellipse((mx - mr, my - mr, mx + mr, my + mr), 255))
    contrast = 20.0 if track.colour.mean() > 110 else 235.0
    region *= 1 - marker
    region += marker * contrast


def render_video(
    class_name: str,
    rng: np.random.Generator,
    num_frames: int,
    size: int,
    max_distractors: int,
    noise_std: float,
) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of one clip of ``class_name``."""
    target = _target_track(class_name, rng, num_frames, size)
    tracks = [
        _distractor_track(rng, num_frames, size)
        for _ in range(rng.integers(0, max_distractors + 1))
    ]
    # Distractors pass in front of the target as often as behind it.
    tracks.insert(int(rng.integers(0, len(tracks) + 1)), target)
    background = _background(rng, size)
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for index in range(num_frames):
        image = background.copy()
        for track in tracks:
            _paint(image, track, index, size)
        image += rng.normal(0, noise_std, image.shape)
        frames[index] = np.clip(image, 0, 255).round().astype(np.uint8)
    return frames


def write_mp4(path: Path, frames: np.ndarray, fps: int, crf: int = 20) -> None:
    """H.264 (yuv420p) mp4; one encoder thread so the bytes are identical run to run."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        # "veryfast" encodes 3x faster than the default preset; files stay a few kB.
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        stream.codec_context.thread_count = 1
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


# --- corpus ------------------------------------------------------------------------------------


def _render_one(job: tuple) -> None:
    path, class_name, seed, class_seed, video_index, spec = job
    rng = np.random.default_rng([seed, class_seed, video_index])
    frames = render_video(
        class_name,
        rng,
        spec["num_frames"],
        spec["size"],
        spec["max_distractors"],
        spec["noise_std"],
    )
    write_mp4(path, frames, spec["fps"], spec["crf"])


def _normalized_spec(**spec: Any) -> dict[str, Any]:
    unknown = set(spec) - set(DEFAULT_SPEC) - {"classes"}
    if unknown:
        raise TypeError(f"unknown video corpus option(s): {sorted(unknown)}")
    full = {**DEFAULT_SPEC, "classes": list(CLASS_NAMES), **spec}
    full["split_fractions"] = [float(f) for f in full["split_fractions"]]
    full["classes"] = list(full["classes"])
    bad = [c for c in full["classes"] if c not in MOTIONS]
    if bad:
        raise ValueError(f"unknown video class(es) {bad}; choose from {list(CLASS_NAMES)}")
    if full["size"] % 2:
        raise ValueError(f"size must be even for H.264 yuv420p, got {full['size']}")
    full["version"] = GENERATOR_VERSION
    return full


def build_video_corpus(
    out_dir: str | os.PathLike,
    *,
    seed: int = DEFAULT_SPEC["seed"],
    videos_per_class: int = DEFAULT_SPEC["videos_per_class"],
    num_frames: int = DEFAULT_SPEC["num_frames"],
    size: int = DEFAULT_SPEC["size"],
    fps: int = DEFAULT_SPEC["fps"],
    split_fractions: Sequence[float] = DEFAULT_SPEC["split_fractions"],
    max_distractors: int = DEFAULT_SPEC["max_distractors"],
    noise_std: float = DEFAULT_SPEC["noise_std"],
    crf: int = DEFAULT_SPEC["crf"],
    classes: Sequence[str] = CLASS_NAMES,
    workers: int = 1,
) -> Path:
    """Render the corpus into ``out_dir`` (replacing it) and return ``out_dir``.

    Layout: ``videos/<class_with_underscores>/<id>.mp4``, ``{train,validation,test}.csv`` with
    ``path,label`` rows (paths relative to ``out_dir``), ``classes.txt`` and ``corpus.json``
    (spec and counts). Every video has its own random stream seeded by (seed, class, id), so
    the output is identical for the same arguments, whatever ``workers`` is. The corpus is
    written to a temporary sibling folder and renamed into place at the end, so an interrupted
    run never leaves a half-written corpus behind.
    """
    spec = _normalized_spec(
        seed=seed,
        videos_per_class=videos_per_class,
        num_frames=num_frames,
        size=size,
        fps=fps,
        split_fractions=split_fractions,
        max_distractors=max_distractors,
        noise_std=noise_std,
        crf=crf,
        classes=classes,
    )
    out_dir = Path(out_dir)
    started = time.perf_counter()
    rows: dict[str, list[tuple[str, str]]] = {split: [] for split in SPLITS}
    sizes = corpus_folder.split_sizes(videos_per_class, spec["split_fractions"])
    if sizes[0] < 1:
        raise ValueError(
            f"split_fractions {tuple(spec['split_fractions'])} leave no training videos out of "
            f"{videos_per_class} per class"
        )
    split_of = [split for split, n in zip(SPLITS, sizes, strict=True) for _ in range(n)]
    with corpus_folder.staging(out_dir, __name__) as staging:
        jobs = []
        for class_name in spec["classes"]:
            # Seeding by the class's place in CLASS_NAMES (not in `classes`) keeps each video
            # the same whichever subset of classes is built.
            class_seed = CLASS_NAMES.index(class_name)
            (staging / "videos" / class_folder(class_name)).mkdir(parents=True)
            for video_index in range(videos_per_class):
                relative = f"videos/{class_folder(class_name)}/{video_index:04d}.mp4"
                rows[split_of[video_index]].append((relative, class_name))
                jobs.append((staging / relative, class_name, seed, class_seed, video_index, spec))
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                list(pool.map(_render_one, jobs, chunksize=16))
        else:
            for job in jobs:
                _render_one(job)
        for split, split_rows in rows.items():
            with (staging / f"{split}.csv").open("w", newline="", encoding="utf-8") as file:
                writer = csv.writer(file)
                writer.writerow(["path", "label"])
                writer.writerows(split_rows)
        (staging / "classes.txt").write_text("\n".join(spec["classes"]) + "\n", encoding="utf-8")
        corpus_folder.write_info(
            staging,
            __name__,
            spec,
            {split: {"videos": len(split_rows)} for split, split_rows in rows.items()},
            seconds=round(time.perf_counter() - started, 2),
        )
    return out_dir


def read_corpus_info(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``corpus.json`` of a generated video corpus, or None if there is none."""
    return corpus_folder.read_corpus_info(out_dir, __name__)


def ensure_video_corpus(out_dir: str | os.PathLike, **spec: Any) -> Path:
    """Build the corpus unless ``out_dir`` already holds one made with the same spec."""
    wanted = _normalized_spec(**{k: v for k, v in spec.items() if k != "workers"})
    if corpus_folder.is_current(out_dir, __name__, wanted):
        return Path(out_dir)
    return build_video_corpus(out_dir, **spec)


# --- CLI ---------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `mmembed-data video` (the CLI adds --out, default data/generated/video)."""
    parser.add_argument("--seed", type=int, default=DEFAULT_SPEC["seed"])
    parser.add_argument(
        "--videos-per-class",
        type=int,
        default=DEFAULT_SPEC["videos_per_class"],
        help="videos per class over all splits (default: %(default)s)",
    )
    parser.add_argument("--num-frames", type=int, default=DEFAULT_SPEC["num_frames"])
    parser.add_argument(
        "--size", type=int, default=DEFAULT_SPEC["size"], help="frame side in pixels"
    )
    parser.add_argument("--fps", type=int, default=DEFAULT_SPEC["fps"])
    parser.add_argument("--max-distractors", type=int, default=DEFAULT_SPEC["max_distractors"])
    parser.add_argument("--noise-std", type=float, default=DEFAULT_SPEC["noise_std"])
    parser.add_argument("--workers", type=int, default=1, help="rendering processes")
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if an identical corpus is there"
    )


def run(args: argparse.Namespace) -> Path:
    spec = dict(
        seed=args.seed,
        videos_per_class=args.videos_per_class,
        num_frames=args.num_frames,
        size=args.size,
        fps=args.fps,
        max_distractors=args.max_distractors,
        noise_std=args.noise_std,
        workers=args.workers,
    )
    build = build_video_corpus if args.force else ensure_video_corpus
    return build(args.out, **spec)
