"""The algebra every plan rests on, checked against autograd of the torch reference
(``nn.Embedding`` + ``nn.Linear`` semantics) before any kernel relies on it.

S = the rows of dY summed per id (one row per table row). Then the folded forward
``T[ids]`` with ``T = E @ W.T + b`` equals ``E[ids] @ W.T + b``, and the backward is
``dE = S @ W`` (padding row zero), ``dW = S.T @ E``, ``db = S.sum(0)``.
"""

import pytest
import torch

from mmembed.ops.embed_project import reference


def sums_by_id(dy, ids, num_rows):
    return torch.zeros(num_rows, dy.shape[1], dtype=dy.dtype).index_add_(0, ids, dy)


@pytest.mark.parametrize("num_rows", [1, 7, 128])
@pytest.mark.parametrize("padding_idx", [-1, 0])
def test_sum_by_id_identities_match_autograd(num_rows, padding_idx):
    g = torch.Generator().manual_seed(num_rows)
    D, H, N = 12, 20, 300
    E = torch.randn(num_rows, D, dtype=torch.float64, generator=g, requires_grad=True)
    W = torch.randn(H, D, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(H, dtype=torch.float64, generator=g, requires_grad=True)
    ids = torch.randint(0, num_rows, (N,), generator=g)
    ids[: N // 3] = ids[0]  # a long run of one id
    dy = torch.randn(N, H, dtype=torch.float64, generator=g)

    y = reference.embed_project(ids, E, W, b)
    folded = torch.nn.functional.embedding(ids, torch.addmm(b, E, W.t()))
    torch.testing.assert_close(folded, y, rtol=1e-12, atol=1e-12)

    y.backward(dy)
    s = sums_by_id(dy, ids, num_rows)
    d_table, table_grad = s @ W.detach(), E.grad.clone()
    if padding_idx >= 0:  # nn.Embedding's padding row: no gradient
        d_table[padding_idx] = table_grad[padding_idx] = 0
    got = (d_table, s.t() @ E.detach(), s.sum(0))
    for a, want in zip(got, (table_grad, W.grad, b.grad), strict=True):
        torch.testing.assert_close(a, want, rtol=1e-12, atol=1e-12)
    ref = reference.embed_project_backward(dy, ids, E.detach(), W.detach(), True, padding_idx,
                                           True, True)  # fmt: skip
    for a, want in zip(got, ref, strict=True):
        torch.testing.assert_close(a, want, rtol=1e-12, atol=1e-12)


def test_an_out_of_range_id_reads_as_the_zero_row():
    # What the layer promises with check_ids=False: the output of a zero table row (the bias),
    # no gradient to the table, dY still counted in db. Sums with one extra row give exactly it.
    g = torch.Generator().manual_seed(1)
    V, D, H = 5, 4, 6
    E, W = torch.randn(V, D, generator=g), torch.randn(H, D, generator=g)
    b = torch.randn(H, generator=g)
    ids = torch.tensor([1, 7, 1, -2, 4])
    valid = (ids >= 0) & (ids < V)
    zero_padded = torch.cat([E, torch.zeros(1, D)])
    y = reference.embed_project(torch.where(valid, ids, V), zero_padded, W, b)
    torch.testing.assert_close(y[~valid], b.expand(2, H))
    dy = torch.randn(5, H, generator=g)
    s = sums_by_id(dy, torch.where(valid, ids, V), V + 1)
    torch.testing.assert_close(s.sum(0), dy.sum(0))
    torch.testing.assert_close(s[:V] @ W, sums_by_id(dy[valid], ids[valid], V) @ W)
