"""The speech encoder's ONNX-only forms: same outputs as the modules they stand in for."""

import onnx
import onnxruntime as ort
import torch
from torch import nn
from torch.export import Dim

from mmembed.export import export_program, onnx_bytes
from mmembed.inference.export.speech import UnguardedSelfAttention
from mmembed.models.audio import SelfAttention


class _Attend(nn.Module):
    """Self-attention of (T, B, D) frames with keys past each utterance's length masked."""

    def __init__(self, attention: nn.Module):
        super().__init__()
        self.attention = attention

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        padding = torch.arange(x.shape[0])[None, :] >= lengths[:, None]
        return self.attention(x, x, x, key_padding_mask=padding)[0]


def test_unguarded_attention_gives_self_attention_outputs_in_torch_and_onnx_runtime():
    reference = SelfAttention(nn.MultiheadAttention(32, 4)).eval()
    unguarded = UnguardedSelfAttention(reference).eval()
    x, lengths = torch.randn(7, 3, 32), torch.tensor([7, 5, 1])
    with torch.no_grad():
        expected = _Attend(reference)(x, lengths)
        torch.testing.assert_close(_Attend(unguarded)(x, lengths), expected, atol=1e-5, rtol=1e-5)
    program = export_program(
        _Attend(unguarded), (x, lengths), ({0: Dim("frames", min=2, max=64)}, None)
    )
    data = onnx_bytes(program, ["x", "lengths"], ["y"])
    # the point of this form: no NaN guard over the (B, heads, T, T) scores
    assert "IsNaN" not in {node.op_type for node in onnx.load_from_string(data).graph.node}
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    longer = torch.randn(11, 3, 32)
    for frames in (x, longer):
        with torch.no_grad():
            expected = _Attend(reference)(frames, lengths)
        (got,) = session.run(None, {"x": frames.numpy(), "lengths": lengths.numpy()})
        torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-5, rtol=1e-5)
