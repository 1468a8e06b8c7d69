"""Int8 ONNX graphs (``runtime="onnx-int8"``): which products are quantised, and which tasks
offer them. The recogniser's int8 graph end to end: tests/inference/test_speech.py."""

from collections import Counter

import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from mmembed.export import export_program, onnx_bytes
from mmembed.inference.export.builder import ExportPlan, build_artifact
from mmembed.inference.export.quantize import quantize_int8, weight_products
from mmembed.inference.export.rebuild import ExportError


class _Model(nn.Module):
    """A 'front end' product that must stay float, two weight products and one product of
    two activations."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.frontend = nn.Module()
        self.frontend.basis = nn.Parameter(torch.randn(16, 32, generator=generator))
        self.hidden = nn.Linear(32, 64, bias=False)
        self.out = nn.Linear(64, 32, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = x @ self.frontend.basis
        hidden = torch.relu(self.hidden(features))
        scores = hidden @ hidden.transpose(-1, -2)  # activations x activations: stays float
        return self.out(hidden) + scores.mean(-1, keepdim=True)


def test_quantize_int8_takes_the_weight_products_and_leaves_the_rest_float():
    torch.manual_seed(0)
    model = _Model().eval()
    x = torch.randn(2, 5, 16)
    data = onnx_bytes(export_program(model, (x,)), ["x"], ["y"])
    assert len(weight_products(onnx.load_from_string(data), ("frontend.",))) == 2
    quantized = quantize_int8(data, float_patterns=("frontend.",))
    graph = onnx.load_from_string(quantized).graph
    ops = Counter(node.op_type for node in graph.node)
    assert ops["MatMulInteger"] == 2 and ops["DynamicQuantizeLinear"] == 2, ops
    float_products = [node for node in graph.node if node.op_type == "MatMul"]
    # the front end's product and the activations' product
    assert len(float_products) == 2
    assert any("frontend" in node.input[1] for node in float_products)
    session = ort.InferenceSession(quantized, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        expected = model(x)
    error = (torch.from_numpy(got) - expected).abs().max() / expected.abs().max()
    assert 0 < float(error) < 0.2  # close (7% here, random weights), and not the float graph


def test_quantize_int8_refuses_a_graph_without_weight_products():
    class _Square(nn.Module):
        def forward(self, x):
            return x @ x.transpose(-1, -2)

    data = onnx_bytes(export_program(_Square(), (torch.randn(2, 3, 4),)))
    with pytest.raises(ValueError, match="no weight products"):
        quantize_int8(data, float_patterns=())


def test_only_tasks_that_offer_int8_graphs_export_them(tmp_path):
    plan = ExportPlan("video_classification", graphs={}, config={})
    with pytest.raises(ExportError, match="video_classification model has no int8 graphs"):
        build_artifact(plan, trained=None, out=tmp_path / "x.mmembed", runtimes=["onnx-int8"])
