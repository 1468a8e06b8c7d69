"""The decoder-step graph shared by the captioner and the joint speech model: one token per
hypothesis in, next-token log-probabilities and the grown self-attention cache out
(:meth:`~mmembed.models.text_decoder.TransformerTextDecoder.step`)."""

from __future__ import annotations

import torch
from torch import nn
from torch.export import Dim

from mmembed.inference.export.builder import GraphSpec
from mmembed.models.text_decoder import TransformerTextDecoder

MAX_ROWS, MAX_ITEMS, MAX_MEMORY = 8192, 1024, 1 << 16


class DecoderStep(nn.Module):
    def __init__(self, decoder: TransformerTextDecoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, tokens, self_cache, memory_cache, owners, memory_padding_mask=None):
        return self.decoder.step(tokens, self_cache, memory_cache, owners, memory_padding_mask)


def decoder_step_graph(decoder: TransformerTextDecoder, memory_padding: bool) -> GraphSpec:
    """The step graph; ``memory_padding``: it also takes the memory's padding mask (B, M)."""
    layers, heads, head_dim = decoder.cache_layout
    rows = Dim("rows", min=1, max=MAX_ROWS)
    past = Dim("past", min=0, max=decoder.max_length - 1)
    items = Dim("items", min=1, max=MAX_ITEMS)
    memory = Dim("memory", min=1, max=MAX_MEMORY)
    generator = torch.Generator().manual_seed(0)
    vocabulary = decoder.embedding.num_embeddings

    def inputs(num_rows: int, num_items: int, num_past: int, memory_length: int):
        mask = torch.zeros(num_items, memory_length, dtype=torch.bool)
        mask[0, memory_length // 2 :] = True  # the first item is padded
        values = (
            torch.randint(4, vocabulary, (num_rows,), generator=generator),
            torch.randn(layers, 2, num_rows, heads, num_past, head_dim, generator=generator),
            torch.randn(layers, 2, num_items, heads, memory_length, head_dim, generator=generator),
            torch.arange(num_rows) % num_items,
        )
        return (*values, mask) if memory_padding else values

    static = Dim.STATIC
    cache = {0: static, 1: static, 2: rows, 3: static, 4: past, 5: static}
    memory_cache = {0: static, 1: static, 2: items, 3: static, 4: memory, 5: static}
    dynamic = ({0: rows}, cache, memory_cache, {0: rows})
    return GraphSpec(
        module=DecoderStep(decoder),
        example=inputs(6, 3, 4, 5),
        dynamic_shapes=(*dynamic, {0: items, 1: memory}) if memory_padding else dynamic,
        inputs=(
            "tokens",
            "self_cache",
            "memory_cache",
            "owners",
            *(("memory_padding_mask",) if memory_padding else ()),
        ),  # fmt: skip
        outputs=("log_probs", "self_cache_out"),
        sample=inputs(5, 2, 3, 7),
    )
