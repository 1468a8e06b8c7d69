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
    quantized,
    torch_path,
)

Backend = Literal["auto", "triton", "torch"]
Strategy = Literal["auto", "direct", "folded"]
BagMode = Literal["sum", "mean", "max"]

__all__ = ["SharedEmbedding"]


class TableArgumentError(ValueError, AssertionError):
    """A table argument ``nn.Embedding`` refuses with an ``AssertionError`` (padding_idx outside
    the table, a ``_weight`` or pretrained table of the wrong shape): catchable as either."""


class NegativeSizeError(ValueError, RuntimeError):
    """A negative table or projection size (``RuntimeError`` in torch)."""


class IdsDtypeError(TypeError, RuntimeError):
    """Ids that are not int32/int64 (``RuntimeError`` in torch, ``TypeError`` before)."""


# The options the repr shows when they differ from these defaults (nn.Embedding's first).
_REPR_DEFAULTS = (
    ("padding_idx", None), ("max_norm", None), ("norm_type", 2.0),
    ("scale_grad_by_freq", False), ("sparse", False), ("backend", "auto"),
    ("strategy", "auto"), ("deterministic", False), ("check_ids", True), ("mode", None),
    ("include_last_offset", False), ("mask_zero", False),
)  # fmt: skip


class SharedEmbedding(nn.Module):
    """Embedding lookup fused with a linear projection, ``E[ids] @ W.T + b``.

    The positional arguments are ``nn.Embedding``'s, in its order, with its meaning; everything
    this layer adds is keyword-only. With ``out_features=None`` it is a drop-in ``nn.Embedding``.

    Args:
        num_embeddings: rows V of the table E (0 allowed, as in torch).
        embedding_dim: width D of a table row (0 allowed).
        padding_idx: this row gets no gradient and is initialised to zeros, as in
            ``nn.Embedding`` (so it outputs just the bias).
        max_norm: rows looked up with a norm above this are renormalised in place first
            (on ``weight.detach()``, as in ``nn.Embedding``). ``norm_type`` is the p of that norm.
        scale_grad_by_freq: scale the table's gradient by the inverse frequency of each id in
            the batch (``nn.Embedding``'s option; the projection's gradient is not scaled).
        sparse: the table's gradient is a sparse tensor (for ``SGD``/``SparseAdam``), as in
            ``nn.Embedding``. The fused plans produce dense gradients, so a sparse layer always
            runs the direct torch plan.
        _weight: use this tensor (V x D) as the table, sharing its storage (``nn.Embedding``'s
            ``_weight``). ``_freeze``: the table is frozen (as in torch). Integer tables are
            always frozen.
        out_features: model width H of the projection W (H x D). ``None``: no projection, the
            layer is a plain lookup (``nn.Embedding``). Keyword-only.
        bias: whether the projection has a bias b (H,).
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
            is the bias) that receives no gradient. Bags always check their ids.
        mode: ``None``: one output row per id (``nn.Embedding``). ``"sum"``, ``"mean"`` or
            ``"max"``: ``nn.EmbeddingBag`` followed by the projection, one output row per bag:
            ``forward(ids, offsets, per_sample_weights)`` with ``nn.EmbeddingBag``'s ``offsets``
            or 2-D ids (one bag per row), ``per_sample_weights`` (sum mode), the padding row
            left out of its bag, empty bags pooling to zeros (so their output is the bias).
            Bags pool table rows, before the projection: D-wide sums instead of H-wide, and
            for sum/mean the same as pooling projected rows (up to ``count * b`` for sums).
        include_last_offset: ``nn.EmbeddingBag``'s: ``offsets`` has one more entry, the end of
            the last bag.
        mask_zero: Keras' ``mask_zero``: id 0 is padding, :meth:`compute_mask` marks it (without
            it, the mask marks ``padding_idx``).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight: torch.Tensor | None = None,
        _freeze: bool = False,
        device=None,
        dtype=None,
        *,
        out_features: int | None = None,
        bias: bool = True,
        backend: Backend = "auto",
        deterministic: bool = False,
        strategy: Strategy = "auto",
        check_ids: bool = True,
        mode: BagMode | None = None,
        include_last_offset: bool = False,
        mask_zero: bool = False,
    ) -> None:
        super().__init__()
        for name, size in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim),
                           ("out_features", out_features)):  # fmt: skip
            if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
                raise TypeError(f"{name} must be an int, got {size!r}")
            if size is not None and size < 0:
                raise NegativeSizeError(f"{name} must be non-negative, got {size}")
        if backend not in ("auto", "triton", "torch"):
            raise ValueError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
        if strategy not in ("auto", "direct", "folded"):
            raise ValueError(f"strategy must be 'auto', 'direct' or 'folded', got {strategy!r}")
        if mode not in (None, "sum", "mean", "max"):
            raise ValueError(f"mode must be None, 'sum', 'mean' or 'max', got {mode!r}")
        if include_last_offset and mode is None:
            raise ValueError("include_last_offset is a bag option: set mode='sum'|'mean'|'max'")
        if sparse and scale_grad_by_freq and not check_ids:
            raise ValueError(
                "sparse=True with scale_grad_by_freq=True needs check_ids=True (unchecked "
                "out-of-range ids would count toward row 0's frequency)"
            )
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise TableArgumentError(
                    f"padding_idx {padding_idx} is outside a table of {num_embeddings} rows"
                )
            padding_idx %= num_embeddings
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.out_features = out_features
        self.padding_idx = padding_idx
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        self.backend = backend
        self.strategy = strategy
        self.deterministic = deterministic
        self.check_ids = check_ids
        self.mode = mode
        self.include_last_offset = include_last_offset
        self.mask_zero = mask_zero
        self.quantized: str | None = None  # "int8" | "int4" after quantize()
        self._quantization_report: dict | None = None
        if _weight is None:
            table = torch.empty(num_embeddings, embedding_dim, device=device, dtype=dtype)
        elif tuple(_weight.shape) != (num_embeddings, embedding_dim):
            raise TableArgumentError(
                f"_weight has shape {tuple(_weight.shape)}, the layer needs "
                f"({num_embeddings}, {embedding_dim})"
            )
        else:
            table = _weight
        trainable = table.is_floating_point() and not _freeze
        self.weight = nn.Parameter(table, requires_grad=trainable)
        # an integer table (frozen, as nn.Embedding allows) feeds a float projection
        proj_dtype = table.dtype if table.is_floating_point() else dtype
        self.projection = (
            nn.Linear(embedding_dim, out_features, bias=bias, device=table.device, dtype=proj_dtype)
            if out_features is not None
            else None
        )
        if _weight is None:
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
        """``nn.Embedding``'s repr, then every option of this layer that is not its default."""
        parts = [f"{self.num_embeddings}, {self.embedding_dim}"]
        if self.out_features is not None:
            parts.append(f"out_features={self.out_features}")
            if self.projection.bias is None:
                parts.append("bias=False")
        for name, default in _REPR_DEFAULTS:
            value = getattr(self, name)
            if value != default:
                parts.append(f"{name}={value!r}")
        return ", ".join(parts)

    # ----------------------------------------------------------------------------------------
    def plan(self, num_ids, dtype: torch.dtype | None = None) -> cost_model.Plan:
        """How a call with ``num_ids`` ids computes on the table's device: backend, whether it
        folds, and the shape class (:func:`mmembed.ops.embed_project.cost_model.plan`).

        Sparse gradients, integer and empty tables take the direct torch plan: the fused plans
        return dense float gradients and have nothing to do for an empty table."""
        if dtype is None:
            dtype = self.weight.dtype if self.projection is None else self.projection.weight.dtype
        if self.quantized:  # the dequantising gather, then the projection
            return cost_model.Plan("triton" if self.backend != "torch" else "torch", False,
                                   cost_model.LARGE)  # fmt: skip
        return self._plan(num_ids, self.weight, self.out_features, dtype)

    def _plan(self, num_ids, table: torch.Tensor, out_dim: int | None, dtype) -> cost_model.Plan:
        if self.sparse or not table.is_floating_point() or table.numel() == 0:
            return cost_model.Plan("torch", False, cost_model.LARGE)
        # a pure function of its arguments: cached in eager mode, traced (a constant) when compiling
        plan = cost_model.plan if torch.compiler.is_compiling() else cost_model.cached_plan
        return plan(
            num_ids, table.shape[0], table.shape[1], out_dim, dtype, table.device, self.backend,
            self.strategy,
        )  # fmt: skip

    def _validate_ids(self, ids: torch.Tensor) -> None:
        if not isinstance(ids, torch.Tensor):
            raise TypeError(f"ids must be a tensor, got {type(ids).__name__}")
        if ids.dtype not in (torch.int32, torch.int64):
            raise IdsDtypeError(f"ids must be int32 or int64, got {ids.dtype}")
        device = self.weight_q.device if self.quantized else self.weight.device
        if ids.device != device:
            raise ValueError(f"ids are on {ids.device} but the table is on {device}")

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

    def compute_mask(self, ids: torch.Tensor) -> torch.Tensor | None:
        """Keras' padding mask: ``True`` at real tokens, ``False`` at the padding id (0 with
        ``mask_zero``, else ``padding_idx``); ``None`` when the layer has neither. Its negation
        is the ``key_padding_mask`` of ``nn.MultiheadAttention``/``nn.Transformer``."""
        pad = 0 if self.mask_zero else self.padding_idx
        return None if pad is None else ids != pad

    def forward(
        self,
        ids: torch.Tensor,
        offsets: torch.Tensor | None = None,
        per_sample_weights: torch.Tensor | None = None,
        *,
        return_mask: bool = False,
    ):
        """``(*ids.shape)`` int ids -> ``(*ids.shape, output_dim)``; with a bag ``mode``,
        ``nn.EmbeddingBag``'s ``(ids, offsets, per_sample_weights)`` -> ``(bags, output_dim)``.

        ``return_mask``: also return :meth:`compute_mask` of the ids, ``(out, mask)``.
        """
        self._validate_ids(ids)
        if self.mode is None and (offsets is not None or per_sample_weights is not None):
            raise ValueError("offsets and per_sample_weights need a bag mode ('sum'|'mean'|'max')")
        if return_mask and self.mode is not None:
            raise ValueError("return_mask: a bag's pooled output has no per-token mask")
        # bags and quantised tables always check: their gathers have no zero-row fallback
        must_check = self.check_ids or self.mode is not None or self.quantized is not None
        if must_check and torch.compiler.is_compiling():  # an op, kept in the graph
            ids = checked_ids(ids, self.num_embeddings)
        elif must_check:  # eager: the same check without an op's dispatch (~0.2 ms on CPU)
            check_ids(ids, self.num_embeddings)
        if self.max_norm is not None:
            # in place on the detached table, as torch does: forward-mode AD still sees weight
            with torch.no_grad():
                torch.embedding_renorm_(
                    self.weight.detach(), ids.reshape(-1).contiguous(), self.max_norm,
                    self.norm_type,
                )  # fmt: skip
        if self.mode is not None:
            return self._bags(ids, offsets, per_sample_weights)
        out = self._lookup(ids)
        return (out, self.compute_mask(ids)) if return_mask else out

    def _lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """One output row per id: the dequantising gather then the projection, or the op (and
        the LoRA factors through it)."""
        if self.quantized:
            kernels_ok = self.backend != "torch"
            rows = quantized.quantized_rows(ids.reshape(-1), self.weight_q, self.weight_scale,
                                            self.embedding_dim, kernels_ok)  # fmt: skip
            return torch_path.project(rows.reshape(*ids.shape, -1), *self._projection_params())
        out = self._embed(ids, self.weight, *self._projection_params())
        if self.lora_rank:  # (E + s A B)[ids] @ W.T = E[ids] @ W.T + A[ids] @ (s W B.T).T
            out = out + self._embed(ids, self.lora_a, self._lora_projection(), None)
        return out

    def _bags(self, ids, offsets, per_sample_weights) -> torch.Tensor:
        if not self.weight.is_floating_point():
            raise TypeError(f"bags pool float tables; this table is {self.weight.dtype}")
        # int64 ids and offsets, whatever the check returned: ONNX's EmbeddingBag lowering
        # mixes them with int64 indices
        ids = ids.long()
        offsets = offsets.long() if offsets is not None else None
        if self.lora_rank and self.mode == "max":
            raise NotImplementedError("LoRA with max bags (max does not commute with A @ B): "
                                      "merge_lora() first")  # fmt: skip
        options = (offsets, per_sample_weights, self.mode, self.include_last_offset,
                   self.padding_idx, self.scale_grad_by_freq, self.sparse)  # fmt: skip
        pooled = torch_path.bag_pool(ids, self.weight, *options)
        if self.lora_rank:  # pooled (E + s A B) rows = pooled E rows + (pooled A rows) @ s B
            pooled_a = torch_path.bag_pool(ids, self.lora_a, *options)
            pooled = pooled + torch_path.project(pooled_a, self.lora_scale * self.lora_b.t(), None)
        return torch_path.project(pooled, *self._projection_params())

    def _embed(self, ids, table, proj_weight, bias) -> torch.Tensor:
        """``table[ids] @ proj_weight.T + bias`` by the plan for these shapes (the one op)."""
        dtype = proj_weight.dtype if proj_weight is not None else table.dtype
        out_dim = proj_weight.shape[0] if proj_weight is not None else None
        plan = self._plan(ids.numel(), table, out_dim, dtype)
        padding_idx = -1 if self.padding_idx is None else self.padding_idx
        mask = not self.check_ids
        scale = self.scale_grad_by_freq
        # torch ops under autograd (their backward is sum-by-id), except where only the op's
        # explicit backward scales dE alone: folded (autograd would scale dW too) or masked ids
        if plan.backend == "torch" and not (scale and (plan.fold or mask) and not self.sparse):
            return torch_path.forward(ids, table, proj_weight, bias, plan.fold, mask,
                                      padding_idx, scale, self.sparse)  # fmt: skip
        out = embed_project(ids.reshape(-1), table, proj_weight, bias, padding_idx,
                            plan.fold, plan.backend == "triton", mask, scale)  # fmt: skip
        return out.reshape(*ids.shape, out.shape[-1])

    # ----------------------------------------------------------------------------------------
    def projected_table(self) -> torch.Tensor:
        """Every row as the layer outputs it, ``E @ W.T + b`` (V x output_dim), differentiable.

        Rows above ``max_norm`` are renormalised (out of place) as a lookup would do.
        """
        table = self.float_table()
        if self.max_norm is not None:
            norms = table.detach().norm(p=self.norm_type, dim=1, keepdim=True)
            scale = torch.where(norms > self.max_norm, self.max_norm / (norms + 1e-7), 1.0)
            table = table * scale
        if self.lora_rank:
            table = table + self.lora_delta()
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
        h = hidden @ w
        scores = h @ self.float_table().t()
        if self.lora_rank:  # never the merged V x D table: (h @ s B.T) @ A.T
            scores = scores + (h @ (self.lora_scale * self.lora_b.t())) @ self.lora_a.t()
        if b is not None:
            scores = scores + (hidden @ b).unsqueeze(-1)
        return scores

    @torch.no_grad()
    def folded(self) -> nn.Embedding:
        """An equivalent frozen ``nn.Embedding`` holding ``E @ W.T + b`` for inference/export."""
        table = self.projected_table().detach().clone()
        return nn.Embedding.from_pretrained(table, freeze=True, padding_idx=self.padding_idx)

    # ----------------------------------------------------------------------------------------
    @property
    def lora_rank(self) -> int:
        """The rank of the LoRA factors (0: LoRA is off)."""
        return self.lora_a.shape[1] if getattr(self, "lora_a", None) is not None else 0

    @property
    def lora_scale(self) -> torch.Tensor:
        """``alpha / rank``, a 0-d tensor (the buffer ``lora_alpha`` follows the state dict and
        stays a graph input when exporting)."""
        return self.lora_alpha / self.lora_rank

    def enable_lora(self, rank: int, alpha: float | None = None) -> SharedEmbedding:
        """Keras 3's ``enable_lora``: freeze the table and the projection and train low-rank
        factors instead, the table becoming ``E + (alpha / rank) * A @ B`` with A (V x rank,
        He-uniform) and B (rank x D, zeros: training starts from the unchanged layer).

        The forward never builds that table: it adds ``A[ids] @ (s W B.T).T`` through the same
        fused op (a V x rank table, an H x rank projection). ``alpha`` defaults to ``rank``.
        The factors are parameters ``lora_a``/``lora_b`` (and a buffer ``lora_alpha``) in the
        state dict; loading such a state dict into a layer without LoRA enables it.
        """
        if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
            raise ValueError(f"LoRA rank must be a positive int, got {rank!r}")
        if self.lora_rank:
            raise ValueError("LoRA is already enabled; merge_lora() first to change its rank")
        if not self.weight.is_floating_point():
            raise TypeError(f"LoRA needs a float table; this table is {self.weight.dtype}")
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        self._pre_lora_trainable = [p.requires_grad for p in self._base_parameters()]
        for p in self._base_parameters():
            p.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(self.num_embeddings, rank, **factory))
        nn.init.kaiming_uniform_(self.lora_a, a=5**0.5)
        if self.padding_idx is not None:  # the padding row stays zero (and gets no gradient)
            with torch.no_grad():
                self.lora_a[self.padding_idx].fill_(0)
        self.lora_b = nn.Parameter(torch.zeros(rank, self.embedding_dim, **factory))
        self.register_buffer("lora_alpha", torch.tensor(float(alpha if alpha else rank)))
        return self

    def lora_delta(self) -> torch.Tensor:
        """``(alpha / rank) * A @ B`` (V x D), differentiable; materialised, so for merging and
        inspection, not for the training forward."""
        return self.lora_scale * (self.lora_a @ self.lora_b)

    def _lora_projection(self) -> torch.Tensor:
        # the factors' "projection" for the op: s * W @ B.T (H x rank), or s * B.T (D x rank)
        b_t = self.lora_scale * self.lora_b.t()
        proj_weight, _ = self._projection_params()
        return b_t if proj_weight is None else proj_weight @ b_t.to(proj_weight.dtype)

    @torch.no_grad()
    def merge_lora(self) -> SharedEmbedding:
        """Fold the factors into the table (``E += s A @ B``), drop them, and restore what was
        trainable before :meth:`enable_lora`; the outputs do not change (up to rounding)."""
        if not self.lora_rank:
            raise ValueError("LoRA is not enabled: nothing to merge")
        self.weight.add_(self.lora_delta().to(self.weight.dtype))
        del self.lora_a, self.lora_b, self.lora_alpha
        for p, trainable in zip(self._base_parameters(), self._pre_lora_trainable, strict=True):
            p.requires_grad_(trainable)
        return self

    def _base_parameters(self) -> list[nn.Parameter]:
        extra = list(self.projection.parameters()) if self.projection is not None else []
        return [self.weight, *extra]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a checkpoint saved with LoRA on: enable it with the saved rank, then load the factors
        q = state_dict.get(prefix + "weight_q")
        if q is not None and not self.quantized:  # a quantised checkpoint: take its layout
            mode = "int4" if q.dtype == torch.uint8 else "int8"
            self._become_quantized(mode, torch.empty_like(q, device=self.weight.device),
                                   torch.empty_like(state_dict[prefix + "weight_scale"],
                                                    device=self.weight.device))  # fmt: skip
        a = state_dict.get(prefix + "lora_a")
        if a is not None and not self.lora_rank:
            self.enable_lora(a.shape[1], float(state_dict.get(prefix + "lora_alpha", a.shape[1])))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ----------------------------------------------------------------------------------------
    def float_table(self) -> torch.Tensor:
        """The table E (V x D) in floating point: the parameter, or for a quantised layer its
        dequantised rows (materialised: for tied logits and folding, not the lookup)."""
        if not self.quantized:
            return self.weight
        every_row = torch.arange(self.num_embeddings, device=self.weight_q.device)
        return quantized.reference_rows(every_row, self.weight_q, self.weight_scale,
                                        self.embedding_dim)  # fmt: skip

    @torch.no_grad()
    def quantize(self, mode: str) -> SharedEmbedding:
        """Keras 3's ``quantize``: replace the table by int8 or int4 rows with one scale per row
        (symmetric, ``max|row|`` maps to 127 or 7), for inference. The float parameter
        ``weight`` is dropped; the buffers ``weight_q`` and ``weight_scale`` take its place
        (and its state-dict entries: a fresh layer loading them becomes quantised). Lookups
        dequantise inside the gather; the projection stays as it is (and trainable).
        :meth:`quantization_report` gives sizes and errors.
        """
        if mode not in quantized.LEVELS:
            raise ValueError(f"quantize mode must be 'int8' or 'int4', got {mode!r}")
        if self.quantized:
            raise ValueError(f"the table is already quantised ({self.quantized})")
        if self.lora_rank:
            raise ValueError("merge_lora() before quantize(): the factors would be lost")
        if not self.weight.is_floating_point():
            raise TypeError(f"quantize needs a float table; this table is {self.weight.dtype}")
        if self.max_norm is not None:
            raise ValueError("max_norm renormalises the table in place; a quantised table "
                             "is read-only (build the layer without max_norm)")  # fmt: skip
        if self.mode is not None:
            raise NotImplementedError("quantised tables do not pool bags yet (mode=None only)")
        table = self.weight.detach()
        q, scales = quantized.quantize_rows(table, mode)
        self._become_quantized(mode, q, scales)
        error = (self.float_table().float() - table.float()).abs()
        self._quantization_report.update(
            max_abs_error=float(error.max()) if error.numel() else 0.0,
            mean_abs_error=float(error.mean()) if error.numel() else 0.0,
            relative_error=float(error.norm() / table.float().norm().clamp_min(1e-12)),
        )
        return self

    def _become_quantized(self, mode: str, q: torch.Tensor, scales: torch.Tensor) -> None:
        float_bytes = self.num_embeddings * self.embedding_dim * self.weight.element_size()
        del self.weight
        self.register_buffer("weight_q", q)
        self.register_buffer("weight_scale", scales)
        self.quantized = mode
        quantized_bytes = quantized.table_bytes(q, scales)
        self._quantization_report = dict(
            mode=mode, float_bytes=float_bytes, quantized_bytes=quantized_bytes,
            compression=float_bytes / max(quantized_bytes, 1),
            max_abs_error=None, mean_abs_error=None, relative_error=None,
        )  # fmt: skip

    def quantization_report(self) -> dict:
        """Sizes and errors of the quantised table: ``mode``, ``float_bytes`` (the table it
        replaced), ``quantized_bytes`` (rows + scales), ``compression``, and the max / mean
        absolute and the relative (Frobenius) error of the dequantised rows (None when the
        layer was loaded quantised: the float table is not there to compare)."""
        if not self.quantized:
            raise ValueError("the table is not quantised: call quantize('int8'|'int4') first")
        return dict(self._quantization_report)

    # ----------------------------------------------------------------------------------------
    def freeze(self, projection: bool = False) -> SharedEmbedding:
        """Stop training the table (and the projection too if ``projection``)."""
        if not self.quantized:  # a quantised table is a buffer: never trained
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
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        **kwargs,
    ) -> SharedEmbedding:
        """A layer whose table *is* ``embeddings`` (V x D, its storage shared, not copied), with
        ``nn.Embedding.from_pretrained``'s positional arguments; the layer's own options
        (``out_features=``, ``backend=``, ...) are keywords.

        ``freeze`` freezes only the table: a projection (``out_features``) stays trainable.
        Integer tables are accepted and always frozen (as in torch). The padding row keeps the
        given values (as in torch).
        """
        if embeddings.dim() != 2:
            raise TableArgumentError(
                f"embeddings must be 2-D (rows x dim), got shape {tuple(embeddings.shape)}"
            )
        rows, dim = embeddings.shape
        return cls(rows, dim, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse,
                   _weight=embeddings, _freeze=freeze, **kwargs)  # fmt: skip

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
