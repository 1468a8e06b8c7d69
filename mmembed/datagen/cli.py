"""`mmembed-data`: build the offline example corpora (speech, captions, video)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from pathlib import Path

# Subcommand -> module exposing `add_arguments(parser)`, `run(args) -> Path` and a one-line
# docstring. Modules are imported only to build their own subcommand.
GENERATORS = {
    "speech": "mmembed.datagen.speech",
    "captions": "mmembed.datagen.captions",
    "video": "mmembed.datagen.video",
}
DEFAULT_OUT_ROOT = Path("data/generated")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmembed-data", description=__doc__)
    subcommands = parser.add_subparsers(dest="corpus", required=True, metavar="CORPUS")
    for name, module_name in GENERATORS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:  # a missing dependency inside it is a real error
                raise
            continue  # that generator is not written yet
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
    print(f"{args.corpus} corpus: {corpus_dir.resolve()}")
    for manifest in sorted(corpus_dir.glob("*.jsonl")):
        with manifest.open() as lines:
            print(f"  {manifest.stem}: {sum(1 for _ in lines)} examples")


if __name__ == "__main__":
    main()
