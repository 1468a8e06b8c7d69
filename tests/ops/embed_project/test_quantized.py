"""Quantised tables (int8 / int4, per-row scales): error bounds, the dequantising gather kernel
against the torch reference, sizes, checkpoints, export and ONNX keeping the integer table."""

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mmembed import SharedEmbedding
from mmembed.export import decomposition_table, export_onnx, export_program
from mmembed.kernels import embed_project as K
from mmembed.ops.embed_project import quantized

LEVELS = {"int8": 127, "int4": 7}


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("dim", [8, 7])
def test_rows_are_within_half_a_step_of_the_float_table(mode, dim):
    torch.manual_seed(0)
    layer = SharedEmbedding(40, dim, 3, out_features=6)  # padding row 3: all zeros
    table = layer.weight.detach().clone()
    ids = torch.randint(0, 40, (5, 11))
    before = layer(ids).detach()
    layer.quantize(mode)
    rows = layer.float_table()
    step = table.abs().amax(dim=1, keepdim=True) / LEVELS[mode]
    assert ((rows - table).abs() <= step / 2 + 1e-6).all()
    assert torch.count_nonzero(rows[3]) == 0
    # through the projection: |dy| <= sum_d |W_hd| * step_row / 2
    bound = (layer.projection.weight.abs().sum(1)[None, None] * step[ids] / 2).detach()
    assert ((layer(ids) - before).abs() <= bound + 1e-5).all()
    report = layer.quantization_report()
    assert report["max_abs_error"] <= float(step.max()) / 2 + 1e-6
    assert 0 < report["relative_error"] < (0.01 if mode == "int8" else 0.12)


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("dim", [1, 16, 33])
def test_gather_kernel_matches_the_reference(mode, dim):
    torch.manual_seed(1)
    q, scales = quantized.quantize_rows(torch.randn(25, dim), mode)
    ids = torch.randint(0, 25, (70,))
    got = K.gather_quantized_rows(ids, q, scales, dim, torch.float32)
    torch.testing.assert_close(got, quantized.reference_rows(ids, q, scales, dim), rtol=0, atol=0)
    outside = torch.tensor([-1, 25, 3])  # the kernel never reads outside the table: zeros
    rows = K.gather_quantized_rows(outside, q, scales, dim, torch.float32)
    assert torch.count_nonzero(rows[:2]) == 0
    assert K.gather_quantized_rows(ids[:0], q, scales, dim, torch.float32).shape == (0, dim)


@pytest.mark.parametrize("mode,row_bytes", [("int8", 9), ("int4", 5)])
def test_report_sizes_and_no_float_table_left(mode, row_bytes):
    layer = SharedEmbedding(100, 9, out_features=4).quantize(mode)
    report = layer.quantization_report()
    assert report["float_bytes"] == 100 * 9 * 4
    assert report["quantized_bytes"] == 100 * row_bytes + 100 * 4  # rows + fp32 scales
    assert report["compression"] == pytest.approx(3600 / report["quantized_bytes"])
    tensors = dict(layer.named_parameters()) | dict(layer.named_buffers())
    assert "weight" not in tensors
    assert not any(t.is_floating_point() and t.shape == (100, 9) for t in tensors.values())

    class Shapes(TorchDispatchMode):
        seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor):
                self.seen.append((tuple(out.shape), out.dtype))
            return out

    with Shapes():
        layer(torch.randint(0, 100, (3, 4)))
    assert ((100, 9), torch.float32) not in Shapes.seen  # the gather dequantises rows only


def test_projection_still_trains_and_checkpoints_round_trip(tmp_path):
    torch.manual_seed(2)
    layer = SharedEmbedding(30, 8, out_features=5).quantize("int4")
    ids = torch.randint(0, 30, (4, 6))
    layer(ids).sum().backward()
    assert layer.projection.weight.grad is not None
    path = tmp_path / "q.pt"
    torch.save(layer.state_dict(), path)
    fresh = SharedEmbedding(30, 8, out_features=5)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    assert fresh.quantized == "int4" and fresh.weight_q.dtype == torch.uint8
    torch.testing.assert_close(fresh(ids), layer(ids), rtol=0, atol=0)
    assert fresh.quantization_report()["relative_error"] is None  # no float table to compare
    torch.testing.assert_close(fresh.folded()(ids), layer(ids), rtol=1e-5, atol=1e-5)
    hidden = torch.randn(2, 5)
    torch.testing.assert_close(layer.logits(hidden), hidden @ layer.projected_table().t(),
                               rtol=1e-5, atol=1e-5)  # fmt: skip


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_export_and_onnx_keep_the_quantised_table(tmp_path, mode):
    import onnx
    import onnxruntime as ort

    torch.manual_seed(3)
    layer = SharedEmbedding(60, 10, out_features=12).quantize(mode).eval()
    ids = torch.randint(0, 60, (3, 7))
    dims = ({0: torch.export.Dim("batch", max=64), 1: torch.export.Dim("seq", max=512)},)
    program = export_program(layer, (ids,), dims)
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert "mmembed.quantized_rows.default" in targets
    other = torch.randint(0, 60, (5, 4))
    torch.testing.assert_close(program.module()(other), layer(other), rtol=1e-6, atol=1e-6)
    lowered = program.run_decompositions(decomposition_table())
    assert "mmembed.quantized_rows.default" not in {str(n.target) for n in lowered.graph.nodes}
    path = export_onnx(layer, (ids,), tmp_path / "q.onnx", dims)
    model = onnx.load(str(path))
    int_tables = [tuple(i.dims) for i in model.graph.initializer if i.dims
                  and i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)]  # fmt: skip
    assert int_tables == [tuple(layer.weight_q.shape)]
    float_tables = [i for i in model.graph.initializer
                    if i.data_type == onnx.TensorProto.FLOAT and tuple(i.dims) == (60, 10)]
    assert not float_tables
    session = ort.InferenceSession(str(path))
    got = session.run(None, {session.get_inputs()[0].name: other.numpy()})[0]
    np.testing.assert_allclose(got, layer(other).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_quantize_bad_arguments():
    with pytest.raises(ValueError, match="'int8' or 'int4'"):
        SharedEmbedding(10, 4).quantize("fp8")
    layer = SharedEmbedding(10, 4).quantize("int8")
    with pytest.raises(ValueError, match="already quantised"):
        layer.quantize("int4")
    with pytest.raises(ValueError, match="merge_lora"):
        SharedEmbedding(10, 4).enable_lora(2).quantize("int8")
    with pytest.raises(ValueError, match="max_norm"):
        SharedEmbedding(10, 4, max_norm=1.0).quantize("int8")
    with pytest.raises(NotImplementedError, match="bags"):
        SharedEmbedding(10, 4, mode="sum").quantize("int8")
    with pytest.raises(TypeError, match="float table"):
        SharedEmbedding.from_pretrained(torch.arange(6).reshape(3, 2)).quantize("int8")
    with pytest.raises(ValueError, match="not quantised"):
        SharedEmbedding(10, 4).quantization_report()
    with pytest.raises(IndexError, match="id 10 "):  # quantised gathers always check ids
        SharedEmbedding(10, 4, check_ids=False).quantize("int8")(torch.tensor([10]))


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("kernels", [False, True])
def test_opcheck_quantized_rows(mode, kernels):
    q, scales = quantized.quantize_rows(torch.randn(9, 5), mode)
    ids = torch.tensor([0, 8, 3, 3])
    torch.library.opcheck(torch.ops.mmembed.quantized_rows.default, (ids, q, scales, 5, kernels))
