"""``SharedEmbedding``: one token table shared by every modality, fused with a projection into the
model width. ``y = E[ids] @ W.T + b`` with ``nn.Embedding`` + ``nn.Linear`` semantics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from os import PathLike
from typing import Literal

import torch
from torch import nn

from mmembed.ops.embed_project import (
    check_ids,
    checked_ids,
    cost_model,
    embed_project,
    torch_path,
)

Backend = Literal["auto", "triton", "torch"]
Strategy = Literal["auto", "direct", "folded"]

__all__ = ["SharedEmbedding"]


class SharedEmbedding(nn.Module):
    """Embedding lookup fused with a linear projection, ``E[ids] @ W.T + b``.

    Args:
        num_embeddings: rows V of the table E.
        embedding_dim: width D of a table row.
        out_features: model width H of the projection W (H x D). ``None``: no projection, the
            layer is a plain lookup (``nn.Embedding``).
        bias: whether the projection has a bias b (H,).
        padding_idx: this row gets no gradient and is initialised to zeros, as in
            ``nn.Embedding`` (so it outputs just the bias).
        max_norm: rows looked up with a norm above this are renormalised in place first,
            as in ``nn.Embedding``. ``norm_type`` is the p of that norm.
        backend: ``"triton"``: the Triton kernels (on CUDA; the torch path elsewhere);
            ``"torch"``: the same plans in torch ops; ``"auto"``: per device and shape class,
            whichever the recorded benchmarks show faster (the table ``AUTO`` in
            :mod:`mmembed.ops.embed_project.cost_model`; today the torch path everywhere).
        strategy: ``"direct"`` gathers rows into the GEMM; ``"folded"`` projects the whole table
            once (V x D x H) and gathers from it, cheaper when V is small relative to the number
            of ids; ``"auto"`` picks by the roofline cost model.
        deterministic: accepted for configs that set it; every path of this layer already has a
            bitwise-repeatable backward (no float atomics anywhere), so it changes nothing.
        check_ids: raise ``IndexError`` naming an id outside ``[0, num_embeddings)`` and its
            position, in eager mode and in compiled and exported graphs alike (one host sync).
            Off: nothing is checked, and such an id reads as an all-zero table row (the output
            is the bias) that receives no gradient.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        out_features: int | None = None,
        bias: bool = True,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        backend: Backend = "auto",
        deterministic: bool = False,
        strategy: Strategy = "auto",
        check_ids: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if num_embeddings <= 0 or embedding_dim <= 0:
            raise ValueError(
                f"num_embeddings and embedding_dim must be positive, got {num_embeddings} "
                f"and {embedding_dim}"
            )
        if out_features is not None and out_features <= 0:
            raise ValueError(f"out_features must be positive or None, got {out_features}")
        if backend not in ("auto", "triton", "torch"):
            raise ValueError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
        if strategy not in ("auto", "direct", "folded"):
            raise ValueError(f"strategy must be 'auto', 'direct' or 'folded', got {strategy!r}")
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(
                    f"padding_idx {padding_idx} is outside a table of {num_embeddings} rows"
                )
            padding_idx %= num_embeddings
        factory = {"device": device, "dtype": dtype}
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.out_features = out_features
        self.padding_idx = padding_idx
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.backend = backend
        self.strategy = strategy
        self.deterministic = deterministic
        self.check_ids = check_ids
        self.weight = nn.Parameter(torch.empty(num_embeddings, embedding_dim, **factory))
        self.projection = (
            nn.Linear(embedding_dim, out_features, bias=bias, **factory)
            if out_features is not None
            else None
        )
        self.reset_parameters()

    # ----------------------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """``nn.Embedding``'s init for the table (N(0, 1), zero padding row), ``nn.Linear``'s for
        the projection."""
        nn.init.normal_(self.weight)
        self._zero_padding_row()
        if self.projection is not None:
            self.projection.reset_parameters()

    def _zero_padding_row(self) -> None:
        if self.padding_idx is not None:
            with torch.no_grad():
                self.weight[self.padding_idx].fill_(0)

    @property
    def output_dim(self) -> int:
        return self.out_features if self.out_features is not None else self.embedding_dim

    def extra_repr(self) -> str:
        parts = [f"{self.num_embeddings}, {self.embedding_dim}"]
        if self.out_features is not None:
            parts.append(f"out_features={self.out_features}")
            parts.append(f"bias={self.projection.bias is not None}")
        for name in ("padding_idx", "max_norm"):
            if getattr(self, name) is not None:
                parts.append(f"{name}={getattr(self, name)}")
        if self.backend != "auto":
            parts.append(f"backend={self.backend!r}")
        if self.strategy != "auto":
            parts.append(f"strategy={self.strategy!r}")
        return ", ".join(parts)

    # ----------------------------------------------------------------------------------------
    def plan(self, num_ids, dtype: torch.dtype | None = None) -> cost_model.Plan:
        """How a call with ``num_ids`` ids computes on the table's device: backend, whether it
        folds, and the shape class (:func:`mmembed.ops.embed_project.cost_model.plan`)."""
        if dtype is None:
            dtype = self.weight.dtype if self.projection is None else self.projection.weight.dtype
        # a pure function of its arguments: cached in eager mode, traced (a constant) when compiling
        plan = cost_model.plan if torch.compiler.is_compiling() else cost_model.cached_plan
        return plan(
            num_ids, self.num_embeddings, self.embedding_dim, self.out_features, dtype,
            self.weight.device, self.backend, self.strategy,
        )  # fmt: skip

    def _validate_ids(self, ids: torch.Tensor) -> None:
        if ids.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"ids must be int32 or int64, got {ids.dtype}")
        if ids.device != self.weight.device:
            raise ValueError(f"ids are on {ids.device} but the table is on {self.weight.device}")

    def _projection_params(self):
        projection = self.projection
        if projection is None:
            return None, None
        proj_weight, bias = projection.weight, projection.bias
        # Autocast does not reach custom ops: mimic what it does to nn.Linear (cast W and b,
        # the table is cast row by row inside the kernel).
        device = proj_weight.device.type
        if torch.is_autocast_enabled(device):
            dtype = torch.get_autocast_dtype(device)
            proj_weight = proj_weight.to(dtype)
            bias = bias.to(dtype) if bias is not None else None
        return proj_weight, bias

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``(*ids.shape)`` int ids -> ``(*ids.shape, output_dim)``."""
        self._validate_ids(ids)
        if self.check_ids and torch.compiler.is_compiling():  # an op, kept in the graph
            ids = checked_ids(ids, self.num_embeddings)
        elif self.check_ids:  # eager: the same check without an op's dispatch (~0.2 ms on CPU)
            check_ids(ids, self.num_embeddings)
        if self.max_norm is not None:
            with torch.no_grad():
                torch.embedding_renorm_(
                    self.weight, ids.reshape(-1).contiguous(), self.max_norm, self.norm_type
                )

        proj_weight, bias = self._projection_params()
        dtype = proj_weight.dtype if proj_weight is not None else self.weight.dtype
        plan = self.plan(ids.numel(), dtype)
        padding_idx = -1 if self.padding_idx is None else self.padding_idx
        mask = not self.check_ids
        if plan.backend == "torch":  # torch ops under autograd: their backward is sum-by-id
            return torch_path.forward(ids, self.weight, proj_weight, bias, plan.fold, mask,
                                      padding_idx)  # fmt: skip
        out = embed_project(ids.reshape(-1), self.weight, proj_weight, bias, padding_idx,
                            plan.fold, True, mask)  # fmt: skip
        return out.reshape(*ids.shape, out.shape[-1])

    # ----------------------------------------------------------------------------------------
    def projected_table(self) -> torch.Tensor:
        """Every row as the layer outputs it, ``E @ W.T + b`` (V x output_dim), differentiable.

        Rows above ``max_norm`` are renormalised (out of place) as a lookup would do.
        """
        table = self.weight
        if self.max_norm is not None:
            norms = table.detach().norm(p=self.norm_type, dim=1, keepdim=True)
            scale = torch.where(norms > self.max_norm, self.max_norm / (norms + 1e-7), 1.0)
            table = table * scale
        if self.projection is None:
            return table
        return self.projection(table)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Score hidden states (..., output_dim) against every projected row: (..., V).

        For weight-tied decoders and CTC heads. Equal to ``hidden @ projected_table().T`` and
        differentiable into E and W; computed as ``(hidden @ W) @ E.T + hidden @ b`` when that
        is cheaper (it never builds the V x H table when D < H).
        """
        if hidden.shape[-1] != self.output_dim:
            raise ValueError(
                f"hidden states have width {hidden.shape[-1]}, the layer outputs {self.output_dim}"
            )
        if self.projection is None or self.max_norm is not None:
            return hidden @ self.projected_table().t()
        w, b = self.projection.weight, self.projection.bias
        scores = (hidden @ w) @ self.weight.t()
        if b is not None:
            scores = scores + (hidden @ b).unsqueeze(-1)
        return scores

    @torch.no_grad()
    def folded(self) -> nn.Embedding:
        """An equivalent frozen ``nn.Embedding`` holding ``E @ W.T + b`` for inference/export."""
        table = self.projected_table().detach().clone()
        return nn.Embedding.from_pretrained(table, freeze=True, padding_idx=self.padding_idx)

    # ----------------------------------------------------------------------------------------
    def freeze(self, projection: bool = False) -> SharedEmbedding:
        """Stop training the table (and the projection too if ``projection``)."""
        self.weight.requires_grad_(False)
        if projection and self.projection is not None:
            self.projection.requires_grad_(False)
        return self

    def unfreeze(self) -> SharedEmbedding:
        """Train the table and the projection again."""
        self.requires_grad_(True)
        return self

    @classmethod
    def from_pretrained(
        cls,
        embeddings: torch.Tensor,
        freeze: bool = True,
        out_features: int | None = None,
        **kwargs,
    ) -> SharedEmbedding:
        """A layer whose table is ``embeddings`` (V x D), like ``nn.Embedding.from_pretrained``.

        ``freeze`` freezes only the table: a projection (``out_features``) stays trainable.
        The padding row keeps the given values (as in torch).
        """
        if embeddings.dim() != 2:
            raise ValueError(
                f"embeddings must be 2-D (rows x dim), got shape {tuple(embeddings.shape)}"
            )
        kwargs.setdefault("device", embeddings.device)
        kwargs.setdefault("dtype", embeddings.dtype)
        layer = cls(embeddings.shape[0], embeddings.shape[1], out_features, **kwargs)
        with torch.no_grad():
            layer.weight.copy_(embeddings)
        if freeze:
            layer.freeze()
        return layer

    @classmethod
    def from_word_vectors(
        cls,
        path: str | PathLike,
        vocab: Sequence[str] | Mapping[str, int],
        freeze: bool = True,
        out_features: int | None = None,
        vector_format: str = "auto",
        seed: int = 0,
        **kwargs,
    ) -> SharedEmbedding:
        """A layer initialised from a GloVe/word2vec file, aligned to ``vocab``.

        Tokens without a vector get random rows (their list is in ``layer.pretrained.missing``).
        """
        from mmembed.pretrained import load_word_vectors

        vectors = load_word_vectors(path, vocab, format=vector_format, seed=seed)
        layer = cls.from_pretrained(
            vectors.weight, freeze=freeze, out_features=out_features, **kwargs
        )
        layer.pretrained = vectors
        return layer
