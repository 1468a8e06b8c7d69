"""What a speech recogniser exports: the encoder graph (waveforms in, the log-mel front end
inside, dynamic batch and length) and, for joint CTC/attention models, the decoder-step graph."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn
from torch.export import Dim

from mmembed.inference.export.builder import ExportPlan, GraphSpec
from mmembed.inference.export.decoder import decoder_step_graph
from mmembed.inference.export.rebuild import ExportError, TrainedModel

# the exported graph's accepted audio lengths, in seconds (longer inputs are refused by name)
MIN_SECONDS, MAX_SECONDS = 0.1, 600.0
MAX_BATCH = 1024


class SpeechEncoderGraph(nn.Module):
    """``(waveforms (B, S), lengths (B,)) -> (log_probs (B, T, V), frame_lengths (B,))``, plus
    the decoder's cross-attention cache of the frames for joint models."""

    def __init__(self, task, with_memory_cache: bool):
        super().__init__()
        self.task = task
        self.with_memory_cache = with_memory_cache

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor):
        frames, frame_lengths, log_probs = self.task.encode(waveforms, lengths)
        if not self.with_memory_cache:
            return log_probs, frame_lengths
        return log_probs, frame_lengths, self.task.decoder.memory_cache(frames)


def plan(trained: TrainedModel) -> ExportPlan:
    task = trained.task
    sample_rate = int(task.encoder.frontend.melspec.sample_rate)
    min_samples, max_samples = int(MIN_SECONDS * sample_rate), int(MAX_SECONDS * sample_rate)
    joint = task.decoder is not None
    batch = Dim("batch", min=1, max=MAX_BATCH)
    samples = Dim("samples", min=min_samples, max=max_samples)
    generator = torch.Generator().manual_seed(0)
    # traced at 3 x 0.7 s; checked on 2 utterances of 1.0 and 0.6 s of noise
    example_lengths = torch.tensor([7, 6, 5]) * sample_rate // 10
    sample_lengths = torch.tensor([10, 6]) * sample_rate // 10
    encoder = GraphSpec(
        module=SpeechEncoderGraph(task, with_memory_cache=joint),
        example=(torch.randn(3, int(example_lengths[0]), generator=generator), example_lengths),
        dynamic_shapes=({0: batch, 1: samples}, {0: batch}),
        inputs=("waveforms", "lengths"),
        outputs=("log_probs", "frame_lengths", *(("memory_cache",) if joint else ())),
        sample=(0.1 * torch.randn(2, int(sample_lengths[0]), generator=generator), sample_lengths),
    )
    graphs = {"encoder": encoder}
    config = {
        "tokenizer": task.tokenizer.to_dict(),
        "preprocessing": {
            "sample_rate": sample_rate,
            "min_samples": min_samples,
            "max_samples": max_samples,
        },
        "decoding": dataclasses.asdict(task.decoding),
        "attention": None,
    }
    files = {}
    for key in ("lexicon", "lm"):
        path = getattr(task.decoding, key)
        if path:
            if not Path(path).is_file():
                raise ExportError(
                    f"decoding.{key} {path}: no such file (it is packaged with the model)"
                )
            member = f"files/{key}{Path(path).suffix}"
            files[member] = Path(path).read_bytes()
            config["decoding"][key] = member
    if joint:
        graphs["decoder_step"] = decoder_step_graph(task.decoder, memory_padding=True)
        config["attention"] = {
            "search": task.attention_search_options(),
            "cache_layout": list(task.decoder.cache_layout),
        }
    return ExportPlan("speech_recognition", graphs, config, files=files)
