"""Ids outside the table behave as the README promises in eager mode, under torch.compile and in
exported programs, on the torch path and the Triton path (the interpreter without a GPU):

- ``check_ids=True`` (the default): ``IndexError`` naming the id, its position and the table
  size, as ``nn.Embedding`` users expect an error for a bad id (not a silently wrong row);
- ``check_ids=False``: nothing is checked and such an id reads as an all-zero table row (the
  output is the bias), never a neighbouring row and never an out-of-bounds read.
"""

import pytest
import torch

from mmembed import SharedEmbedding

V = 10
BAD = [-1, V]  # the two ids a compiled F.embedding got wrong: -1 wrapped to row V-1, V crashed
BACKENDS = ["torch", "triton"]


def layer_for(backend, check_ids):
    torch.manual_seed(0)
    return SharedEmbedding(V, 4, out_features=6, backend=backend, check_ids=check_ids).eval()


def ids_with(bad):
    return torch.tensor([[1, 2, 3], [4, bad, 5]])


def runners(layer):
    """The layer in eager mode, compiled (fullgraph, inductor) and exported (dynamic shapes)."""
    batch, seq = torch.export.Dim("batch", max=64), torch.export.Dim("seq", max=64)
    program = torch.export.export(layer, (ids_with(0),), dynamic_shapes=({0: batch, 1: seq},))
    return {
        "eager": layer,
        "compile": torch.compile(layer, fullgraph=True, dynamic=False),
        "export": program.module(),
    }


@pytest.mark.slow  # compiles with inductor
@pytest.mark.parametrize("backend", BACKENDS)
def test_checked_ids_raise_naming_the_id_everywhere(backend):
    layer = layer_for(backend, check_ids=True)
    for run in runners(layer).values():
        torch.testing.assert_close(run(ids_with(0)), layer(ids_with(0)), rtol=1e-5, atol=1e-6)
        for bad in BAD:
            with pytest.raises(IndexError, match=rf"id {bad} at position \(1, 1\).*{V} rows"):
                run(ids_with(bad))


@pytest.mark.slow  # compiles with inductor
@pytest.mark.parametrize("backend", BACKENDS)
def test_unchecked_ids_read_the_zero_row_everywhere(backend):
    layer = layer_for(backend, check_ids=False)
    bias = layer.projection.bias.detach()
    good = layer(ids_with(0))
    for mode, run in runners(layer).items():
        for bad in BAD:
            with torch.no_grad():
                out = run(ids_with(bad))
            torch.testing.assert_close(out[1, 1], bias, msg=f"{mode}, id {bad}")
            # every other position is untouched
            keep = torch.ones(2, 3, dtype=torch.bool)
            keep[1, 1] = False
            torch.testing.assert_close(out[keep], good[keep], rtol=1e-5, atol=1e-6)
