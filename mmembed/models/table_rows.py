"""Part of a shared table as a table of its own: a task that reads only some rows (a character
recogniser over a subword vocabulary's characters) indexes them 0..K-1 and scores only them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmembed.embedding import SharedEmbedding


class TableRows(nn.Module):
    """Rows ``rows`` of ``table``, with ids of their own: id ``i`` is row ``rows[i]``.

    ``forward(ids)`` looks the rows up through the table (its kernels, its projection), and
    ``logits(hidden)`` scores hidden states against those rows only, so a softmax over them
    never spends probability on the rest of the vocabulary. Gradients reach the shared rows.
    The table is registered here too, as the text decoder registers it.

    ``readout=True`` adds a linear map (H x H, no bias, identity at first) applied to the hidden
    states before they are scored: the part reads the shared rows through a view of its own.
    A model built from several runs sets it so that this part scores the rows (which another
    part owns) exactly as its own run did (``init_from``'s ``readout``).
    """

    def __init__(self, table: SharedEmbedding, rows: Sequence[int], readout: bool = False):
        super().__init__()
        if not len(rows) or min(rows) < 0 or max(rows) >= table.num_embeddings:
            raise ValueError(f"rows must be ids of the {table.num_embeddings}-row table")
        self.table = table
        self.register_buffer("rows", torch.tensor(list(rows), dtype=torch.long), persistent=False)
        self.readout = None
        if readout:
            width = table.output_dim
            self.readout = nn.Linear(width, width, bias=False)
            with torch.no_grad():
                self.readout.weight.copy_(torch.eye(width))

    @property
    def num_embeddings(self) -> int:
        return len(self.rows)

    @property
    def output_dim(self) -> int:
        return self.table.output_dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(self.rows[ids])

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.readout is not None:
            hidden = self.readout(hidden)
        return self.table.logits(hidden, self.rows)

    def extra_repr(self) -> str:
        readout = ", read out by a linear map" if self.readout is not None else ""
        return f"{self.num_embeddings} of {self.table.num_embeddings} rows{readout}"
