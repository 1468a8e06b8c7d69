"""``mmembed-train``: compose the Hydra config, train, test the best checkpoint, report.

    mmembed-train experiment=asr_default
    mmembed-train experiment=asr_default trainer=gpu trainer.max_epochs=30
    mmembed-train experiment=asr_default \
        ckpt_path=logs/asr_default/runs/<run>/checkpoints/last.ckpt

The run, in order: validate the config; build the embedded corpus the ``corpus`` node asks for
(under a file lock, so ranks never build it twice); instantiate the data module; train the
tokenizer on its training texts (or take the checkpoint's); build the task with the
``optimizer`` and ``scheduler`` partials; fit; test the best checkpoint; report.

One process per rank: under torchrun or SLURM every rank runs this same entry point and
Lightning reads its rank from the environment (set ``MMEMBED_RUN_ID`` so all ranks share one
run folder).
"""

from __future__ import annotations

import difflib
import fcntl
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from mmembed.artifacts import load_checkpoint, naming_the_folder_on_full_disk
from mmembed.callbacks import TrainingStop, run_guards, training_stop
from mmembed.datagen.corpus_folder import lock_path
from mmembed.overrides import apply_empty_dict_overrides
from mmembed.report import data_report, write_metrics
from mmembed.text.tokenizers import Tokenizer, load_tokenizer_dict
from mmembed.transfer import init_from, resolve_checkpoint

log = logging.getLogger(__name__)

TOP_LEVEL_KEYS = {
    "data", "corpus", "task", "tokenizer", "optimizer", "scheduler", "callbacks", "logger",
    "trainer", "paths", "experiment", "debug", "task_name", "tags", "monitor", "seed", "train",
    "test", "ckpt_path", "hydra", "optimized_metric", "torch_threads", "init_from",
    "init_from_skip", "init_from_tokenizer",
}  # fmt: skip


class ConfigError(ValueError):
    """The composed config names something that does not exist."""


def validate_config(cfg: DictConfig) -> None:
    """Fail on unknown top-level keys (a typo in an experiment file would otherwise be ignored)
    and on interpolations that do not resolve. Unknown keys inside a component fail when it is
    built, with Hydra naming the full key."""
    unknown = sorted(set(cfg.keys()) - TOP_LEVEL_KEYS)
    if unknown:
        hints = {
            key: difflib.get_close_matches(key, sorted(TOP_LEVEL_KEYS), n=1) for key in unknown
        }
        detail = ", ".join(
            f"{key!r}" + (f" (did you mean {hints[key][0]!r}?)" if hints[key] else "")
            for key in unknown
        )
        raise ConfigError(f"unknown top-level config key(s): {detail}")
    for group in ("data", "task", "trainer", "tokenizer", "optimizer"):
        if not isinstance(cfg.get(group), DictConfig) or "_target_" not in cfg[group]:
            raise ConfigError(f"config group {group!r} must be set and have a _target_")
    # Resolve every interpolation now: a bad one should fail before minutes of data preparation.
    # Hydra's own keys resolve only inside a Hydra run, so they are left out.
    for key, node in cfg.items():
        if key != "hydra" and isinstance(node, DictConfig):
            OmegaConf.to_container(node, resolve=True, throw_on_missing=True)


@contextmanager
def node_lock(path: Path):
    """An exclusive lock shared by the processes of one machine (ranks of a DDP job)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_corpus(cfg: DictConfig) -> None:
    """The ``corpus`` step: build (or find up to date) the embedded corpus the data reads.

    Every rank calls it; the machine's lock for the corpus folder makes one build it while the
    others wait, then find it current."""
    if not cfg.get("corpus"):
        return
    out_dir = Path(cfg.corpus.out_dir)
    with node_lock(lock_path(out_dir)):
        hydra.utils.instantiate(cfg.corpus)


def build_tokenizer(cfg: DictConfig, datamodule: Any) -> Tokenizer:
    """Resuming reuses the checkpoint's tokenizer (its ids are what the weights learned), and so
    does ``init_from`` with ``init_from_tokenizer=true``; otherwise one is trained on the
    training texts. Training is deterministic, so every rank builds the same one without
    communicating."""
    source = cfg.get("ckpt_path")
    if not source and cfg.get("init_from") and cfg.get("init_from_tokenizer"):
        source = resolve_checkpoint(cfg.init_from)
    if source:
        checkpoint = load_checkpoint(source)
        if "tokenizer" not in checkpoint:
            raise ConfigError(f"{source}: checkpoint has no tokenizer; not an mmembed run?")
        return load_tokenizer_dict(checkpoint["tokenizer"], source=str(source))
    return hydra.utils.instantiate(cfg.tokenizer)(datamodule.training_texts())


def initialize_from(cfg: DictConfig, task: Any) -> None:
    """``init_from``: another run's weights (not its optimizer, schedule or step) for a new
    run; a resumed run (``ckpt_path``) restores its own instead."""
    if not cfg.get("init_from"):
        return
    if cfg.get("ckpt_path"):
        log.warning("ckpt_path resumes the run, so init_from=%s is not used", cfg.init_from)
        return
    report = init_from(task, cfg.init_from, skip=list(cfg.get("init_from_skip") or ()))
    log.info("%s", report.summary())


def instantiate_dict(section: DictConfig | None) -> list[Any]:
    if not section:
        return []
    return [
        hydra.utils.instantiate(conf)
        for conf in section.values()
        if isinstance(conf, DictConfig) and "_target_" in conf
    ]


def run(cfg: DictConfig) -> dict[str, float]:
    apply_empty_dict_overrides(cfg)
    validate_config(cfg)
    if cfg.get("torch_threads"):
        torch.set_num_threads(cfg.torch_threads)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)

    build_corpus(cfg)
    datamodule = hydra.utils.instantiate(cfg.data)
    tokenizer = build_tokenizer(cfg, datamodule)
    datamodule.set_tokenizer(tokenizer)
    datamodule.prepare_splits(fit=bool(cfg.get("train")), test=bool(cfg.get("test")))
    _save_tokenizer(tokenizer, output_dir / "tokenizer.json")

    task = hydra.utils.instantiate(
        cfg.task,
        tokenizer=tokenizer,
        optimizer=hydra.utils.instantiate(cfg.optimizer),
        scheduler=hydra.utils.instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
    )
    initialize_from(cfg, task)
    callbacks = [*instantiate_dict(cfg.get("callbacks")), *run_guards()]
    loggers = instantiate_dict(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False
    )
    hparams = {
        k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) else v
        for k, v in cfg.items()
        if k != "hydra"
    }
    for logger in loggers:
        logger.log_hyperparams(hparams)

    metrics: dict[str, float] = {}
    stop = None
    if cfg.get("train"):
        trainer.fit(task, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics.update(_scalars(trainer.callback_metrics))
        stop = training_stop(trainer)
    # test-only runs (train=false ckpt_path=...) evaluate the given checkpoint
    best = _best_checkpoint(trainer) or (None if cfg.get("train") else cfg.get("ckpt_path"))
    if cfg.get("test"):
        if best is None:
            log.warning("no best checkpoint was saved; testing the current weights")
        trainer.test(task, datamodule=datamodule, ckpt_path=best, weights_only=True)
        metrics.update(_scalars(trainer.callback_metrics))
    _report(metrics, best, output_dir, datamodule, stop)
    return metrics


def _best_checkpoint(trainer: L.Trainer) -> str | None:
    callback = trainer.checkpoint_callback
    if callback is None or getattr(trainer, "fast_dev_run", False):
        return None
    return getattr(callback, "best_model_path", None) or None


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        name: float(value)
        for name, value in metrics.items()
        if isinstance(value, torch.Tensor) and value.numel() == 1
    }


@rank_zero_only
def _save_tokenizer(tokenizer: Tokenizer, path: Path) -> None:
    tokenizer.save(path)


@rank_zero_only
def _report(
    metrics: dict[str, float],
    best: str | None,
    output_dir: Path,
    datamodule: Any,
    stop: TrainingStop | None,
) -> None:
    lines = ["", "=" * 60, "final metrics:"]
    lines += [f"  {name:<24} {value:.4f}" for name, value in sorted(metrics.items())]
    if stop is not None:
        lines.append(stop.describe())
    lines += data_report(datamodule)
    lines += [
        f"best checkpoint: {best or '(none saved)'}",
        f"run folder (logs, tokenizer, plots): {output_dir}",
        "=" * 60,
    ]
    print("\n".join(lines), flush=True)
    write_metrics(output_dir / "metrics.json", metrics, stop, datamodule)


@hydra.main(version_base="1.3", config_path="pkg://mmembed.conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # Under Lightning's own DDP launcher, ranks > 0 re-run this script; threads are per process.
    torch.set_float32_matmul_precision("high")
    with naming_the_folder_on_full_disk(cfg.paths.output_dir):
        metrics = run(cfg)
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name else None


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    main()
