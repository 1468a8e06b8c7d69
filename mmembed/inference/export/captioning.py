"""What a captioner exports: the encoder graph (images -> the decoder's cross-attention keys
and values) and the decoder-step graph; the beam search runs on the host over them."""

from __future__ import annotations

import torch
from torch import nn
from torch.export import Dim

from mmembed.inference.export.builder import ExportPlan, GraphSpec
from mmembed.inference.export.decoder import MAX_ITEMS, decoder_step_graph
from mmembed.inference.export.rebuild import TrainedModel


class CaptionEncoderGraph(nn.Module):
    """``images (B, 3, H, W) -> memory_cache (layers, 2, B, heads, regions, head_dim)``."""

    def __init__(self, task):
        super().__init__()
        self.task = task

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.task.decoder.memory_cache(self.task(images))


def plan(trained: TrainedModel) -> ExportPlan:
    task = trained.task
    data = trained.data
    size = int(data["image_size"])
    generator = torch.Generator().manual_seed(0)
    encoder = GraphSpec(
        module=CaptionEncoderGraph(task),
        example=(torch.randn(3, 3, size, size, generator=generator),),
        dynamic_shapes=({0: Dim("batch", min=1, max=MAX_ITEMS)},),
        inputs=("images",),
        outputs=("memory_cache",),
        sample=(torch.randn(2, 3, size, size, generator=generator),),
    )
    config = {
        "tokenizer": task.tokenizer.to_dict(),
        "preprocessing": {
            "image_size": size,
            "mean": list(data["mean"]),
            "std": list(data["std"]),
        },
        "search": task.search_options(),
        # the begin token takes one of the decoder's learned positions
        "max_generated_tokens": task.decoder.max_length - 1,
        "cache_layout": list(task.decoder.cache_layout),
    }
    graphs = {
        "encoder": encoder,
        "decoder_step": decoder_step_graph(task.decoder, memory_padding=False),
    }
    return ExportPlan("image_captioning", graphs, config)
