"""Initialising a new run from another run's weights (``init_from``), as NeMo's
``init_from_nemo_model`` does: weights only, never the optimizer, schedule or step.

The shared token table is matched row by row by token string, so a run with another
vocabulary (a tokenizer trained on new data) keeps every row whose token both runs know; rows of
new tokens keep the fresh initialisation the table was built with. Every other tensor must
match by name and shape, or be listed in ``skip`` (name prefixes): one error names all that do
not, instead of a partial load that silently trains half a model from scratch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mmembed.text.tokenizers import Tokenizer, load_tokenizer_dict

__all__ = ["InitReport", "init_from", "load_init_checkpoint", "resolve_checkpoint"]


class InitFromError(ValueError):
    """The weights of ``init_from`` do not fit the model; the message names every problem."""


@dataclass
class InitReport:
    """What ``init_from`` did: tensors copied, table rows matched by token, tokens new to the
    source (initialised fresh), and the names left alone because they were skipped."""

    source: str
    copied: int = 0
    rows_matched: int = 0
    new_tokens: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"init_from {self.source}: {self.copied} tensors copied",
            f"  token table: {self.rows_matched} rows matched by token, "
            f"{len(self.new_tokens)} new tokens initialised fresh"
            + (f" (e.g. {self.new_tokens[:8]})" if self.new_tokens else ""),
        ]
        if self.skipped:
            lines.append(f"  left at their initial values (init_from_skip): {self.skipped}")
        return "\n".join(lines)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint ``path`` names: a ``.ckpt`` file; a run folder (its best checkpoint, else
    ``last.ckpt``); or a folder of runs, such as ``logs/asr_default`` (its newest run that has a
    checkpoint)."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"init_from: {path} is neither a checkpoint nor a run folder")
    runs = [path] if (path / "checkpoints").is_dir() else []
    if not runs:
        folders = [p for p in path.glob("**/checkpoints") if p.is_dir()]
        runs = sorted((p.parent for p in folders), key=lambda p: p.stat().st_mtime, reverse=True)
    for run in runs:
        checkpoints = run / "checkpoints"
        best = sorted(p for p in checkpoints.glob("*.ckpt") if not p.name.startswith("last"))
        if best:
            return best[-1]
        if (checkpoints / "last.ckpt").is_file():
            return checkpoints / "last.ckpt"
    raise FileNotFoundError(f"init_from: no checkpoint under {path}")


def load_init_checkpoint(path: str | os.PathLike) -> tuple[Path, dict]:
    """The resolved checkpoint file and its contents, loaded with ``weights_only=True``."""
    source = resolve_checkpoint(path)
    try:
        checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # a pickle, zip or truncation error: say which file
        raise InitFromError(f"init_from: cannot read {source} as a checkpoint ({err})") from err
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        raise InitFromError(f"init_from: {source} holds no state_dict; not a training checkpoint")
    return source, dict(checkpoint)


def _table_names(model: nn.Module, table: nn.Parameter) -> set[str]:
    """Every state-dict name under which the shared table appears (decoders and label
    encoders register the same module)."""
    return {
        name for name, param in model.named_parameters(remove_duplicate=False) if param is table
    }


def init_from(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    table: nn.Parameter | None = None,
    tokenizer: Tokenizer | None = None,
    skip: Sequence[str] = (),
) -> InitReport:
    """Copy the weights of the checkpoint at ``path`` into ``model``.

    Args:
        model: the new model (a task); its own initial values stay where nothing is copied.
        path: a checkpoint, a run folder or a folder of runs (:func:`resolve_checkpoint`).
        table: the shared table parameter (default ``model.embedding.weight``); its rows are
            matched by token string between the checkpoint's tokenizer and ``tokenizer``.
        tokenizer: the new model's tokenizer (default ``model.tokenizer``).
        skip: name prefixes to leave at their initial values (e.g. a classifier head trained
            on other classes).

    Raises:
        InitFromError: names every tensor that is missing from the checkpoint or has another
            shape there (unless skipped), or a checkpoint without a tokenizer.
    """
    source, checkpoint = load_init_checkpoint(path)
    report = InitReport(str(source))
    state = checkpoint["state_dict"]
    table = model.embedding.weight if table is None else table
    tokenizer = model.tokenizer if tokenizer is None else tokenizer
    table_names = _table_names(model, table)
    target = model.state_dict()

    def skipped(name: str) -> bool:
        return name.startswith(tuple(skip))

    problems, updates = [], {}
    for name, value in target.items():
        if skipped(name):
            report.skipped.append(name)
        elif name not in state:
            problems.append(f"{name} (missing from the checkpoint)")
        elif name in table_names:
            if state[name].shape[1:] != value.shape[1:]:
                problems.append(
                    f"{name} (token table rows of width {state[name].shape[1]} in the "
                    f"checkpoint, {value.shape[1]} in the model)"
                )
        elif state[name].shape != value.shape:
            problems.append(
                f"{name} (checkpoint {tuple(state[name].shape)}, model {tuple(value.shape)})"
            )
        else:
            updates[name] = state[name]
    if problems:
        raise InitFromError(
            f"init_from {source}: {len(problems)} tensor(s) do not fit the model (list their "
            "prefixes in init_from_skip to keep them at their initial values): "
            + "; ".join(problems[:12])
            + ("; ..." if len(problems) > 12 else "")
        )
    table_source = next((name for name in sorted(table_names) if name in state), None)
    if table_source is not None and not skipped(table_source):
        if "tokenizer" not in checkpoint:
            raise InitFromError(f"init_from: {source} holds no tokenizer to match table rows by")
        rows = _match_rows(state[table_source], load_tokenizer_dict(checkpoint["tokenizer"]),
                           tokenizer, report)  # fmt: skip
        with torch.no_grad():
            table[rows["new"]] = rows["values"].to(table.dtype)
    model.load_state_dict(updates, strict=False)
    report.copied = len(updates) + (table_source is not None)
    return report


def _match_rows(old_table: torch.Tensor, old: Tokenizer, new: Tokenizer, report: InitReport):
    new_ids, old_ids = [], []
    for token_id in range(new.vocab_size):
        token = new.id_to_token(token_id)
        old_id = old.token_to_id(token)
        if old.id_to_token(old_id) == token and old_id < old_table.shape[0]:
            new_ids.append(token_id)
            old_ids.append(old_id)
        else:
            report.new_tokens.append(token)
    report.rows_matched = len(new_ids)
    return {"new": torch.tensor(new_ids, dtype=torch.long), "values": old_table[old_ids]}
