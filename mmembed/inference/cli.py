"""``mmembed-export`` and ``mmembed-predict``.

    mmembed-export logs/asr_default/runs/<run> --out asr.mmembed [--runtime torch,onnx]
    mmembed-predict asr.mmembed clips/ more/*.flac [--runtime onnx] [--output out.jsonl]
    mmembed-predict multimodal.mmembed photos/ a.wav --embed --text "a red heart" \
        --output vectors.parquet

``mmembed-predict`` writes one JSON line per input, in order: ``{"input": ..., "transcript":
...}`` / ``"caption"`` / ``"labels": [{"label", "score"}, ...]`` / (a multimodal model,
``--embed``) ``"modality"`` and ``"embedding"`` (then the ``--text`` items, ``"input":
"text:<i>"`` with their ``"text"``), or ``{"input": ..., "error": why}`` for an input it could
not use; the others still run, and the exit status is 1 if any input failed (2 for a bad command
line or a model that cannot be loaded). Embeddings written to a ``.parquet`` file have the
columns of ``mmembed-embed``'s (``path``, ``modality``, ``text``, ``embedding``; what
``mmembed-search`` ranks), and each failed input's error goes to stderr instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from mmembed.inference.artifact import ArtifactError
from mmembed.inference.runtimes import RUNTIMES


def _runtimes(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(RUNTIMES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"runtimes must be some of {', '.join(RUNTIMES)}, got {value!r}"
        )
    return names


def export_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mmembed-export",
        description="Package a trained model (an mmembed-train run folder or checkpoint) as one "
        "self-checking .mmembed file.",
    )
    parser.add_argument("source", help="run folder (its best checkpoint) or .ckpt file")
    parser.add_argument("--out", help="the artifact to write (default: <run folder>/model.mmembed)")
    parser.add_argument(
        "--runtime",
        type=_runtimes,
        default=["torch", "onnx"],
        help="graph formats to include, comma-separated: torch (torch.export), onnx, "
        "onnx-int8 (speech: int8 weight products, faster on CPU, not exact), aoti "
        "(AOTInductor, with --device cuda); default torch,onnx",
    )
    parser.add_argument("--device", default="cpu", help="device to export on: cpu or cuda")
    parser.add_argument(
        "--config", help="the run's Hydra config (default: <run>/.hydra/config.yaml)"
    )
    parser.add_argument(
        "--no-check", action="store_true", help="skip loading the result in each runtime"
    )
    args = parser.parse_args(argv)
    # mmembed's progress lines only (the ONNX exporter logs every graph rewrite at INFO)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("mmembed").setLevel(logging.INFO)
    from mmembed.inference.export import export_artifact  # the training stack: export side only

    source = Path(args.source)
    out = (
        Path(args.out)
        if args.out
        else (source if source.is_dir() else source.parent.parent) / "model.mmembed"
    )
    try:
        path = export_artifact(
            source, out, args.runtime, args.device, args.config, check=not args.no_check
        )
    except (ArtifactError, ValueError) as err:
        print(f"mmembed-export: {err}", file=sys.stderr)
        return 1
    checked = "" if args.no_check else ", self-test passed in each"
    print(f"{path}: {', '.join(args.runtime)} graphs{checked}")
    return 0


def predict_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mmembed-predict",
        description="Run an .mmembed model on audio, image or video files: one JSON line "
        "per input.",
    )
    parser.add_argument("model", help="the .mmembed file (from mmembed-export)")
    parser.add_argument("inputs", nargs="*", help="files, folders or glob patterns")
    parser.add_argument("--runtime", choices=RUNTIMES, default="torch")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, help="intra-op threads (torch and ONNX Runtime)")
    parser.add_argument("--top-k", type=int, default=5, help="video: labels per input")
    parser.add_argument("--labels", help="video: comma-separated label names to score zero-shot")
    parser.add_argument(
        "--embed",
        action="store_true",
        help="multimodal models: each input's embedding (what they give anyway)",
    )
    parser.add_argument(
        "--text", action="append", default=[], help="with --embed: a text to embed (repeatable)"
    )
    parser.add_argument(
        "--output",
        help="write the JSON lines here instead of stdout (embeddings: .parquet or .jsonl)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.top_k < 1:
        parser.error("--batch-size and --top-k must be at least 1")
    if not args.inputs and not args.text:
        parser.error("give inputs (files, folders or glob patterns) or --text")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from mmembed.inference.predictor import load

    try:
        predictor = load(args.model, runtime=args.runtime, device=args.device, threads=args.threads)
    except (ArtifactError, ValueError, ImportError) as err:
        print(f"mmembed-predict: {err}", file=sys.stderr)
        return 2
    embedding = predictor.task == "multimodal_embedding"
    if (args.embed or args.text) and not embedding:
        print(f"mmembed-predict: {predictor.embedders_missing()}", file=sys.stderr)
        return 2
    if args.output and args.output.endswith(".parquet") and not embedding:
        print("mmembed-predict: .parquet output is for embeddings; write .jsonl", file=sys.stderr)
        return 2
    options = {}
    if predictor.task == "video_classification":
        options["top_k"] = args.top_k
        if args.labels:
            options["labels"] = [name.strip() for name in args.labels.split(",") if name.strip()]
    elif args.labels:
        print(f"mmembed-predict: --labels is for video models; {args.model} is {predictor.task}",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        if args.output and args.output.endswith(".parquet"):
            failed = _embed_to_parquet(
                predictor, args.inputs, args.text, args.batch_size, args.output
            )
        else:
            with _output(args.output) as out:
                failed = _predict(
                    predictor, args.inputs, args.batch_size, options, out, not args.no_progress
                )
                if args.text:
                    failed += _write(predictor.predict_texts(args.text, args.batch_size), out)
    except ValueError as err:  # e.g. labels the tokenizer cannot encode
        print(f"mmembed-predict: {err}", file=sys.stderr)
        return 2
    if failed:
        print(f"mmembed-predict: {failed} input(s) failed (see their error lines)", file=sys.stderr)
    return 1 if failed else 0


def _predict(predictor, inputs, batch_size, options, out: IO[str], progress: bool) -> int:
    from rich.progress import Progress

    from mmembed.inference.inputs import expand_inputs

    paths = expand_inputs(inputs, predictor.extensions)
    show = progress and sys.stderr.isatty() and len(paths) > batch_size
    with Progress(disable=not show, transient=True) as bar:
        job = bar.add_task("predicting", total=len(paths))
        records = predictor.predict_files(paths, batch_size=batch_size, **options)
        return _write(records, out, lambda: bar.advance(job))


def _write(records, out: IO[str], done=lambda: None) -> int:
    """Write JSON lines; the number of error records."""
    failed = 0
    for record in records:
        failed += "error" in record
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
        done()
    return failed


def _embed_to_parquet(predictor, inputs, texts, batch_size: int, path: str) -> int:
    """The embeddings of the readable inputs and texts as ``mmembed-embed``'s parquet file;
    each failure on stderr. The number of failures."""
    import torch

    from mmembed.embed import Item, write_parquet

    records = [*predictor.predict_files(inputs, batch_size=batch_size)] if inputs else []
    records += predictor.predict_texts(texts, batch_size) if texts else []
    kept = [record for record in records if "error" not in record]
    for record in records:
        if "error" in record:
            print(f"mmembed-predict: {record['error']}", file=sys.stderr)
    items = [Item(r["input"], r["modality"], r.get("text")) for r in kept]
    vectors = torch.tensor([r["embedding"] for r in kept]).view(len(kept), predictor.width)
    written = write_parquet(items, vectors, path)
    print(f"{len(kept)} embeddings ({predictor.width} wide) -> {written}")
    return len(records) - len(kept)


class _output:
    """stdout, or a file written atomically (a temporary file renamed on success)."""

    def __init__(self, path: str | None):
        self.path = Path(path) if path else None

    def __enter__(self) -> IO[str]:
        if self.path is None:
            return sys.stdout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, self.temporary = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        self.file = os.fdopen(handle, "w", encoding="utf-8")
        return self.file

    def __exit__(self, kind, error, traceback) -> None:
        if self.path is None:
            return
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        if kind is None:
            os.replace(self.temporary, self.path)
        else:
            Path(self.temporary).unlink(missing_ok=True)


if __name__ == "__main__":
    commands = {"export": export_main, "predict": predict_main}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit("usage: python -m mmembed.inference.cli {export,predict} ...")
    sys.exit(commands[sys.argv[1]](sys.argv[2:]))
