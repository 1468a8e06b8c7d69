"""`mmembed-data`: build the offline example corpora (speech, captions, video, spoken captions)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from pathlib import Path

from mmembed.datagen import corpus_folder

# Subcommand -> module exposing `add_arguments(parser)`, `run(args) -> Path` and a one-line
# docstring; each writes a corpus.json (mmembed.datagen.corpus_folder) whose counts are printed.
GENERATORS = {
    "speech": "mmembed.datagen.speech",
    "captions": "mmembed.datagen.captions",
    "video": "mmembed.datagen.video",
    "spoken_captions": "mmembed.datagen.spoken_captions",
}
DEFAULT_OUT_ROOT = Path("data/generated")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmembed-data", description=__doc__)
    subcommands = parser.add_subparsers(dest="corpus", required=True, metavar="CORPUS")
    for name, module_name in GENERATORS.items():
        module = importlib.import_module(module_name)
        summary = (module.__doc__ or name).strip().splitlines()[0]
        # "resolve" lets a module define its own --out without clashing with the common one.
        subparser = subcommands.add_parser(
            name,
            help=summary,
            description=summary,
            conflict_handler="resolve",
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        subparser.add_argument(
            "--out", type=Path, default=DEFAULT_OUT_ROOT / name, help="output folder"
        )
        module.add_arguments(subparser)
        subparser.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    corpus_dir = Path(args.run(args))
    info = corpus_folder.read_corpus_info(corpus_dir, GENERATORS[args.corpus]) or {}
    print(f"{args.corpus} corpus: {corpus_dir.resolve()}")
    for line in corpus_folder.describe_counts(info):
        print(f"  {line}")


if __name__ == "__main__":
    main()
