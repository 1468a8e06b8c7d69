"""Hydra configs that exist so far build what they describe."""

from pathlib import Path

import hydra
import torch
from omegaconf import OmegaConf

from mmembed import SharedEmbedding

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_shared_embedding_config_instantiates():
    cfg = OmegaConf.load(CONF / "model" / "embedding" / "shared.yaml")
    cfg.num_embeddings = 100
    layer = hydra.utils.instantiate(cfg)
    assert isinstance(layer, SharedEmbedding)
    assert layer(torch.tensor([[0, 5, 99]])).shape == (1, 3, 256)
    assert layer.padding_idx == 0
