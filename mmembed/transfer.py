"""Initialising a new run from another run's weights (``init_from``), as NeMo's
``init_from_nemo_model`` does: weights only, never the optimizer, schedule or step.

The shared token table is matched row by row by token string (a space and the subword word
marker ``▁`` count as one token), so a run with another vocabulary (a tokenizer trained on new
data) keeps every row whose token both runs know; rows of new tokens keep the fresh
initialisation the table was built with. Every other tensor must
match by name and shape, or be listed in ``skip`` (name prefixes): one error names all that do
not, instead of a partial load that silently trains half a model from scratch.

A ``prefixes`` map takes parts of a checkpoint into another architecture: each source name
prefix is renamed to a target prefix (``{"encoder": "speech.encoder"}`` puts the speech encoder
of a recogniser into the multimodal model's speech part). Then only the mapped tensors are
copied, every model tensor under a target prefix must be found among them, and the rest of the
model keeps its initial values (counted in the report).

Several runs into one table (the multimodal model built from three single-task runs): what a
task reads of the table is its *projected* rows, ``E[t] @ W.T + b``, never E alone. So a row
taken from a run whose projection is not the model's is solved for in the model's projection
(``E[t] = (P[t] - b) @ pinv(W.T)``: exact when the table is at least as wide as the projection's
output, as in every mmembed config), and when a run brings its own projection, the rows earlier
runs set (``keep_rows``) are re-expressed in it. Every part then scores its tokens exactly as it
did in its own run. ``table_rows`` says which rows a run gives: ``"all"`` it knows,
``"characters"`` (the CTC blank and the single characters: what a character recogniser reads;
its ``<s>`` and ``</s>`` rows were never trained) or ``"none"``. Later runs win on a shared token.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mmembed.text.tokenizers import SPECIAL_TOKENS, WORD_MARKER, Tokenizer, load_tokenizer_dict

__all__ = [
    "TABLE_ROWS",
    "InitReport",
    "init_from",
    "load_init_checkpoint",
    "rename_prefix",
    "resolve_checkpoint",
]

# which rows of the table a source gives (see the module docstring)
TABLE_ROWS = ("all", "characters", "none")


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
    unmapped: int = 0
    # target ids of the rows this source set, and how: "copied" (its own projection) or
    # "solved" (into the model's); the largest error of the projected rows so reproduced
    rows: list[int] = field(default_factory=list)
    row_mode: str = "copied"
    reexpressed: int = 0
    readout_rows: int = 0
    projection_error: float = 0.0
    # the error relative to the largest projected value: above ~1e-4 the rows are approximate
    # (a table narrower than its projection's output cannot hold another projection's rows)
    relative_error: float = 0.0

    @property
    def approximate(self) -> bool:
        return self.relative_error > 1e-4

    def summary(self) -> str:
        lines = [
            f"init_from {self.source}: {self.copied} tensors copied",
            f"  token table: {self.rows_matched} rows matched by token, "
            f"{len(self.new_tokens)} new tokens initialised fresh"
            + (f" (e.g. {self.new_tokens[:8]})" if self.new_tokens else ""),
        ]
        if self.row_mode == "solved" or self.reexpressed:
            lines.append(
                f"  projected rows: {self.rows_matched} {self.row_mode} into the model's "
                f"projection, {self.reexpressed} earlier rows re-expressed in this one (largest "
                f"error of a projected row: {self.projection_error:.2e})"
            )
        if self.readout_rows:
            lines.append(
                f"  read-out map fitted: the part scores {self.readout_rows} table rows as the "
                f"checkpoint's model scored its own (largest error: {self.projection_error:.2e})"
            )
        if self.approximate:
            lines.append(
                f"  WARNING: those rows are approximate ({self.relative_error:.1%} of the largest "
                "value): the table is narrower than the projection's output, so rows learned "
                "under another projection do not fit; make embedding_dim >= the width"
            )
        if self.skipped:
            lines.append(f"  left at their initial values (init_from_skip): {self.skipped}")
        if self.unmapped:
            lines.append(f"  {self.unmapped} tensors outside the prefix map left as they were")
        return "\n".join(lines)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint ``path`` names: a ``.ckpt`` file; a run folder (its best checkpoint, else
    ``last.ckpt``); or a folder of runs, such as ``logs/asr_default`` (its newest run that has a
    checkpoint)."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is neither a checkpoint nor a run folder")
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
    raise FileNotFoundError(f"no checkpoint under {path}")


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
    prefixes: Mapping[str, str] | None = None,
    table_rows: str = "all",
    keep_rows: Sequence[int] = (),
    readout: str | None = None,
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
        prefixes: source -> target name prefixes (``""`` is the whole model), to take parts
            of a checkpoint into another architecture; None: every tensor under its own name.
        table_rows: which of the checkpoint's rows to take: ``"all"`` it shares with the model,
            ``"characters"`` (the blank and the single characters, what a character recogniser
            reads) or ``"none"``.
        keep_rows: rows an earlier ``init_from`` set (its report's ``rows``): if this
            checkpoint brings its own projection, they are re-expressed in it so that their
            projected rows stay what they were.
        readout: the path of a :class:`~mmembed.models.table_rows.TableRows` with a read-out
            map (``"speech.embedding"``): instead of writing the checkpoint's rows into the
            table, fit that map so that the part scores the table's rows (another run's) as
            the checkpoint's model scored its own (:func:`fit_readout`).

    Raises:
        InitFromError: names every tensor that is missing from the checkpoint or has another
            shape there (unless skipped), or a checkpoint without a tokenizer.
    """
    if table_rows not in TABLE_ROWS:
        raise InitFromError(
            f"init_from: table_rows must be one of {TABLE_ROWS}, got {table_rows!r}"
        )
    source, checkpoint = load_init_checkpoint(path)
    report = InitReport(str(source))
    state = checkpoint["state_dict"]
    if prefixes is not None:
        state = _renamed(state, prefixes)
    table = model.embedding.weight if table is None else table
    tokenizer = model.tokenizer if tokenizer is None else tokenizer
    layer = _layer_of(model, table)
    table_names = _table_names(model, table)
    projection_names = _projection_names(model, layer)
    target = model.state_dict()

    def skipped(name: str) -> bool:
        return name.startswith(tuple(skip))

    problems, updates = [], {}
    for name, value in target.items():
        outside = prefixes is not None and all(
            rename_prefix(name, prefix, prefix) is None for prefix in prefixes.values()
        )
        if outside:
            report.unmapped += 1
        elif skipped(name):
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
    takes_rows = table_source is not None and not skipped(table_source) and table_rows != "none"
    brings_projection = any(name in updates for name in projection_names)
    before = _projected(layer) if layer is not None else None
    model.load_state_dict(updates, strict=False)
    if layer is not None and brings_projection and keep_rows:
        # this run's projection replaces the model's: earlier runs' rows must keep their outputs
        keep = torch.tensor(sorted(set(keep_rows)), dtype=torch.long)
        _set_projected_rows(layer, keep, before[keep], report)
        report.reexpressed = len(keep)
    if takes_rows:
        if "tokenizer" not in checkpoint:
            raise InitFromError(f"init_from: {source} holds no tokenizer to match table rows by")
        old_tokenizer = load_tokenizer_dict(checkpoint["tokenizer"])
        rows = _match_rows(state[table_source], old_tokenizer, tokenizer, report,
                           characters_only=table_rows == "characters")  # fmt: skip
        report.rows = rows["new"].tolist()
        own_projection = layer is None or brings_projection or layer.projection is None
        if own_projection:
            with torch.no_grad():
                table[rows["new"]] = rows["values"].to(table.dtype)
        else:
            source_rows = _source_projected(state, table_source, rows["values"])
            _set_projected_rows(layer, rows["new"], source_rows, report)
            report.row_mode = "solved"
    report.copied = len(updates) + takes_rows
    if readout is not None:
        fit_readout(model, readout, checkpoint, tokenizer, report)
    return report


def fit_readout(model: nn.Module, path: str, checkpoint: Mapping, tokenizer: Tokenizer,
                report: InitReport) -> None:  # fmt: skip
    """Fit the read-out map of the TableRows at ``path`` so that its logits equal the
    checkpoint's model's for every row the part scores.

    A part scores ``h -> (h @ M.T) . P[r]`` for its rows r of the table's projected rows P; the
    checkpoint's model scored ``h . Q[r]`` with its own rows Q (its table ``embedding``). The
    map solves ``P[rows] @ M = Q[rows]`` (least squares; exact while the part reads no more
    rows than the width, 42 of 128 for a character recogniser). A token the checkpoint's
    vocabulary lacks (a digit a captioner knows and the recogniser never heard) takes its
    ``</s>`` row: a row a CTC model learned never to emit.
    """
    part = model.get_submodule(path)
    if getattr(part, "readout", None) is None:
        raise InitFromError(f"init_from: {path} has no read-out map (TableRows(readout=True))")
    state = checkpoint["state_dict"]
    if "embedding.weight" not in state or "tokenizer" not in checkpoint:
        raise InitFromError(
            f"init_from: {report.source} holds no token table (embedding.weight) and tokenizer"
        )
    old = load_tokenizer_dict(checkpoint["tokenizer"])
    never_emitted = old.token_to_id(SPECIAL_TOKENS[3])
    old_ids = []
    for row in part.rows.tolist():
        old_id = _find_token(old, tokenizer.id_to_token(row))
        old_ids.append(never_emitted if old_id is None else old_id)
    targets = _source_projected(state, "embedding.weight", state["embedding.weight"][old_ids])
    layer = part.table
    ours = _projected(layer)[part.rows]
    # logits = readout(h) . P[rows] = h @ M.T @ P[rows].T, so P[rows] @ M = Q[rows]
    weight = torch.linalg.lstsq(ours, targets).solution
    with torch.no_grad():
        part.readout.weight.copy_(weight.to(part.readout.weight.dtype))
    report.readout_rows = len(old_ids)
    _record_error(report, ours @ part.readout.weight.detach().double(), targets)


def _layer_of(model: nn.Module, table: nn.Parameter) -> nn.Module | None:
    """The SharedEmbedding that owns ``table`` (None for a bare table)."""
    return next((m for m in model.modules() if getattr(m, "weight", None) is table), None)


def _projection_names(model: nn.Module, layer: nn.Module | None) -> set[str]:
    projection = getattr(layer, "projection", None)
    if projection is None:
        return set()
    own = {id(p) for p in projection.parameters()}
    return {
        name for name, param in model.named_parameters(remove_duplicate=False) if id(param) in own
    }


def _projected(layer: nn.Module) -> torch.Tensor:
    """The layer's projected rows ``E @ W.T + b`` (what every task reads), in float64."""
    with torch.no_grad():
        return layer.projected_table().double()


def _source_projected(state: Mapping[str, torch.Tensor], table_name: str, rows: torch.Tensor):
    """The checkpoint's projected rows of ``rows`` (its table rows), by its own projection:
    ``<layer>.projection.weight/bias`` beside ``<layer>.weight``; none stored = identity."""
    prefix = table_name[: -len("weight")]
    weight, bias = state.get(prefix + "projection.weight"), state.get(prefix + "projection.bias")
    out = rows.double()
    if weight is not None:
        out = out @ weight.double().t()
    if bias is not None:
        out = out + bias.double()
    return out


def _set_projected_rows(layer: nn.Module, ids: torch.Tensor, projected: torch.Tensor,
                        report: InitReport) -> None:  # fmt: skip
    """Set rows ``ids`` of the layer's table so that its projected rows equal ``projected``:
    ``E = (P - b) @ pinv(W.T)``, least squares (exact when the table is at least as wide as
    the projection's output and W has full rank)."""
    projection = layer.projection
    weight = projection.weight.detach().double()
    target = projected.double()
    if projection.bias is not None:
        target = target - projection.bias.detach().double()
    rows = target @ torch.linalg.pinv(weight.t())
    with torch.no_grad():
        layer.weight[ids] = rows.to(layer.weight.dtype)
    if len(ids):
        _record_error(report, _projected(layer)[ids], projected.double())


def _record_error(report: InitReport, got: torch.Tensor, wanted: torch.Tensor) -> None:
    """The largest error of rows reproduced in another projection (absolute and relative)."""
    error = float((got - wanted).abs().max())
    report.projection_error = max(report.projection_error, error)
    report.relative_error = max(report.relative_error, error / (float(wanted.abs().max()) or 1.0))


def rename_prefix(name: str, old: str, new: str) -> str | None:
    """``name`` with its leading ``old`` components replaced by ``new`` (``"encoder.conv.weight"``
    with ``encoder`` -> ``speech.encoder``: ``"speech.encoder.conv.weight"``), or None when it
    does not start with them. Prefixes are whole components; ``""`` prefixes every name."""
    if old and name != old and not name.startswith(old + "."):
        return None
    rest = name[len(old) :].lstrip(".")
    return ".".join(part for part in (new, rest) if part)


def _renamed(state: Mapping[str, torch.Tensor], prefixes: Mapping[str, str]) -> dict:
    """The tensors of ``state`` under a source prefix, renamed to their target (the longest
    matching source prefix wins)."""
    ordered = sorted(prefixes.items(), key=lambda item: len(item[0]), reverse=True)
    renamed = {}
    for name, value in state.items():
        for old, new in ordered:
            target = rename_prefix(name, old, new)
            if target is not None:
                renamed[target] = value
                break
    return renamed


def _match_rows(old_table: torch.Tensor, old: Tokenizer, new: Tokenizer, report: InitReport,
                characters_only: bool = False):  # fmt: skip
    new_ids, old_ids = [], []
    for token_id in range(new.vocab_size):
        token = new.id_to_token(token_id)
        if characters_only and not _is_character_row(token):
            continue
        old_id = _find_token(old, token)
        if old_id is not None and old_id < old_table.shape[0]:
            new_ids.append(token_id)
            old_ids.append(old_id)
        else:
            report.new_tokens.append(token)
    report.rows_matched = len(new_ids)
    return {"new": torch.tensor(new_ids, dtype=torch.long), "values": old_table[old_ids]}


def _is_character_row(token: str) -> bool:
    """A row a character recogniser reads: the blank (CTC's), ``<unk>`` or one character."""
    return token in (SPECIAL_TOKENS[0], SPECIAL_TOKENS[1]) or len(token) == 1


def _find_token(tokenizer: Tokenizer, token: str) -> int | None:
    """The id of ``token`` in ``tokenizer``, or None. A space and the subword word marker
    ``▁`` are the same token (a character vocabulary's space row serves a BPE one's ``▁``)."""
    for spelling in (token, token.replace(WORD_MARKER, " "), token.replace(" ", WORD_MARKER)):
        token_id = tokenizer.token_to_id(spelling)
        if tokenizer.id_to_token(token_id) == spelling:
            return token_id
    return None
