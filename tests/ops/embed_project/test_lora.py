"""LoRA on the table (Keras 3's ``enable_lora``): the factors through the fused op against the
merged table, merging, checkpoints, tied logits, bags, export/ONNX, and bad arguments."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from mmembed import SharedEmbedding
from mmembed.export import export_onnx, export_program


def lora_layer(out_features=12, rank=3, alpha=6.0, seed=0, **kwargs):
    """A layer with LoRA on and non-zero factors (B starts at zero: nothing to test there)."""
    torch.manual_seed(seed)
    layer = SharedEmbedding(20, 8, out_features=out_features, **kwargs).enable_lora(rank, alpha)
    with torch.no_grad():
        layer.lora_b.normal_()
    return layer


def merged_reference(layer, ids):
    """``F.embedding(ids, E + s A B)`` then the projection, on leaf copies of the parameters."""
    params = {n: p.detach().clone().requires_grad_() for n, p in layer.named_parameters()}
    table = params["weight"] + layer.lora_scale * params["lora_a"] @ params["lora_b"]
    out = F.embedding(ids, table, layer.padding_idx)
    if layer.projection is not None:
        out = F.linear(out, params["projection.weight"], params["projection.bias"])
    return out, params


def test_enable_lora_freezes_the_base_and_starts_from_the_same_outputs():
    torch.manual_seed(0)
    layer = SharedEmbedding(20, 8, out_features=12)
    ids = torch.randint(0, 20, (3, 5))
    before = layer(ids).detach()
    layer.enable_lora(4)
    assert layer.lora_rank == 4 and layer.lora_scale == 1.0  # alpha defaults to the rank
    trainable = {n for n, p in layer.named_parameters() if p.requires_grad}
    assert trainable == {"lora_a", "lora_b"}
    torch.testing.assert_close(layer(ids), before)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("strategy", ["direct", "folded"])
@pytest.mark.parametrize("out_features", [None, 12])
@pytest.mark.parametrize("padding_idx", [None, 2])
def test_factors_through_the_op_match_the_merged_table(backend, strategy, out_features,
                                                       padding_idx):  # fmt: skip
    layer = lora_layer(out_features, backend=backend, strategy=strategy, padding_idx=padding_idx)
    ids = torch.tensor([[1, 2, 2, 19], [0, 7, 7, 7]])
    got = layer(ids)
    want, params = merged_reference(layer, ids)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    upstream = torch.randn_like(got)
    got.backward(upstream)
    want.backward(upstream)
    for name in ("lora_a", "lora_b"):
        grad = dict(layer.named_parameters())[name].grad
        torch.testing.assert_close(grad, params[name].grad, rtol=1e-4, atol=1e-5)
    assert layer.weight.grad is None
    if padding_idx is not None:
        assert torch.count_nonzero(layer.lora_a.grad[padding_idx]) == 0


def test_training_forward_never_builds_the_merged_table():
    class Shapes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.shapes = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor):
                self.shapes.append(tuple(out.shape))
            return out

    layer = lora_layer(12, strategy="direct")
    ids = torch.randint(0, 20, (4, 6))
    with Shapes() as seen:
        layer(ids).sum().backward()
    assert (20, 8) not in seen.shapes[: seen.shapes.index((4, 6, 12)) + 1]  # forward: no V x D
    assert layer.lora_a.grad.shape == (20, 3)


@pytest.mark.parametrize("out_features", [None, 12])
def test_merge_lora_folds_the_factors_back(out_features):
    layer = lora_layer(out_features)
    ids = torch.randint(0, 20, (3, 7))
    before = layer(ids).detach()
    layer.merge_lora()
    assert layer.lora_rank == 0 and "lora_a" not in dict(layer.named_parameters())
    assert "lora_alpha" not in layer.state_dict()
    torch.testing.assert_close(layer(ids), before, rtol=1e-5, atol=1e-5)
    # what was trainable before enable_lora (everything) is again
    assert all(p.requires_grad for p in layer.parameters())


def test_lora_checkpoints_round_trip(tmp_path):
    layer = lora_layer(12, alpha=2.0)
    ids = torch.randint(0, 20, (2, 9))
    path = tmp_path / "layer.pt"
    torch.save(layer.state_dict(), path)
    fresh = SharedEmbedding(20, 8, out_features=12)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    assert fresh.lora_rank == 3 and float(fresh.lora_scale) == pytest.approx(2.0 / 3)
    torch.testing.assert_close(fresh(ids), layer(ids))


def test_sgd_trains_only_the_factors():
    layer = lora_layer(12)
    base = [p.detach().clone() for p in layer._base_parameters()]
    opt = torch.optim.SGD([p for p in layer.parameters() if p.requires_grad], lr=0.1)
    ids = torch.randint(0, 20, (8,))
    target = torch.randn(8, 12)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = F.mse_loss(layer(ids), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(torch.equal(a, b) for a, b in zip(base, layer._base_parameters(), strict=True))


def test_tied_logits_include_the_factors():
    layer = lora_layer(12)
    hidden = torch.randn(2, 3, 12)
    torch.testing.assert_close(layer.logits(hidden), hidden @ layer.projected_table().t(),
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    table = layer(torch.arange(20))
    torch.testing.assert_close(layer.projected_table(), table, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_bags_pool_the_factors_too(mode):
    layer = lora_layer(12, mode=mode)
    ids, offsets = torch.tensor([1, 4, 4, 9, 0]), torch.tensor([0, 2, 2])
    merged = layer.projected_table()
    want = F.embedding_bag(ids, layer.weight + layer.lora_delta(), offsets, mode=mode)
    want = F.linear(want, layer.projection.weight, layer.projection.bias)
    torch.testing.assert_close(layer(ids, offsets), want, rtol=1e-5, atol=1e-5)
    assert merged.shape == (20, 12)
    with pytest.raises(NotImplementedError, match="merge_lora"):
        lora_layer(12, mode="max")(ids, offsets)


def test_lora_bad_arguments():
    layer = SharedEmbedding(10, 4)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="rank"):
            layer.enable_lora(bad)
    with pytest.raises(ValueError, match="not enabled"):
        layer.merge_lora()
    layer.enable_lora(2)
    with pytest.raises(ValueError, match="already enabled"):
        layer.enable_lora(2)
    with pytest.raises(TypeError, match="float table"):
        SharedEmbedding.from_pretrained(torch.arange(6).reshape(3, 2)).enable_lora(1)


def test_lora_exports_and_runs_in_onnxruntime(tmp_path):
    import onnxruntime as ort

    layer = lora_layer(12).eval()
    ids = torch.randint(0, 20, (3, 5))
    dims = ({0: torch.export.Dim("batch", max=64), 1: torch.export.Dim("seq", max=512)},)
    program = export_program(layer, (ids,), dims)
    other = torch.randint(0, 20, (4, 9))
    torch.testing.assert_close(program.module()(other), layer(other), rtol=1e-5, atol=1e-5)
    path = export_onnx(layer, (ids,), tmp_path / "lora.onnx", dims)
    session = ort.InferenceSession(str(path))
    got = session.run(None, {session.get_inputs()[0].name: other.numpy()})[0]
    np.testing.assert_allclose(got, layer(other).detach().numpy(), rtol=1e-5, atol=1e-5)
