"""Bag pooling (``nn.EmbeddingBag`` then the projection) and Keras-style padding masks, against
torch (outputs and gradients), under torch.compile, torch.export and ONNX; and their errors."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmembed import SharedEmbedding
from mmembed.export import export_onnx, export_program

BAG_CASES = list(itertools.product(["sum", "mean", "max"], [None, 6], [None, 2], [False, True]))


def bag_pair(mode, out_features, padding_idx, include_last_offset=False, **kwargs):
    """A bag layer and the nn.EmbeddingBag (+ nn.Linear, sharing the projection's values) it
    must match."""
    torch.manual_seed(0)
    layer = SharedEmbedding(12, 5, padding_idx, mode=mode, out_features=out_features,
                            include_last_offset=include_last_offset, **kwargs)  # fmt: skip
    bag = nn.EmbeddingBag(12, 5, mode=mode, padding_idx=padding_idx,
                          include_last_offset=include_last_offset,
                          _weight=layer.weight.detach().clone())  # fmt: skip
    linear = None
    if out_features is not None:
        linear = nn.Linear(5, out_features)
        linear.load_state_dict(layer.projection.state_dict())
    return layer, bag, linear


def torch_bags(bag, linear, *args, **kwargs):
    out = bag(*args, **kwargs)
    return out if linear is None else linear(out)


def assert_grads_match(layer, bag, linear):
    torch.testing.assert_close(layer.weight.grad, bag.weight.grad, rtol=1e-5, atol=1e-6)
    if linear is not None:
        for a, b in zip(layer.projection.parameters(), linear.parameters(), strict=True):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode,out_features,padding_idx,include_last_offset", BAG_CASES)
def test_bags_with_offsets_match_embedding_bag(mode, out_features, padding_idx,
                                               include_last_offset):  # fmt: skip
    layer, bag, linear = bag_pair(mode, out_features, padding_idx, include_last_offset)
    ids = torch.tensor([1, 2, 2, 0, 11, 4, 2, 7, 7, 3])
    offsets = torch.tensor([0, 3, 3, 6])  # bag 1 is empty
    if include_last_offset:
        offsets = torch.cat([offsets, torch.tensor([10])])
    got, want = layer(ids, offsets), torch_bags(bag, linear, ids, offsets)
    assert got.shape == (4, out_features or 5)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    empty = torch.zeros(5) if linear is None else linear.bias
    torch.testing.assert_close(got[1], empty.detach())  # an empty bag pools to zeros
    upstream = torch.randn_like(got)
    got.backward(upstream)
    want.backward(upstream)
    assert_grads_match(layer, bag, linear)
    if padding_idx is not None:
        assert torch.count_nonzero(layer.weight.grad[padding_idx]) == 0


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_two_dimensional_ids_are_fixed_length_bags(mode):
    layer, bag, linear = bag_pair(mode, 6, 0)
    ids = torch.tensor([[1, 0, 3], [4, 4, 0], [0, 0, 0]])  # the last bag is all padding
    got, want = layer(ids), torch_bags(bag, linear, ids)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    got.sum().backward()
    want.sum().backward()
    assert_grads_match(layer, bag, linear)


@pytest.mark.parametrize("out_features", [None, 6])
def test_per_sample_weights_and_scale_grad_by_freq_in_sum_bags(out_features):
    layer, bag, linear = bag_pair("sum", out_features, None, scale_grad_by_freq=True)
    bag.scale_grad_by_freq = True
    ids = torch.tensor([1, 1, 1, 5, 6, 1])
    offsets = torch.tensor([0, 2])
    weights = torch.tensor([0.5, 2.0, -1.0, 3.0, 0.25, 1.0], requires_grad=True)
    got = layer(ids, offsets, weights)
    want = torch_bags(bag, linear, ids, offsets, per_sample_weights=weights)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    got.sum().backward()
    d_weights = weights.grad.clone()
    weights.grad = None
    want.sum().backward()
    assert_grads_match(layer, bag, linear)
    torch.testing.assert_close(d_weights, weights.grad)


def test_sparse_bags_give_sparse_table_gradients():
    layer, bag, _ = bag_pair("mean", 6, None, sparse=True)
    ids, offsets = torch.tensor([3, 4, 4, 9]), torch.tensor([0, 1])
    layer(ids, offsets).sum().backward()
    assert layer.weight.grad.is_sparse


def test_bag_arguments_fail_as_torch_does_or_clearer():
    ids = torch.tensor([1, 2, 3])
    with pytest.raises(NotImplementedError, match="per_sample_weights"):
        SharedEmbedding(10, 4, mode="mean")(ids, torch.tensor([0]), torch.ones(3))
    with pytest.raises(ValueError, match="offsets"):
        SharedEmbedding(10, 4, mode="sum")(ids.reshape(1, 3), torch.tensor([0]))
    with pytest.raises(ValueError, match="bag mode"):
        SharedEmbedding(10, 4)(ids, torch.tensor([0]))
    with pytest.raises(ValueError, match="mode must be"):
        SharedEmbedding(10, 4, mode="median")
    with pytest.raises(ValueError, match="include_last_offset"):
        SharedEmbedding(10, 4, include_last_offset=True)
    with pytest.raises(ValueError, match="return_mask"):
        SharedEmbedding(10, 4, mode="sum")(ids, torch.tensor([0]), return_mask=True)
    with pytest.raises(IndexError, match="id 10 "):  # bags check ids even with check_ids off
        unchecked = SharedEmbedding(10, 4, mode="sum", check_ids=False)
        unchecked(torch.tensor([1, 10]), torch.tensor([0]))
    table = torch.arange(8).reshape(4, 2)
    with pytest.raises(TypeError, match="float tables"):
        SharedEmbedding.from_pretrained(table, mode="sum")(ids, torch.tensor([0]))


class BagModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.bags = SharedEmbedding(40, 8, 0, mode="mean", out_features=16)
        self.head = nn.Linear(16, 3)

    def forward(self, ids, offsets):
        return self.head(torch.relu(self.bags(ids, offsets)))


def bag_inputs(n, bags, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 40, (n,), generator=g)
    offsets = torch.sort(torch.randint(0, n, (bags,), generator=g)).values
    offsets[0] = 0
    return ids, offsets


def test_bags_compile_and_export(tmp_path):
    model = BagModel().eval()
    compiled = torch.compile(model, fullgraph=True)
    ids, offsets = bag_inputs(30, 5, 0)
    torch.testing.assert_close(compiled(ids, offsets), model(ids, offsets), rtol=1e-5, atol=1e-5)
    dims = ({0: torch.export.Dim("n", min=2, max=4096)}, {0: torch.export.Dim("b", max=1024)})
    program = export_program(model, (ids, offsets), dims)
    path = tmp_path / "bags.pt2"
    torch.export.save(program, path)
    loaded = torch.export.load(path).module()
    other = bag_inputs(50, 7, 1)
    torch.testing.assert_close(loaded(*other), model(*other), rtol=1e-5, atol=1e-5)


def test_bags_through_onnxruntime(tmp_path):
    import onnxruntime as ort

    model = BagModel().eval()
    ids, offsets = bag_inputs(30, 5, 0)
    dims = ({0: torch.export.Dim("n", min=2, max=4096)}, {0: torch.export.Dim("b", max=1024)})
    path = export_onnx(model, (ids, offsets), tmp_path / "bags.onnx", dims)
    session = ort.InferenceSession(str(path))
    names = [i.name for i in session.get_inputs()]
    for seed, (n, b) in enumerate([(30, 5), (44, 9)]):
        args = bag_inputs(n, b, seed + 3)
        got = session.run(None, dict(zip(names, (a.numpy() for a in args), strict=True)))[0]
        np.testing.assert_allclose(got, model(*args).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_scale_grad_by_freq_compiles_on_the_folded_plan():
    # scale_grad_by_freq with folding runs the op's explicit backward: the same under compile
    torch.manual_seed(0)
    layer = SharedEmbedding(9, 8, None, None, 2.0, True, out_features=16, strategy="folded")
    ids = torch.tensor([[1, 1, 2, 8], [1, 0, 0, 3]])
    compiled = torch.compile(layer, fullgraph=True)
    compiled(ids).pow(2).sum().backward()
    want = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    layer(ids).pow(2).sum().backward()
    for a, p in zip(want, layer.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, rtol=1e-5, atol=1e-5)
    emb = nn.Embedding(9, 8, scale_grad_by_freq=True, _weight=layer.weight.detach().clone())
    F.linear(emb(ids), layer.projection.weight.detach(), layer.projection.bias.detach()).pow(
        2
    ).sum().backward()
    torch.testing.assert_close(layer.weight.grad, emb.weight.grad, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
def test_mask_zero_marks_id_zero_and_return_mask_returns_it():
    layer = SharedEmbedding(10, 4, mask_zero=True, out_features=6)
    ids = torch.tensor([[5, 3, 0, 0], [1, 0, 0, 0]])
    out, mask = layer(ids, return_mask=True)
    assert torch.equal(mask, ids != 0) and mask.dtype == torch.bool
    torch.testing.assert_close(out, layer(ids))
    assert torch.equal(layer.compute_mask(ids), mask)


def test_mask_follows_padding_idx_and_is_none_without_padding():
    assert torch.equal(SharedEmbedding(10, 4, 7).compute_mask(torch.tensor([7, 1])),
                       torch.tensor([False, True]))  # fmt: skip
    layer = SharedEmbedding(10, 4)
    assert layer.compute_mask(torch.tensor([0, 1])) is None
    out, mask = layer(torch.tensor([0, 1]), return_mask=True)
    assert mask is None and out.shape == (2, 4)


def test_mask_drives_attention_like_a_hand_built_key_padding_mask():
    # The mask's negation is nn.Transformer's key_padding_mask: the same encoder output.
    torch.manual_seed(0)
    layer = SharedEmbedding(20, 8, mask_zero=True, out_features=16)
    encoder = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True).eval()
    ids = torch.tensor([[4, 9, 2, 0, 0], [7, 0, 0, 0, 0]])
    x, mask = layer(ids, return_mask=True)
    by_hand = torch.tensor([[False, False, False, True, True], [False, True, True, True, True]])
    got = encoder(x, src_key_padding_mask=~mask)
    want = encoder(x, src_key_padding_mask=by_hand)
    torch.testing.assert_close(got[mask], want[~by_hand])
