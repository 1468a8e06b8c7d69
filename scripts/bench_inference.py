"""Benchmark exported-model inference on CPU: eager PyTorch against the exported program
(``runtime="torch"``) and ONNX Runtime (``runtime="onnx"``), measured in the same run, one
thread each.

    python scripts/bench_inference.py                       # all three default models
    python scripts/bench_inference.py --tasks speech --repeats 10 --markdown bench.md

The models are the default experiments' architectures (``asr_default``, ``caption_default``,
``video_default``) with random weights: what is timed does not depend on the weights, except
the captioner's beam search, which here always runs to its maximum length (a trained model
stops at its end token, so this is its slowest case). Per task it prints items/s for each
runtime and their ratio to eager. For the speech model also ``onnx-int8``, its int8 ONNX
graph, which is not exact (``scripts/eval_speech_artifact.py`` measures what it costs in
CER), and the real-time factor (processing time / audio duration) of the whole
``mmembed-predict`` path from a 44.1 kHz file to its transcript (read, resample, log-mel
features, model, greedy CTC), one clip and a batch of 8.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from datetime import date
from importlib import metadata
from pathlib import Path

import numpy as np
import soundfile
import torch

from mmembed.data.audio_io import load_audio
from mmembed.inference.export import export_trained
from mmembed.inference.export.rebuild import TrainedModel, data_settings
from mmembed.inference.predictor import load
from mmembed.metrics.classification import video_level_scores
from mmembed.models.decoding import beam_search
from mmembed.text import train_tokenizer

CLIP_SECONDS = 10.0
FILE_RATE = 44100


def build_task(experiment: str, tokenizer):
    """The experiment's task with random weights (Hydra composes it as ``mmembed-train``)."""
    import hydra
    from hydra import compose, initialize_config_module

    with initialize_config_module("mmembed.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", "paths.root_dir=."])
    task = hydra.utils.instantiate(cfg.task, tokenizer=tokenizer)
    data = data_settings(cfg)
    if "class_names" in cfg.task and experiment.startswith("video"):
        task.set_class_names([f"class {chr(97 + i)}" for i in range(10)])
    return task.eval(), data


def no_grad(fn, *args):
    return lambda: torch.no_grad()(fn)(*args)


def timed(fns: dict, repeats: int) -> dict[str, dict[str, float]]:
    """Median wall and CPU seconds of each function, timed in interleaved rounds so that load
    from other processes drifts over all of them alike (this machine is shared). With one
    thread, CPU time is what one idle core would take."""
    for fn in fns.values():
        fn()  # warm-up (first-call allocations, ONNX Runtime's lazy initialisation)
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {
        name: {"wall": statistics.median(wall[name]), "cpu": statistics.median(cpu[name])}
        for name in fns
    }


def export(task, data, folder: Path, name: str, runtimes=("torch", "onnx")):
    trained = TrainedModel(task, folder / f"{name}.ckpt", "0" * 64, {}, data, None)
    path = export_trained(trained, folder / f"{name}.mmembed", runtimes, check=False)
    return {runtime: load(path, runtime=runtime, threads=1) for runtime in runtimes}


def bench_speech(folder: Path, repeats: int) -> list[dict]:
    words = "the quick brown fox jumps over a lazy dog while seven zebras quietly hum"
    task, data = build_task("asr_default", train_tokenizer([words], "char"))
    # onnx-int8: int8 weight products (not exact; its accuracy: scripts/eval_speech_artifact.py)
    predictors = export(task, data, folder, "asr", ("torch", "onnx", "onnx-int8"))
    rng = np.random.default_rng(0)
    files = []
    for index in range(8):
        path = folder / f"clip{index}.wav"
        soundfile.write(path, 0.1 * rng.standard_normal(int(CLIP_SECONDS * FILE_RATE)), FILE_RATE)
        files.append(str(path))
    waveforms = [load_audio(f, 16000) for f in files]
    rows = []
    for batch in (1, 8):
        chunk = waveforms[:batch]
        padded = torch.stack(chunk)
        lengths = torch.tensor([w.numel() for w in chunk])
        fns = {"eager": no_grad(task.transcribe, padded, lengths)}
        for runtime, predictor in predictors.items():
            fns[runtime] = lambda p=predictor, c=chunk: p.run(c)
            # the whole mmembed-predict path: read, resample, features, model, decode
            fns[f"{runtime} file"] = lambda p=predictor, b=batch: p.transcribe(files[:b])
        times = timed(fns, repeats)
        audio = batch * CLIP_SECONDS
        rtf = {name: {k: v / audio for k, v in t.items()} for name, t in times.items()}
        note = "; ".join(
            f"{name}: RTF {rtf[name]['cpu']:.4f} CPU / {rtf[name]['wall']:.4f} wall"
            for name in ("eager", *predictors, *(f"{r} file" for r in predictors))
        )
        plural = "s" if batch > 1 else ""
        rows.append(
            {
                "task": f"speech, {batch} x {CLIP_SECONDS:.0f} s clip{plural}",
                "items": batch,
                "times": {k: v for k, v in times.items() if "file" not in k},
                "note": note,
            }
        )
    return rows


def bench_captioning(folder: Path, repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    texts = [
        " ".join("".join(rng.choice(list("abcdefghij"), 5)) for _ in range(8)) for _ in range(400)
    ]
    tokenizer = train_tokenizer(texts, "bpe", vocab_size=1000)
    task, data = build_task("caption_default", tokenizer)
    predictors = export(task, data, folder, "captioner")
    size = int(data["image_size"])
    images = list(torch.randn(8, 3, size, size))
    batch = torch.stack(images)
    with torch.no_grad():
        memory = task(batch)

    def uncached():
        # the search as it ran before the cached step: the whole prefix through the decoder
        options = task.search_options()
        step = lambda prefixes, owners: task.decode_step(prefixes, memory[owners])  # noqa: E731
        return beam_search(step, 8, tokenizer.bos_id, tokenizer.eos_id, **options)

    fns = {"eager": lambda: task.generate(batch), "eager, uncached": no_grad(uncached)}
    for runtime, predictor in predictors.items():
        fns[runtime] = lambda p=predictor: p.generate(images)
    times = timed(fns, repeats)
    options = task.search_options()
    note = f"beam {options['beam_size']}, {options['max_length']} tokens (no end token)"
    return [{"task": "captioning, batch of 8 images", "items": 8, "times": times, "note": note}]


def bench_video(folder: Path, repeats: int) -> list[dict]:
    names = [f"class {chr(97 + i)}" for i in range(10)]
    task, data = build_task("video_default", train_tokenizer(names, "char"))
    predictors = export(task, data, folder, "video")
    frames, size, clips = (
        int(data["frames_per_clip"]),
        int(data["size"]),
        int(data["num_eval_clips"]),
    )
    videos = list(torch.randn(8, clips, 3, frames, size, size))
    batch = torch.stack(videos)

    def eager():
        logits = task(batch.flatten(0, 1))
        return video_level_scores(logits.view(8, clips, -1))

    fns = {"eager": no_grad(eager)}
    for runtime, predictor in predictors.items():
        fns[runtime] = lambda p=predictor: p.scores(videos)
    times = timed(fns, repeats)
    note = f"{clips} clips of {frames} x {size} x {size} per video"
    return [{"task": "video, batch of 8 videos", "items": 8, "times": times, "note": note}]


BENCHES = {"speech": bench_speech, "captioning": bench_captioning, "video": bench_video}


def markdown(rows: list[dict]) -> str:
    """Items/s by CPU time (what one idle core gives) with the wall-time figure after it."""
    runtimes = ["eager", "eager, uncached", "torch", "onnx", "onnx-int8"]
    compared = ["torch", "onnx", "onnx-int8"]
    lines = [
        "| model, input | "
        + " | ".join(f"{r} items/s" for r in runtimes)
        + " | "
        + " | ".join(f"{r}/eager" for r in compared)
        + " | notes |",
        "|---|" + "---|" * (len(runtimes) + len(compared) + 1),
    ]
    for row in rows:
        rate = {
            name: {kind: row["items"] / seconds for kind, seconds in t.items()}
            for name, t in row["times"].items()
        }
        cells = [
            f"{rate[r]['cpu']:.2f} ({rate[r]['wall']:.2f})" if r in rate else "-" for r in runtimes
        ]
        ratios = []
        for r in compared:
            if r not in rate:
                ratios.append("-")
                continue
            cpu, wall = (rate[r][kind] / rate["eager"][kind] for kind in ("cpu", "wall"))
            ratios.append(f"{cpu:.2f}x ({wall:.2f}x)")
        lines.append(f"| {row['task']} | " + " | ".join(cells + ratios) + f" | {row['note']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="speech,captioning,video")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mmembed-bench-") as folder:
        for name in args.tasks.split(","):
            rows += BENCHES[name](Path(folder), args.repeats)
            print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    header = (
        f"{date.today()}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"onnxruntime {metadata.version('onnxruntime')}, "
        f"{os.cpu_count()} cores, 1 thread, load average {load_before:.1f} at the start and "
        f"{os.getloadavg()[0]:.1f} at the end, median of {args.repeats} interleaved rounds; "
        "items/s by CPU time (wall time in brackets)"
    )
    table = f"{header}\n\n{markdown(rows)}\n"
    print("\n" + table)
    if args.markdown:
        Path(args.markdown).write_text(table)


if __name__ == "__main__":
    main()
