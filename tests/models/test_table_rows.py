"""TableRows: part of a shared table as a table of its own, optionally read out by a map."""

import torch

from mmembed import SharedEmbedding
from mmembed.models.table_rows import TableRows


def test_rows_score_only_their_rows_and_the_readout_starts_as_the_identity():
    torch.manual_seed(0)
    table = SharedEmbedding(10, 8, out_features=8)
    rows = [0, 3, 5]
    plain, read = TableRows(table, rows), TableRows(table, rows, readout=True)
    hidden = torch.randn(4, 8)
    expected = hidden @ table(torch.tensor(rows)).t()
    torch.testing.assert_close(plain.logits(hidden), expected)
    torch.testing.assert_close(read.logits(hidden), expected)  # identity until fitted
    with torch.no_grad():
        read.readout.weight.mul_(2.0)
    torch.testing.assert_close(read.logits(hidden), 2 * expected, atol=1e-5, rtol=0)
    assert "read out by a linear map" in repr(read) and plain.readout is None
    # the gradient reaches the shared rows through the map
    read.logits(hidden).sum().backward()
    assert table.weight.grad is not None and read.readout.weight.grad is not None
