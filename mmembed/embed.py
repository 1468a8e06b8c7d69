"""``mmembed-embed`` and ``mmembed-search``: a multimodal run's embeddings of files, and search.

    mmembed-embed logs/multimodal_default/runs/<run> clips/ photos/ a.wav --out vectors.parquet
    mmembed-embed CHECKPOINT --text "a red heart" "moving left" --out texts.parquet
    mmembed-search CHECKPOINT photos/ --query "a smiling face"
    mmembed-search CHECKPOINT vectors.parquet --audio-query question.wav --top 10

The model is rebuilt from the run's Hydra config (``<run>/.hydra/config.yaml``, or
``--config``) and the checkpoint's weights and tokenizer (loaded with ``weights_only=True``).
Files are preprocessed exactly as the run's evaluation data (the data config's sample rate,
image transform, clip sampling), so the vectors are the ones the run's retrieval scores
measured. The modality comes from the file suffix; a ``.txt`` file gives one text per line.
Unreadable files are skipped with one warning naming each.
"""

from __future__ import annotations

import argparse
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

SUFFIXES = {
    "audio": (".wav", ".flac", ".ogg"),
    "image": (".png", ".jpg", ".jpeg", ".bmp", ".webp"),
    "video": (".mp4", ".avi", ".mkv", ".webm", ".mov"),
    "text": (".txt",),
}
MODALITY_OF_SUFFIX = {suffix: modality for modality, group in SUFFIXES.items() for suffix in group}


class EmbedSkipWarning(UserWarning):
    """Input files that could not be read were left out (the message names each)."""


@dataclass(frozen=True)
class Item:
    """One thing to embed: a file (or a line of a text file) and its modality."""

    source: str
    modality: str
    text: str | None = None


# --- the model and its preprocessing -------------------------------------------------------------


def run_config_path(checkpoint: Path) -> Path:
    """``<run>/.hydra/config.yaml`` of a checkpoint in ``<run>/checkpoints/``."""
    return checkpoint.resolve().parent.parent / ".hydra" / "config.yaml"


def load_run(checkpoint: str | os.PathLike, config: str | os.PathLike | None = None):
    """``(model, data)``: the multimodal model of a run in eval mode, and its data module (for
    the preprocessing; nothing is read from its folders). ``checkpoint`` may be a run folder
    (its best checkpoint)."""
    import hydra
    from omegaconf import OmegaConf

    from mmembed.artifacts import load_checkpoint
    from mmembed.tasks.multimodal import MultimodalEmbedding
    from mmembed.text.tokenizers import load_tokenizer_dict
    from mmembed.transfer import resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    config_path = Path(config) if config else run_config_path(path)
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{config_path}: no run config; pass --config with the run's .hydra/config.yaml"
        )
    cfg = OmegaConf.load(config_path)
    # Paths interpolate Hydra's runtime values, which exist only inside a Hydra run; nothing
    # here reads the data folders, so any root does.
    cfg.paths.root_dir = str(Path.cwd())
    cfg.paths.output_dir = str(path.parent.parent)
    saved = load_checkpoint(path)
    if "tokenizer" not in saved or "state_dict" not in saved:
        raise ValueError(f"{path}: not an mmembed training checkpoint (no tokenizer/state_dict)")
    tokenizer = load_tokenizer_dict(saved["tokenizer"], source=str(path))
    model = hydra.utils.instantiate(cfg.task, tokenizer=tokenizer)
    if not isinstance(model, MultimodalEmbedding):
        raise ValueError(f"{path}: a {type(model).__name__} run, not a multimodal one")
    model.on_load_checkpoint(saved)
    model.load_state_dict(saved["state_dict"])
    data = hydra.utils.instantiate(cfg.data)
    return model.eval(), data


class Preprocess:
    """File -> model input, as the run's evaluation data prepares it."""

    def __init__(self, data: Any):
        self.speech = data.parts["speech"]
        self.captions = data.parts["captions"]
        self.video = data.parts["video"]

    def audio(self, path: Path) -> torch.Tensor:
        from mmembed.data.speech import load_audio

        return load_audio(path, self.speech.sample_rate)

    def image(self, path: Path) -> torch.Tensor:
        from mmembed.data.coco import CaptionedImage, CocoCaptionDataset

        dataset = CocoCaptionDataset(
            [CaptionedImage(0, path, ("",))],
            mode="eval",
            transform=self.captions.eval_transform,
            strict=True,
        )
        return dataset[0].image

    def video_clips(self, path: Path) -> torch.Tensor:
        """The video's evaluation clips (K, 3, T, H, W)."""
        from mmembed.data.video import VideoClassificationDataset, VideoRecord
        from mmembed.data.video_io import probe_video

        info = probe_video(path)
        needed = self.video.sampling.min_frames(info.fps)
        if info.num_frames < needed:
            raise ValueError(f"too short ({info.num_frames} frames, a clip needs {needed})")
        dataset = VideoClassificationDataset(
            [VideoRecord(path, 0, info.num_frames, info.fps)],
            self.video.sampling,
            self.video.transforms[False],
            train=False,
            num_eval_clips=self.video.num_eval_clips,
            strict=True,
        )
        return dataset[0][0]


# --- inputs ------------------------------------------------------------------------------------


def collect_items(inputs: Sequence[str | os.PathLike], texts: Sequence[str] = ()) -> list[Item]:
    """Every file named or under a named folder (sorted), by suffix, and the given texts.

    A named file of an unknown kind fails; files of unknown kinds inside folders are left out
    (counted in the log). A ``.txt`` file gives one item per non-empty line."""
    items: list[Item] = []
    ignored = 0
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            known = [p for p in files if p.suffix.lower() in MODALITY_OF_SUFFIX]
            ignored += len(files) - len(known)
        elif path.is_file():
            if path.suffix.lower() not in MODALITY_OF_SUFFIX:
                raise ValueError(
                    f"{path}: unknown kind of file; supported: {sorted(MODALITY_OF_SUFFIX)}"
                )
            known = [path]
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
        for file in known:
            modality = MODALITY_OF_SUFFIX[file.suffix.lower()]
            if modality == "text":
                lines = file.read_text(encoding="utf-8").splitlines()
                numbered = enumerate(lines, start=1)
                items += [Item(f"{file}:{n}", "text", line.strip()) for n, line in numbered
                          if line.strip()]  # fmt: skip
            else:
                items.append(Item(str(file), modality))
    if ignored:
        log.info("left out %d file(s) of unknown kinds in the input folders", ignored)
    items += [Item(f"text:{index}", "text", text) for index, text in enumerate(texts)]
    return items


# --- embedding ---------------------------------------------------------------------------------


def embed_items(
    model: Any,
    preprocess: Preprocess,
    items: Sequence[Item],
    batch_size: int = 16,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> tuple[list[Item], torch.Tensor]:
    """The items that could be read and their unit-norm embeddings (N, width), in input
    order. Unreadable files are left out with one :class:`EmbedSkipWarning` naming each."""
    loaders = {
        "audio": preprocess.audio,
        "image": preprocess.image,
        "video": preprocess.video_clips,
    }
    kept: dict[int, torch.Tensor] = {}
    problems: list[str] = []
    pending: dict[str, list[tuple[int, Any]]] = {modality: [] for modality in SUFFIXES}

    def flush(modality: str) -> None:
        batch = pending[modality]
        if not batch:
            return
        indices, inputs = zip(*batch, strict=True)
        with torch.no_grad():
            vectors = _embed_batch(model, modality, list(inputs))
        for index, vector in zip(indices, vectors, strict=True):
            kept[index] = vector
        batch.clear()

    steps = enumerate(items)
    for index, item in progress(steps, len(items)) if progress else steps:
        if item.modality == "text":
            pending["text"].append((index, item.text))
        else:
            try:
                pending[item.modality].append((index, loaders[item.modality](Path(item.source))))
            except Exception as err:  # a decoder's error of any type: name the file, go on
                problems.append(f"{item.source}: {err}")
                continue
        if len(pending[item.modality]) >= batch_size:
            flush(item.modality)
    for modality in pending:
        flush(modality)
    if problems:
        warnings.warn(
            f"left out {len(problems)} unreadable file(s) of {len(items)}: " + "; ".join(problems),
            EmbedSkipWarning,
            stacklevel=2,
        )
    order = sorted(kept)
    width = model.width
    vectors = torch.stack([kept[i] for i in order]) if order else torch.empty(0, width)
    return [items[i] for i in order], vectors


def _embed_batch(model: Any, modality: str, inputs: list) -> torch.Tensor:
    if modality == "text":
        return model.embed_text(inputs)
    if modality == "audio":
        lengths = torch.tensor([len(waveform) for waveform in inputs])
        waveforms = torch.nn.utils.rnn.pad_sequence(inputs, batch_first=True)
        return model.embed_audio(waveforms, lengths)
    if modality == "image":
        return model.embed_image(torch.stack(inputs))
    return model.embed_video(torch.stack(inputs))


def write_parquet(items: Sequence[Item], vectors: torch.Tensor, path: str | os.PathLike) -> Path:
    """``path``, ``modality``, ``text`` and ``embedding`` (float32 x width) columns; written
    to a temporary file, then renamed into place."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    width = vectors.shape[1]
    flat = pa.array(vectors.float().numpy().reshape(-1), type=pa.float32())
    table = pa.table(
        {
            "path": [item.source for item in items],
            "modality": [item.modality for item in items],
            "text": [item.text for item in items],
            "embedding": pa.FixedSizeListArray.from_arrays(flat, width),
        }
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    pq.write_table(table, partial)
    partial.replace(path)
    return path


def read_parquet(path: str | os.PathLike) -> tuple[list[Item], torch.Tensor]:
    """The items and vectors of a file written by :func:`write_parquet`."""
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    missing = {"path", "modality", "embedding"} - set(table.column_names)
    if missing:
        raise ValueError(f"{path}: not an mmembed-embed file (missing columns {sorted(missing)})")
    rows = table.to_pydict()
    texts = rows.get("text") or [None] * table.num_rows
    items = [Item(*row) for row in zip(rows["path"], rows["modality"], texts, strict=True)]
    column = table.column("embedding").combine_chunks()
    width = column.type.list_size
    vectors = np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    return items, torch.from_numpy(vectors.reshape(-1, width).copy())


def _progress(description: str) -> Callable[[Iterable, int], Iterable]:
    from rich.progress import track

    return lambda steps, total: track(steps, description=description, total=total)


CONFIG_HELP = "the run's Hydra config (default: <run>/.hydra/config.yaml)"

# --- commands ----------------------------------------------------------------------------------


def embed_files(
    checkpoint: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    texts: Sequence[str] = (),
    config: str | os.PathLike | None = None,
    batch_size: int = 16,
) -> Path:
    """Embed ``inputs`` (files and folders) and ``texts`` with a run; write ``out``."""
    items = collect_items(inputs, texts)
    if not items:
        raise ValueError("nothing to embed: give files, folders or texts")
    model, data = load_run(checkpoint, config)
    kept, vectors = embed_items(model, Preprocess(data), items, batch_size, _progress("embedding"))
    path = write_parquet(kept, vectors, out)
    print(f"{len(kept)} embeddings ({vectors.shape[1]} wide) -> {path}")
    return path


def search(
    checkpoint: str | os.PathLike,
    target: str | os.PathLike,
    *,
    query: str | None = None,
    audio_query: str | os.PathLike | None = None,
    top: int = 5,
    modality: str | None = None,
    config: str | os.PathLike | None = None,
) -> list[tuple[float, Item]]:
    """The ``top`` items of ``target`` (a folder, or a parquet file of :func:`embed_files`)
    for a typed ``query`` or a spoken ``audio_query``, best first, with their cosine scores;
    printed as a table."""
    if (query is None) == (audio_query is None):
        raise ValueError("give exactly one of a typed query and an audio query")
    model, data = load_run(checkpoint, config)
    preprocess = Preprocess(data)
    if str(target).endswith(".parquet"):
        items, vectors = read_parquet(target)
    else:
        items, vectors = embed_items(
            model, preprocess, collect_items([target]), progress=_progress("embedding")
        )
    if modality:
        keep = [i for i, item in enumerate(items) if item.modality == modality]
        items, vectors = [items[i] for i in keep], vectors[keep]
    if not items:
        raise ValueError(f"{target}: nothing to rank")
    asked = Item(str(audio_query), "audio") if audio_query else Item("query", "text", query)
    _, embedded = embed_items(model, preprocess, [asked])
    if not len(embedded):
        raise ValueError(f"{audio_query}: the query could not be read")
    scores = (vectors.float() @ embedded[0].float()).tolist()
    ranked = sorted(zip(scores, items, strict=True), key=lambda pair: -pair[0])[:top]
    for rank, (score, item) in enumerate(ranked, start=1):
        shown = f"{item.source}  {item.text!r}" if item.text is not None else item.source
        print(f"{rank:>3}  {score:+.4f}  {item.modality:<5}  {shown}")
    return ranked


def embed_main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="mmembed-embed", description="Embed files (and texts) with a multimodal run."
    )
    parser.add_argument("checkpoint", help="a .ckpt file or a run folder (its best checkpoint)")
    parser.add_argument("inputs", nargs="*", help="files and folders (audio, images, videos, .txt)")
    parser.add_argument("--text", nargs="+", default=[], help="texts to embed too")
    parser.add_argument("--out", required=True, type=Path, help="the .parquet file to write")
    parser.add_argument("--config", help=CONFIG_HELP)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    try:
        embed_files(args.checkpoint, args.inputs, args.out, texts=args.text, config=args.config,
                    batch_size=args.batch_size)  # fmt: skip
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))


def search_main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="mmembed-search", description="Rank a folder's items (or embedded items) for a query."
    )
    parser.add_argument("checkpoint", help="a .ckpt file or a run folder (its best checkpoint)")
    parser.add_argument("target", help="a folder to embed, or a .parquet from mmembed-embed")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--query", help="a typed query")
    query.add_argument("--audio-query", type=Path, help="a spoken query (an audio file)")
    parser.add_argument("--top", type=int, default=5, help="results to print")
    parser.add_argument("--modality", choices=sorted(SUFFIXES), help="rank only this kind")
    parser.add_argument("--config", help=CONFIG_HELP)
    args = parser.parse_args(argv)
    try:
        search(args.checkpoint, args.target, query=args.query, audio_query=args.audio_query,
               top=args.top, modality=args.modality, config=args.config)  # fmt: skip
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))


if __name__ == "__main__":
    embed_main()
