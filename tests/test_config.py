"""Component configs build what they describe."""

from pathlib import Path

import hydra
import torch
from omegaconf import OmegaConf

from mmembed import SharedEmbedding

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_shared_embedding_config_is_a_partial_the_task_completes():
    factory = hydra.utils.instantiate(OmegaConf.load(CONF / "model" / "embedding" / "shared.yaml"))
    layer = factory(num_embeddings=100, out_features=64)
    assert isinstance(layer, SharedEmbedding)
    assert layer(torch.tensor([[0, 5, 99]])).shape == (1, 3, 64)
    # id 0 is the CTC blank: it must stay trainable, so no padding row by default
    assert layer.padding_idx is None
    assert layer.weight.requires_grad
