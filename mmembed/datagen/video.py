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
OOD_SHAPES = ("hexagon", "cross", "ellipse", "rhombus")

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
    style="default",
    ood_test_videos_per_class=10,
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


@dataclass(frozen=True)
class Style:
    """How a corpus's videos look: the target and distractor shapes, their sizes (ranges of
    the radius as a fraction of the frame side) and the background texture."""

    shapes: tuple[str, ...]
    # Targets that keep their size, and the start/end sizes of growing or shrinking ones.
    static_radius: tuple[float, float]
    small_radius: tuple[float, float]
    large_radius: tuple[float, float]
    distractor_radius: tuple[float, float]
    background: Callable[[np.random.Generator, int], np.ndarray]


def class_folder(name: str) -> str:
    return name.replace(" ", "_")


# --- motions -----------------------------------------------------------------------------------
# Motions other than rotation describe the whole clip (total travel, growth, bounces) rather
# than a per-frame speed, so the classes stay recognisable at any num_frames. Size ranges are
# shared between classes so one frame does not give the class away.


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    hue, saturation, value = rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.6, 1.0)
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value), dtype=np.float32) * 255


def _static_radius(rng: np.random.Generator, size: int, style: Style) -> float:
    return rng.uniform(*style.static_radius) * size


def _linear(dx: int, dy: int) -> Callable:
    def motion(rng: np.random.Generator, t: np.ndarray, size: int, style: Style):
        radius = _static_radius(rng, size, style)
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
    def motion(rng: np.random.Generator, t: np.ndarray, size: int, style: Style):
        radius = _static_radius(rng, size, style)
        x, y = _static_position(rng, t, size, radius)
        frames = np.arange(len(t))
        angle = rng.uniform(0, 360) + direction * rng.uniform(10, 17) * frames
        return x, y, np.full_like(t, radius), angle

    return motion


def _scaling(grow: bool) -> Callable:
    def motion(rng: np.random.Generator, t: np.ndarray, size: int, style: Style):
        small = rng.uniform(*style.small_radius) * size
        large = rng.uniform(*style.large_radius) * size
        x, y = _static_position(rng, t, size, large)
        radius = small + (large - small) * (t if grow else 1 - t)
        return x, y, radius, np.full_like(t, rng.uniform(0, 360))

    return motion


def _bouncing(rng: np.random.Generator, t: np.ndarray, size: int, style: Style):
    radius = _static_radius(rng, size, style)
    height = rng.uniform(0.3, 0.5) * size
    floor = rng.uniform(radius + height, size - radius)
    bounces = rng.uniform(1.5, 2.5)
    y = floor - height * np.abs(np.sin(math.pi * (bounces * t + rng.random())))
    x = np.full_like(t, rng.uniform(radius, size - radius))
    return x, y, np.full_like(t, radius), np.full_like(t, rng.uniform(0, 360))


def _standing_still(rng: np.random.Generator, t: np.ndarray, size: int, style: Style):
    radius = _static_radius(rng, size, style)
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


def _target_track(
    class_name: str, rng: np.random.Generator, num_frames: int, size: int, style: Style
) -> Track:
    t = np.linspace(0.0, 1.0, num_frames)
    x, y, radius, angle = MOTIONS[class_name](rng, t, size, style)
    return Track(str(rng.choice(style.shapes)), _random_colour(rng), x, y, radius, angle)


def _distractor_track(rng: np.random.Generator, num_frames: int, size: int, style: Style) -> Track:
    """A small object on a jittery random walk: it moves, but in no consistent direction."""
    radius = rng.uniform(*style.distractor_radius) * size
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
        str(rng.choice(style.shapes)),
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


def _checkerboard(rng: np.random.Generator, size: int) -> np.ndarray:
    """Two muted colours in a rotated checkerboard of 3-8 pixel cells: sharp, high-frequency
    texture where the default backgrounds are smooth."""
    cell, angle = rng.uniform(3, 8), rng.uniform(0, math.pi / 2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    u = (xx * math.cos(angle) + yy * math.sin(angle)) / cell
    v = (yy * math.cos(angle) - xx * math.sin(angle)) / cell
    checks = ((np.floor(u) + np.floor(v)) % 2)[..., None]
    base = rng.uniform(60, 190, 3).astype(np.float32)
    contrast = rng.uniform(20, 50) * rng.choice([-1.0, 1.0], 3).astype(np.float32)
    return base + (checks - 0.5) * contrast


# Unit outlines (radius 1, angle 0) of the OOD shapes, rotated and scaled when drawn.
_UNIT_OUTLINES = {
    "hexagon": [(math.cos(k * math.pi / 3), math.sin(k * math.pi / 3)) for k in range(6)],
    "cross": [
        (x * sx, y * sy)
        for sx, sy in ((1, 1), (-1, 1), (-1, -1), (1, -1))
        for x, y in ((1, 0.3), (0.3, 0.3), (0.3, 1))
    ],
    "ellipse": [(math.cos(k * math.pi / 24), 0.55 * math.sin(k * math.pi / 24)) for k in range(48)],
    "rhombus": [(1, 0), (0, 0.5), (-1, 0), (0, -0.5)],
}


def _outline(shape: str, cx: float, cy: float, radius: float, angle: float) -> list[tuple]:
    if shape in _UNIT_OUTLINES:
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        return [
            (cx + radius * (x * c - y * s), cy + radius * (x * s + y * c))
            for x, y in _UNIT_OUTLINES[shape]
        ]
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
    style: str = "default",
) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of one clip of ``class_name`` in ``style`` (see STYLES)."""
    look = STYLES[style]
    target = _target_track(class_name, rng, num_frames, size, look)
    tracks = [
        _distractor_track(rng, num_frames, size, look)
        for _ in range(rng.integers(0, max_distractors + 1))
    ]
    # Distractors pass in front of the target as often as behind it.
    tracks.insert(int(rng.integers(0, len(tracks) + 1)), target)
    background = look.background(rng, size)
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for index in range(num_frames):
        image = background.copy()
        for track in tracks:
            _paint(image, track, index, size)
        image += rng.normal(0, noise_std, image.shape)
        frames[index] = np.clip(image, 0, 255).round().astype(np.uint8)
    return frames


# Two looks of the same motions. default: circles, squares, triangles and stars over smooth
# colour noise. ood: hexagons, crosses, ellipses and rhombi, sized outside the default ranges,
# over rotated checkerboards: a model trained on one can be judged on a look it never saw (the
# default corpus's test_ood.csv) or fine-tuned on a small corpus of the other.
STYLES = {
    "default": Style(SHAPES, (0.09, 0.16), (0.05, 0.07), (0.17, 0.21), (0.035, 0.06), _background),
    # Every size lies outside the default range of its kind of object: fixed-size targets and
    # distractors are smaller, growing and shrinking ones start smaller and end larger.
    "ood": Style(
        OOD_SHAPES, (0.06, 0.085), (0.03, 0.045), (0.22, 0.26), (0.02, 0.03), _checkerboard
    ),
}


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


# The split videos of a corpus in the default style are seeded by (seed, class, id); every
# other kind of video adds its tag, so no video of one kind is ever a video of another (a corpus
# rendered in the OOD style never trains on the default corpus's test_ood videos).
_STREAM_TAGS = {"test_ood": 1, "ood": 2}


def _stream(seed: int, class_seed: int, video_index: int, kind: str) -> list[int]:
    tag = [] if kind == "default" else [_STREAM_TAGS[kind]]
    return [seed, class_seed, video_index, *tag]


def _render_one(job: tuple) -> None:
    path, class_name, stream, style, spec = job
    frames = render_video(
        class_name,
        np.random.default_rng(stream),
        spec["num_frames"],
        spec["size"],
        spec["max_distractors"],
        spec["noise_std"],
        style,
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
    if full["style"] not in STYLES:
        raise ValueError(f"unknown video style {full['style']!r}; choose from {list(STYLES)}")
    full["ood_test_videos_per_class"] = int(full["ood_test_videos_per_class"])
    if full["ood_test_videos_per_class"] < 0:
        raise ValueError(
            f"ood_test_videos_per_class must be >= 0, got {full['ood_test_videos_per_class']}"
        )
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
    style: str = DEFAULT_SPEC["style"],
    ood_test_videos_per_class: int = DEFAULT_SPEC["ood_test_videos_per_class"],
    workers: int = 1,
) -> Path:
    """Render the corpus into ``out_dir`` (replacing it) and return ``out_dir``.

    Layout: ``videos/<class_with_underscores>/<id>.mp4``, ``{train,validation,test}.csv`` with
    ``path,label`` rows (paths relative to ``out_dir``), ``classes.txt`` and ``corpus.json``
    (spec and counts). ``style`` (``default`` or ``ood``, see :data:`STYLES`) is the look of
    all of them; ``ood_test_videos_per_class`` more videos in the ``ood`` style go to
    ``videos_test_ood/<class>/<id>.mp4`` and ``test_ood.csv`` (none when 0). Every video has
    its own random stream seeded by (seed, class, id, and its kind), so the output is
    identical for the same arguments, whatever ``workers`` is, and the OOD test never changes
    the other splits. The corpus is written to a temporary sibling folder and renamed into
    place at the end, so an interrupted run never leaves a half-written corpus behind.
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
        style=style,
        ood_test_videos_per_class=ood_test_videos_per_class,
    )
    out_dir = Path(out_dir)
    started = time.perf_counter()
    rows: dict[str, list[tuple[str, str]]] = {split: [] for split in SPLITS}
    if spec["ood_test_videos_per_class"]:
        rows["test_ood"] = []
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
            folder = class_folder(class_name)
            (staging / "videos" / folder).mkdir(parents=True)
            for video_index in range(videos_per_class):
                relative = f"videos/{folder}/{video_index:04d}.mp4"
                rows[split_of[video_index]].append((relative, class_name))
                stream = _stream(seed, class_seed, video_index, spec["style"])
                jobs.append((staging / relative, class_name, stream, spec["style"], spec))
            if spec["ood_test_videos_per_class"]:
                (staging / "videos_test_ood" / folder).mkdir(parents=True)
            for video_index in range(spec["ood_test_videos_per_class"]):
                relative = f"videos_test_ood/{folder}/{video_index:04d}.mp4"
                rows["test_ood"].append((relative, class_name))
                stream = _stream(seed, class_seed, video_index, "test_ood")
                jobs.append((staging / relative, class_name, stream, "ood", spec))
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
    parser.add_argument(
        "--split-fractions",
        type=float,
        nargs=3,
        metavar=("TRAIN", "VALIDATION", "TEST"),
        default=list(DEFAULT_SPEC["split_fractions"]),
        help="shares of each class's videos per split",
    )
    parser.add_argument("--max-distractors", type=int, default=DEFAULT_SPEC["max_distractors"])
    parser.add_argument("--noise-std", type=float, default=DEFAULT_SPEC["noise_std"])
    parser.add_argument(
        "--style",
        choices=list(STYLES),
        default=DEFAULT_SPEC["style"],
        help="look of the videos: default, or ood (shapes, sizes and textures default never has)",
    )
    parser.add_argument(
        "--ood-test-videos-per-class",
        type=int,
        default=DEFAULT_SPEC["ood_test_videos_per_class"],
        help="videos per class in the ood style for test_ood.csv (0: none)",
    )
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
        split_fractions=args.split_fractions,
        max_distractors=args.max_distractors,
        noise_std=args.noise_std,
        style=args.style,
        ood_test_videos_per_class=args.ood_test_videos_per_class,
        workers=args.workers,
    )
    build = build_video_corpus if args.force else ensure_video_corpus
    return build(args.out, **spec)
