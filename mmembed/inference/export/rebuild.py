"""Rebuilding a trained task from what ``mmembed-train`` left behind: a run folder (or one of
its checkpoints) with the Hydra config in ``.hydra/config.yaml``.

This is the export side: it instantiates the task through Hydra, so it runs where training ran
(Hydra is imported by the functions that need it: :class:`TrainedModel` and the exporters also
run where it is not installed, e.g. on a GPU machine exporting a model built in Python). The
checkpoint loads with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from mmembed.artifacts import CheckpointError, load_checkpoint
from mmembed.inference.artifact import ArtifactError
from mmembed.text.tokenizers import load_tokenizer_dict

log = logging.getLogger(__name__)

# written to the run folder by the decoding-tuning callback
TUNED_DECODING = "decoding.json"


class ExportError(ArtifactError):
    """Something in the run folder or checkpoint keeps it from being exported."""


@dataclass
class TrainedModel:
    task: Any  # a TokenTableTask in eval mode
    checkpoint: Path
    checkpoint_sha256: str
    run_config: dict[str, Any]  # the run's config, interpolations unresolved
    data: dict[str, Any]  # the data module's settings (its defaults for what the run left out)
    run_dir: Path | None


def find_checkpoint(run_dir: Path) -> Path:
    """The run's best checkpoint (what ``mmembed-train`` tested): the checkpoint callback's
    ``best_model_path`` recorded in ``last.ckpt``, else the one checkpoint that is not
    ``last.ckpt``, else ``last.ckpt``."""
    folder = run_dir / "checkpoints"
    checkpoints = sorted(folder.glob("*.ckpt")) if folder.is_dir() else []
    if not checkpoints:
        raise ExportError(f"{run_dir}: no checkpoints/*.ckpt; is this an mmembed-train run folder?")
    last = folder / "last.ckpt"
    if last.is_file():
        state = _load_checkpoint(last)
        for name, callback in (state.get("callbacks") or {}).items():
            best = callback.get("best_model_path") if name.startswith("ModelCheckpoint") else None
            # the run folder may have moved since: look the file up by name
            if best and (folder / Path(best).name).is_file():
                return folder / Path(best).name
    others = [path for path in checkpoints if path.name != "last.ckpt"]
    if len(others) == 1:
        return others[0]
    if last.is_file():
        return last
    raise ExportError(f"{folder}: several checkpoints and no last.ckpt; pass the one to export")


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return load_checkpoint(path)
    except (CheckpointError, FileNotFoundError) as err:
        raise ExportError(str(err)) from err


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_trained(source: str | PathLike, config: str | PathLike | None = None) -> TrainedModel:
    """The trained task of a run folder or checkpoint, in eval mode on the CPU.

    Args:
        source: a run folder (its best checkpoint is used) or a ``.ckpt`` file.
        config: the run's Hydra config; default ``<run folder>/.hydra/config.yaml`` (for a
            checkpoint, the run folder is the one holding its ``checkpoints/`` folder).
    """
    import hydra
    from omegaconf import DictConfig, OmegaConf

    source = Path(source)
    if source.is_dir():
        run_dir: Path | None = source
        checkpoint_path = find_checkpoint(source)
    elif source.is_file():
        checkpoint_path = source
        run_dir = source.parent.parent if source.parent.name == "checkpoints" else None
    else:
        raise ExportError(f"{source}: no such run folder or checkpoint")
    config_path = (
        Path(config) if config else (run_dir / ".hydra" / "config.yaml" if run_dir else None)
    )
    if config_path is None or not config_path.is_file():
        raise ExportError(
            f"{checkpoint_path}: the run's config ({config_path or '<run>/.hydra/config.yaml'}) "
            "is missing; pass it with --config"
        )
    cfg = OmegaConf.load(config_path)
    if not isinstance(cfg, DictConfig) or "task" not in cfg:
        raise ExportError(f"{config_path}: not an mmembed-train config (no task section)")
    checkpoint = _load_checkpoint(checkpoint_path)
    for key in ("state_dict", "tokenizer"):
        if key not in checkpoint:
            raise ExportError(f"{checkpoint_path}: checkpoint has no {key!r}; not an mmembed run?")
    tokenizer = load_tokenizer_dict(checkpoint["tokenizer"], source=str(checkpoint_path))

    task_cfg = cfg.task.copy()
    # the weights come from the checkpoint: a backbone checkpoint the run started from may be gone
    if "checkpoint" in task_cfg.get("encoder", {}):
        task_cfg.encoder.checkpoint = None
    task = hydra.utils.instantiate(task_cfg, tokenizer=tokenizer)
    task.on_load_checkpoint(checkpoint)  # e.g. the video task binds its class names first
    try:
        task.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise ExportError(
            f"{checkpoint_path}: its weights do not fit the model of {config_path} ({err})"
        ) from err
    if run_dir is not None:
        apply_tuned_decoding(task, run_dir / TUNED_DECODING)
    return TrainedModel(
        task=task.eval(),
        checkpoint=checkpoint_path,
        checkpoint_sha256=_file_sha256(checkpoint_path),
        run_config=OmegaConf.to_container(cfg, resolve=False),
        data=data_settings(cfg),
        run_dir=run_dir,
    )


def apply_tuned_decoding(task: Any, path: Path) -> None:
    """Decode with the LM weight and word score the run tuned on validation (``decoding.json``
    of :class:`~mmembed.callbacks.tune_decoding.TuneCTCDecoding`, which the run was tested
    with), when they were tuned for the same decoder: method, lexicon and LM as exported."""
    if not path.is_file() or not hasattr(task, "decoding"):
        return
    try:
        tuned = json.loads(path.read_text(encoding="utf-8"))["decoding"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ExportError(f"{path}: not a decoding record of the tuning callback ({err})") from err
    options = task.decoding
    same_decoder = all(
        tuned.get(key) == getattr(options, key) for key in ("method", "lexicon", "lm")
    )
    if not same_decoder:
        log.warning("%s: tuned for another decoder than the exported one; not applied", path)
        return
    task.decoding = dataclasses.replace(
        options, lm_weight=float(tuned["lm_weight"]), word_score=float(tuned["word_score"])
    )
    log.info("decoding with the run's tuned lm_weight and word_score (%s)", path)


def data_settings(cfg: Any) -> dict[str, Any]:
    """The data module's constructor settings: the run's values, resolved where they can be
    outside a Hydra run (paths built on ``${hydra:...}`` cannot, and inference needs none of
    them), over the data module's own defaults. A data module made of others (the multimodal
    one's parts) has each part's settings under the part's name, the same way."""
    from omegaconf import DictConfig

    data = cfg.get("data")
    if not isinstance(data, DictConfig) or "_target_" not in data:
        return {}
    return _instantiated_settings(data)


def _instantiated_settings(node: Any) -> dict[str, Any]:
    import hydra
    from omegaconf import DictConfig, OmegaConf

    settings = {
        name: parameter.default
        for name, parameter in inspect.signature(
            hydra.utils.get_class(node._target_)
        ).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    for key in node:
        if key.startswith("_"):
            continue
        try:
            value = OmegaConf.select(node, key, throw_on_resolution_failure=True)
            if isinstance(value, DictConfig) and "_target_" in value:
                settings[key] = _instantiated_settings(value)
            elif OmegaConf.is_config(value):
                settings[key] = OmegaConf.to_container(value, resolve=True)
            else:
                settings[key] = value
        except Exception:  # an interpolation of Hydra's runtime: not needed for inference
            continue
    return settings
