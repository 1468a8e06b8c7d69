"""``mmembed-train``: compose the Hydra config, train, test the best checkpoint, report.

    mmembed-train experiment=asr_default
    mmembed-train experiment=asr_default trainer=gpu trainer.max_epochs=30
    mmembed-train experiment=asr_default \
        ckpt_path=logs/asr_default/runs/<run>/checkpoints/last.ckpt

The run, in order: validate the config; pick the checkpoint to continue from (``ckpt_path``,
or with ``resume=auto`` the run folder's ``last.ckpt``); build the trainer and check that its
devices x nodes match the processes the launcher started; build the embedded corpus the
``corpus`` node asks for (under a file lock, so ranks never build it twice); instantiate the
data module; train the tokenizer on its training texts (or take the checkpoint's); build the
task with the ``optimizer`` and ``scheduler`` partials (from ``init_from``'s weights, if given);
fit; test the best checkpoint; report.

One process per rank: under torchrun, SLURM or submitit every rank runs this same entry point
and Lightning reads its rank from the environment (:mod:`mmembed.cluster`). The run folder is
named by the run id (``MMEMBED_RUN_ID``, else the scheduler's job id), so a requeued job
continues in its own folder. Every run gets atomic checkpoints, RNG states in checkpoints,
preemption handling and its command line's limits (:mod:`mmembed.callbacks`).
"""

from __future__ import annotations

import difflib
import fcntl
import logging
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from mmembed.artifacts import load_checkpoint, naming_the_folder_on_full_disk
from mmembed.callbacks import (
    Preempted,
    TrainingStop,
    run_guards,
    run_mechanics,
    training_stop,
)
from mmembed.cluster.environment import cluster_plugins
from mmembed.cluster.multirun import sweep_job_ranks
from mmembed.cluster.preflight import check_process_count
from mmembed.cluster.resume import first_logged_step, resume_checkpoint
from mmembed.datagen.corpus_folder import lock_path
from mmembed.overrides import apply_empty_dict_overrides
from mmembed.report import data_report, write_metrics
from mmembed.text.tokenizers import Tokenizer, load_tokenizer_dict
from mmembed.transfer import init_from, resolve_checkpoint

log = logging.getLogger(__name__)

# Lightning checks only for a stateful DataLoader; the data modules keep the position instead
# (mmembed.data.datamodule), so a mid-epoch resume is exact
warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before")
# conf/hydra/launcher/submitit_*.yaml are meant to be checked against the plugin's schema of the
# same name (a misspelt field fails); Hydra warns that this matching is deprecated
warnings.filterwarnings("ignore", message=r"\n'hydra/launcher/submitit_\w+' is validated against")

TOP_LEVEL_KEYS = {
    "data", "corpus", "task", "tokenizer", "optimizer", "scheduler", "callbacks", "logger",
    "trainer", "paths", "experiment", "debug", "task_name", "tags", "monitor", "seed", "train",
    "test", "ckpt_path", "resume", "hydra", "optimized_metric", "torch_threads", "init_from",
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


def build_tokenizer(cfg: DictConfig, datamodule: Any, ckpt_path: str | None) -> Tokenizer:
    """Resuming (from ``ckpt_path``) reuses the checkpoint's tokenizer (its ids are what the
    weights learned), and so does ``init_from`` with ``init_from_tokenizer=true``; otherwise one
    is trained on the training texts. Training is deterministic, so every rank builds the same
    one without communicating."""
    source = ckpt_path
    if not source and cfg.get("init_from") and cfg.get("init_from_tokenizer"):
        source = resolve_checkpoint(init_sources(cfg)[0]["path"])
    if source:
        checkpoint = load_checkpoint(source)
        if "tokenizer" not in checkpoint:
            raise ConfigError(f"{source}: checkpoint has no tokenizer; not an mmembed run?")
        return load_tokenizer_dict(checkpoint["tokenizer"], source=str(source))
    return hydra.utils.instantiate(cfg.tokenizer)(datamodule.training_texts())


def init_sources(cfg: DictConfig) -> list[dict[str, Any]]:
    """``init_from`` as a list of ``{path, prefixes, skip, table_rows, readout}``: one
    checkpoint (a path, with ``init_from_skip``), or several, each with its own prefix map,
    skips, table rows and read-out (parts of a new model from several runs; later runs win on
    a shared token)."""
    sources = cfg.get("init_from")
    if not sources:
        return []
    if isinstance(sources, str):
        return [{"path": sources, "skip": list(cfg.get("init_from_skip") or ())}]
    sources = OmegaConf.to_container(sources, resolve=True)
    for index, source in enumerate(sources):
        keys = {"path", "prefixes", "skip", "table_rows", "readout"}
        unknown = set(source) - keys if isinstance(source, dict) else {0}
        if unknown or "path" not in source:
            raise ConfigError(
                f"init_from[{index}] must be a mapping with a path and optional prefixes, "
                f"skip, table_rows and readout, got {source!r}"
            )
    return sources


def check_init_sources(cfg: DictConfig) -> None:
    """Every ``init_from`` path names a checkpoint (or a run folder holding one); the error
    says which entry does not and what to do."""
    for index, source in enumerate(init_sources(cfg)):
        try:
            resolve_checkpoint(source["path"])
        except FileNotFoundError as err:
            name = Path(source["path"]).name
            raise ConfigError(
                f"init_from[{index}]: {err}. Train that run first (e.g. mmembed-train "
                f"experiment={name} if that is an experiment's name) or set "
                f"init_from[{index}].path to a checkpoint or run folder"
            ) from None


def initialize_from(cfg: DictConfig, task: Any, ckpt_path: str | None) -> None:
    """``init_from``: other runs' weights (not their optimizer, schedule or step) for a new
    run; a resumed run (``ckpt_path``, or its run folder's ``last.ckpt``) restores its own
    instead."""
    sources = init_sources(cfg)
    if not sources:
        return
    if ckpt_path:
        log.warning("resuming from %s, so init_from=%s is not used", ckpt_path, cfg.init_from)
        return
    rows_set: list[int] = []  # rows earlier sources set, kept through a later projection
    for source in sources:
        report = init_from(
            task, source["path"], skip=source.get("skip") or (), prefixes=source.get("prefixes"),
            table_rows=source.get("table_rows") or "all", keep_rows=rows_set,
            readout=source.get("readout"),
        )  # fmt: skip
        rows_set.extend(report.rows)
        (log.warning if report.approximate else log.info)("%s", report.summary())


def instantiate_dict(section: DictConfig | None) -> list[Any]:
    if not section:
        return []
    return [
        hydra.utils.instantiate(conf)
        for conf in section.values()
        if isinstance(conf, DictConfig) and "_target_" in conf
    ]


def build_trainer(cfg: DictConfig) -> tuple[L.Trainer, list[Any]]:
    """The trainer with the configured callbacks, loggers and plugins (atomic checkpoint
    writes, ``conf/trainer/default.yaml``) plus what every run gets: the run guards, the run
    mechanics (preemption handling, RNG states in checkpoints, the command line's limits) and
    this process's cluster environment (requeueing off)."""
    callbacks = [*instantiate_dict(cfg.get("callbacks")), *run_guards(), *run_mechanics()]
    loggers = instantiate_dict(cfg.get("logger"))
    plugins = [hydra.utils.instantiate(plugin) for plugin in cfg.trainer.get("plugins") or ()]
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[*plugins, *cluster_plugins()] or None,
    )
    return trainer, loggers


def run(cfg: DictConfig) -> dict[str, float]:
    apply_empty_dict_overrides(cfg)
    validate_config(cfg)
    if cfg.get("torch_threads"):
        torch.set_num_threads(cfg.torch_threads)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resume_checkpoint(
        cfg.get("ckpt_path"), cfg.get("resume", "auto"), cfg.paths.checkpoint_dir,
        training=bool(cfg.get("train")),
    )  # fmt: skip
    trainer, loggers = build_trainer(cfg)
    check_process_count(trainer)  # before any data work: a mismatch would hang later
    if not ckpt_path:
        check_init_sources(cfg)  # a run to start from that is missing fails before the corpus

    build_corpus(cfg)
    datamodule = hydra.utils.instantiate(cfg.data)
    tokenizer = build_tokenizer(cfg, datamodule, ckpt_path)
    if ckpt_path and cfg.get("train"):  # the resumed run's series continue the old ones
        first_step = first_logged_step(ckpt_path)
        for logger in loggers:
            if hasattr(logger, "continue_from"):
                logger.continue_from(first_step)
    datamodule.set_tokenizer(tokenizer)
    datamodule.prepare_splits(fit=bool(cfg.get("train")), test=bool(cfg.get("test")))
    _save_tokenizer(tokenizer, output_dir / "tokenizer.json")

    task = hydra.utils.instantiate(
        cfg.task,
        tokenizer=tokenizer,
        optimizer=hydra.utils.instantiate(cfg.optimizer),
        scheduler=hydra.utils.instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
    )
    initialize_from(cfg, task, ckpt_path)
    hparams = {
        k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) else v
        for k, v in cfg.items()
        if k != "hydra"
    }
    for logger in loggers:
        logger.log_hyperparams(hparams)

    metrics: dict[str, float] = {}
    with sweep_job_ranks():
        stop = None
        if cfg.get("train"):
            trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
            metrics.update(_scalars(trainer.callback_metrics))
            stop = training_stop(trainer)
        # test-only runs (train=false ckpt_path=...) evaluate the given checkpoint
        best = _best_checkpoint(trainer) or (None if cfg.get("train") else ckpt_path)
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
    try:
        with naming_the_folder_on_full_disk(cfg.paths.output_dir):
            metrics = run(cfg)
    except Preempted as stop:
        log.warning("%s", stop)
        raise
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name else None


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    main()
