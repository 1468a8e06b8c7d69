"""The op's cost model: device table, shape classes, the backend="auto" table, roofline limits."""

import pytest
import torch

from mmembed.ops.embed_project import cost_model
from mmembed.ops.embed_project.cost_model import LARGE, SMALL, SUBWORD

ANCHORS = {  # (V, D, H, N), the H100 bf16 forward limit in ms (anchors.md), the intended class
    "chars-asr": ((128, 512, 512, 65536), 0.045, SMALL),
    "albert-factorized": ((30000, 128, 4096, 16384), 0.047, LARGE),
    "caption-subword": ((16384, 512, 768, 32768), 0.033, SUBWORD),
    "gpt2-vocab": ((50257, 768, 768, 16384), 0.025, LARGE),
    "llama-vocab": ((128256, 1024, 4096, 8192), 0.087, LARGE),
}
CPU_SHAPES = {  # scripts/bench_embedding.py's CPU set: folding pays for the first two
    "cpu-chars": ((64, 128, 256, 4096), True),
    "cpu-wide": ((2000, 128, 512, 8192), True),
    "cpu-subword": ((8000, 256, 256, 4096), False),
}


@pytest.mark.parametrize(
    ("name", "expected"),
    [("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA H200", "H200"), ("NVIDIA A100-SXM4-80GB", "A100")],
)
def test_device_names_find_their_entry(name, expected):
    assert cost_model.device_spec(name).name == expected


def test_unknown_device_has_no_entry():
    assert cost_model.device_spec("Some Future GPU") is None


@pytest.mark.parametrize("device", ["H100", "H200"])
@pytest.mark.parametrize("name", ANCHORS)
def test_anchor_shapes_fall_in_their_intended_class(name, device):
    (v, d, h, n), _, expected = ANCHORS[name]
    assert cost_model.shape_class(n, v, d, h, "bf16", cost_model.device_spec(device)) == expected


def test_small_class_limit_follows_the_balance_point():
    h100, h200 = cost_model.device_spec("H100"), cost_model.device_spec("H200")
    assert cost_model.onehot_rows(h100) == 263 and cost_model.onehot_rows(h200) == 197
    # fp32 has no tensor cores at IEEE precision: the one-hot MMA stops paying much earlier
    assert cost_model.onehot_rows(h100, "fp32") == 40
    v, d, h, n = ANCHORS["chars-asr"][0]
    assert cost_model.shape_class(n, v, d, h, "fp32", h100) == SUBWORD


@pytest.mark.parametrize("name", CPU_SHAPES)
def test_cpu_set_folds_where_it_was_measured_to_pay(name):
    (v, d, h, n), folds = CPU_SHAPES[name]
    for dtype in (torch.float32, torch.bfloat16):
        plan = cost_model.plan(n, v, d, h, dtype, torch.device("cpu"))
        assert plan.backend == "torch" and plan.fold == folds


@pytest.mark.parametrize("name", ANCHORS)
def test_auto_never_picks_kernels_no_gpu_measurement_shows_faster(name):
    # docs/benchmarks.md has the (old) kernels slower than eager on every class: until a GPU
    # run records otherwise, auto runs the torch path on CUDA, folding only for small V.
    (v, d, h, n), _, klass = ANCHORS[name]
    plan = cost_model.plan(n, v, d, h, torch.bfloat16, torch.device("cuda"))
    assert plan.backend == "torch" and plan.fold == (klass == SMALL)


def test_explicit_backend_and_strategy_override_the_table():
    v, d, h, n = ANCHORS["caption-subword"][0]
    cuda = torch.device("cuda")
    assert cost_model.plan(n, v, d, h, torch.bfloat16, cuda, backend="triton").fold
    forced = cost_model.plan(n, v, d, h, torch.bfloat16, cuda, backend="triton", strategy="direct")
    assert forced.backend == "triton" and not forced.fold
    assert cost_model.plan(n, v, d, h, torch.bfloat16, cuda, strategy="folded").fold
    lookup = cost_model.plan(n, v, d, None, torch.bfloat16, cuda, strategy="folded")
    assert not lookup.fold  # nothing to fold without a projection


def test_a_symbolic_batch_keeps_the_direct_plan():
    # a dynamic N under export is not an int: the direct plan adds no guard on it
    assert cost_model.shape_class(4096, 8, 16, 16) == SMALL
    assert cost_model.shape_class(object(), 8, 16, 16) == LARGE


@pytest.mark.parametrize("name", ANCHORS)
def test_roofline_reproduces_the_anchor_forward_limits(name):
    shape, forward_ms, klass = ANCHORS[name]
    h100 = cost_model.device_spec("H100")
    forward = cost_model.roofline_ms(shape, "bf16", "fwd", h100)
    if klass == LARGE:  # the direct plan: the anchors' figure
        assert forward == pytest.approx(forward_ms, abs=1.5e-3)
    else:  # folding reads V table rows instead of N: below it
        assert forward < forward_ms
    # sum-by-id: the forward+backward minimum is above the forward one and below the old 3x
    both = cost_model.roofline_ms(shape, "bf16", "fwd+bwd", h100)
    assert forward < both < 3 * forward_ms


def test_roofline_counts_distinct_ids():
    h100 = cost_model.device_spec("H100")
    shape = ANCHORS["llama-vocab"][0]
    few = cost_model.roofline_ms(shape, "bf16", "fwd+bwd", h100, distinct=100)
    assert few < cost_model.roofline_ms(shape, "bf16", "fwd+bwd", h100)
    assert cost_model.expected_distinct(8192, 128256) == pytest.approx(7936, abs=1)


def test_cpu_gemm_dtype_upcasts_only_without_native_support():
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    want = torch.bfloat16 if native else torch.float32
    assert cost_model.cpu_gemm_dtype(torch.bfloat16) == want
    assert cost_model.cpu_gemm_dtype(torch.float32) == torch.float32


def test_sm_count_without_cuda_is_one():
    if torch.cuda.is_available():
        assert cost_model.num_sms() > 1
    else:
        assert cost_model.num_sms() == 1
