"""What the image and video encoders share: loading a backbone's weights from a local
checkpoint (clear errors on any mismatch) and the projection into the shared width, with an
optionally frozen backbone."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

__all__ = ["BackboneEncoder", "CheckpointMismatchError", "load_backbone_checkpoint"]


class CheckpointMismatchError(ValueError):
    """A checkpoint whose parameter names or shapes do not fit the backbone."""


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a pickle error, a zip error, a truncated file: say which file
        message = f"{path}: cannot read it as a torch checkpoint ({err})"
        raise CheckpointMismatchError(message) from err
    # Training checkpoints nest the weights; DataParallel / DDP prefix every name with "module.".
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise CheckpointMismatchError(f"{path}: holds no state dict of tensors")
    return {name.removeprefix("module."): value for name, value in state.items()}


def load_backbone_checkpoint(
    model: nn.Module,
    checkpoint: str | os.PathLike,
    ignore_prefixes: Sequence[str] = (),
    adapt: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> None:
    """Load a local state dict into ``model``, failing clearly on any mismatch.

    Args:
        model: the module whose ``state_dict`` names the checkpoint must use (a full torchvision
            classifier for the torchvision backbones, so their published ``.pth`` files load).
        checkpoint: path to a ``torch.save``-d state dict (also accepted: one nested under
            ``"state_dict"`` or ``"model"``, and ``"module."``-prefixed names). Read with
            ``weights_only=True``: a checkpoint cannot run code.
        ignore_prefixes: names that may be missing, extra or of another shape (the dropped
            classification head).
        adapt: rewrites the loaded state dict before matching (e.g. resizing ViT positions).

    Raises:
        FileNotFoundError: no file there (weights are never downloaded).
        CheckpointMismatchError: unreadable, or names/shapes that do not fit ``model``.
    """
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"backbone checkpoint {path} does not exist. Pretrained weights are never "
            "downloaded: save them there first (e.g. torchvision's published .pth file), or set "
            "checkpoint: null to train from scratch"
        )
    state = _read_state_dict(path)
    if adapt is not None:
        state = adapt(state)
    expected = model.state_dict()

    def ignored(name: str) -> bool:
        return name.startswith(tuple(ignore_prefixes))

    missing = sorted(name for name in expected if name not in state and not ignored(name))
    unexpected = sorted(name for name in state if name not in expected and not ignored(name))
    reshaped = sorted(
        f"{name} {tuple(state[name].shape)} (model: {tuple(expected[name].shape)})"
        for name in expected
        if name in state and not ignored(name) and state[name].shape != expected[name].shape
    )
    if missing or unexpected or reshaped:
        problems = [
            f"{label} ({len(names)}): {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}"
            for label, names in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", reshaped),
            )
            if names
        ]
        raise CheckpointMismatchError(
            f"{path} does not fit {type(model).__name__}: " + "; ".join(problems)
        )
    # Left out now: only ignored (head) entries that are absent or of another shape.
    usable = {
        name: value
        for name, value in state.items()
        if name in expected and value.shape == expected[name].shape
    }
    model.load_state_dict(usable, strict=False)


class BackboneEncoder(nn.Module):
    """A backbone with ``channels`` features and a linear projection to ``out_dim``.

    ``freeze_backbone`` trains only what sits on top (for a pretrained backbone): the backbone
    gets no gradients and stays in eval mode, so its BatchNorm statistics stay those of the
    checkpoint even though Lightning calls ``train()`` on the whole model every epoch.
    Subclasses define ``forward``.
    """

    def __init__(self, backbone: nn.Module, out_dim: int, freeze_backbone: bool = False):
        super().__init__()
        self.backbone = backbone
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            backbone.requires_grad_(False)
        self.out_dim = out_dim
        self.projection = nn.Linear(backbone.channels, out_dim)
        self.train(self.training)

    def train(self, mode: bool = True) -> BackboneEncoder:
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self
