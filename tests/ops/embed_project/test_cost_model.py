"""The op's cost model: device table, roofline limits, strategy choice."""

import pytest
import torch

from mmembed.ops.embed_project import cost_model

ANCHORS = {  # (V, D, H, N) and the H100 bf16 forward limit in ms, from anchors.md
    "chars-asr": ((128, 512, 512, 65536), 0.045),
    "albert-factorized": ((30000, 128, 4096, 16384), 0.047),
    "caption-subword": ((16384, 512, 768, 32768), 0.033),
    "gpt2-vocab": ((50257, 768, 768, 16384), 0.025),
    "llama-vocab": ((128256, 1024, 4096, 8192), 0.087),
}


@pytest.mark.parametrize(
    ("name", "expected"),
    [("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA H200", "H200"), ("NVIDIA A100-SXM4-80GB", "A100")],
)
def test_device_names_find_their_entry(name, expected):
    assert cost_model.device_spec(name).name == expected


def test_unknown_device_has_no_entry():
    assert cost_model.device_spec("Some Future GPU") is None


@pytest.mark.parametrize("name", ANCHORS)
def test_roofline_reproduces_the_anchor_limits(name):
    shape, forward_ms = ANCHORS[name]
    h100 = cost_model.device_spec("H100")
    limit = cost_model.roofline_ms(shape, "bf16", "fwd", h100)
    assert limit == pytest.approx(forward_ms, abs=1.5e-3)
    assert cost_model.roofline_ms(shape, "bf16", "fwd+bwd", h100) == pytest.approx(
        3 * cost_model.roofline_ms(shape, "bf16", "fwd", h100)
    )


def test_folding_is_chosen_for_small_vocabularies_only():
    v, d, h, n = ANCHORS["chars-asr"][0]
    assert cost_model.prefer_folded(n, v, d, h)
    v, d, h, n = ANCHORS["gpt2-vocab"][0]
    assert not cost_model.prefer_folded(n, v, d, h)


def test_a_symbolic_batch_keeps_the_direct_strategy():
    # a dynamic N under export is not an int: the direct strategy adds no guard on it
    assert cost_model.prefer_folded(4096, 8, 16, 16)
    assert not cost_model.prefer_folded(object(), 8, 16, 16)


def test_sm_count_without_cuda_is_one():
    if torch.cuda.is_available():
        assert cost_model.num_sms() > 1
    else:
        assert cost_model.num_sms() == 1
