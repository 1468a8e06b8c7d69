"""The registered ops under opcheck, torch.compile, torch.export (+ save/load) and ONNX."""

import numpy as np
import pytest
import torch
from torch.export import Dim

from mmembed import SharedEmbedding
from mmembed.export import export_onnx, export_program


class TinyModel(torch.nn.Module):
    """A layer used the way models use it: ids -> embedding -> a head."""

    def __init__(self, backend="triton"):
        super().__init__()
        self.embed = SharedEmbedding(50, 16, out_features=32, padding_idx=0, backend=backend)
        self.head = torch.nn.Linear(32, 5)

    def forward(self, ids):
        return self.head(torch.relu(self.embed(ids)))


def op_args(with_projection=True):
    torch.manual_seed(0)
    ids = torch.tensor([3, 1, 4, 1, 5, 0, 2, 6])
    weight = torch.randn(7, 16, requires_grad=True)
    proj = torch.randn(32, 16, requires_grad=True) if with_projection else None
    bias = torch.randn(32, requires_grad=True) if with_projection else None
    return ids, weight, proj, bias


@pytest.mark.parametrize("kernels", [False, True])
@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("fold", [False, True])
@pytest.mark.parametrize("with_projection", [True, False])
def test_opcheck_forward(fold, mask, with_projection, kernels):
    ids, weight, proj, bias = op_args(with_projection)
    torch.library.opcheck(
        torch.ops.mmembed.embed_project.default,
        (ids, weight, proj, bias, 0, fold, kernels, mask),
    )


@pytest.mark.parametrize("kernels", [False, True])
@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("fold", [False, True])
@pytest.mark.parametrize("scale", [False, True])
def test_opcheck_backward(fold, mask, kernels, scale):
    ids, weight, proj, _ = op_args()
    grad = torch.randn(8, 32)
    args = (grad, ids, weight.detach(), proj.detach(), True, 0, fold, kernels, mask, True, True,
            scale)  # fmt: skip
    torch.library.opcheck(torch.ops.mmembed.embed_project_backward.default, args)


def test_opcheck_id_check():
    ids = torch.tensor([[3, 1], [0, 6]])
    torch.library.opcheck(torch.ops.mmembed.checked_ids.default, (ids, 7))


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_torch_compile_matches_eager_forward_and_backward(backend):
    model = TinyModel(backend)
    compiled = torch.compile(model, fullgraph=True)
    for shape in [(3, 7), (5, 11)]:  # a second shape exercises dynamic recompilation
        ids = torch.randint(0, 50, shape)
        torch.testing.assert_close(compiled(ids), model(ids), rtol=1e-5, atol=1e-5)
    model.zero_grad()
    compiled(ids).sum().backward()
    compiled_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(ids).sum().backward()
    for a, p in zip(compiled_grads, model.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, rtol=1e-5, atol=1e-5)


def dynamic_batch_and_sequence():
    return ({0: Dim("batch", max=1024), 1: Dim("seq", max=4096)},)


def test_export_dynamic_shapes_save_and_load(tmp_path):
    model = TinyModel().eval()
    ids = torch.randint(0, 50, (3, 7))
    program = export_program(model, (ids,), dynamic_batch_and_sequence())
    graph_ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert "mmembed.embed_project.default" in graph_ops
    path = tmp_path / "model.pt2"
    torch.export.save(program, path)
    loaded = torch.export.load(path)
    for shape in [(1, 1), (4, 9), (2, 33)]:
        other = torch.randint(0, 50, shape)
        torch.testing.assert_close(loaded.module()(other), model(other))


def test_onnx_single_file_matches_eager(tmp_path):
    import onnxruntime as ort

    model = TinyModel().eval()
    ids = torch.randint(0, 50, (3, 7))
    path = export_onnx(model, (ids,), tmp_path / "model.onnx", dynamic_batch_and_sequence())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # weights inside
    session = ort.InferenceSession(str(path))
    name = session.get_inputs()[0].name
    for shape in [(3, 7), (6, 2)]:
        other = torch.randint(0, 50, shape)
        got = session.run(None, {name: other.numpy()})[0]
        np.testing.assert_allclose(got, model(other).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_folded_table_exports_as_plain_lookup(tmp_path):
    layer = SharedEmbedding(40, 8, out_features=16).eval()
    folded = layer.folded()
    ids = torch.randint(0, 40, (2, 5))
    program = torch.export.export(folded, (ids,))
    torch.testing.assert_close(program.module()(ids), layer(ids), rtol=1e-5, atol=1e-5)
