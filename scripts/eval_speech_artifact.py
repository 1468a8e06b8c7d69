"""Score an exported recogniser (an ``.mmembed`` file) on NeMo-style manifests, in each of the
runtimes asked for, side by side: CER and WER against the references, and how many
transcripts each runtime shares with the first. What it is for: checking that a runtime which
is not exact (``onnx-int8``) costs the model nothing that matters, on held-out and
out-of-domain sets, before serving it.

    python scripts/eval_speech_artifact.py model.mmembed \\
        data/generated/speech/test.jsonl data/generated/speech/test_slow.jsonl \\
        --runtimes onnx,onnx-int8
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchmetrics.text import CharErrorRate, WordErrorRate

from mmembed.data.manifest import read_manifest
from mmembed.inference.predictor import load


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the .mmembed file")
    parser.add_argument("manifests", nargs="+", type=Path, help="JSON-lines manifests")
    parser.add_argument("--runtimes", default="onnx,onnx-int8", help="comma-separated")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    runtimes = args.runtimes.split(",")
    predictors = {r: load(args.model, runtime=r, threads=args.threads) for r in runtimes}
    print("| manifest | runtime | utterances | CER | WER | transcripts as " + runtimes[0] + " |")
    print("|---|---|---|---|---|---|")
    for manifest in args.manifests:
        # the training manifests' reader: paths relative to the manifest, errors name the line
        entries = read_manifest(manifest)
        files = [str(entry.audio_path) for entry in entries]
        references = [entry.text for entry in entries]
        first = None
        for runtime, predictor in predictors.items():
            hypotheses = list(predictor.transcribe(files))
            first = first or hypotheses
            cer = 100 * CharErrorRate()(hypotheses, references).item()
            wer = 100 * WordErrorRate()(hypotheses, references).item()
            same = sum(a == b for a, b in zip(hypotheses, first, strict=True))
            print(
                f"| {manifest.name} | {runtime} | {len(files)} | {cer:.2f}% | {wer:.2f}% "
                f"| {same}/{len(files)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
