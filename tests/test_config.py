"""Component configs build what they describe."""

from pathlib import Path

import hydra
import pytest
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


def test_decoding_settings_are_typed_at_composition(compose_train):
    from hydra.errors import ConfigCompositionException

    from mmembed.models.decoding import CaptionDecoding, SpeechDecoding

    cfg = compose_train(["experiment=asr_joint"])
    assert cfg.task.decoding.method == "attention" and cfg.task.decoding.beam_size == 4
    # the defaults come from the dataclass: one place
    assert cfg.task.decoding.lm_weight == SpeechDecoding.lm_weight
    with pytest.raises(ConfigCompositionException, match="beam_size"):
        compose_train(["task.decoding.beam_size=wide"])
    with pytest.raises(ConfigCompositionException, match="beam_width"):
        compose_train(["task.decoding.beam_width=3"])
    caption = compose_train(["experiment=caption_default"])
    assert caption.task.decoding.no_repeat_ngram_size == 3
    assert caption.task.decoding.max_length == CaptionDecoding.max_length


def test_a_bad_decoding_value_is_named_when_the_task_is_built(compose_train):
    cfg = compose_train(["task.decoding.method=viterbi"])
    with pytest.raises(Exception, match="viterbi"):
        hydra.utils.instantiate(cfg.task.decoding, _convert_="object")


@pytest.mark.parametrize("experiment", [None, "asr_default", "caption_default", "video_default"])
@pytest.mark.parametrize("option", ["one_cycle", "cosine", "none"])
def test_every_scheduler_option_builds_with_the_run_length(compose_train, option, experiment):
    from mmembed.tasks.optim import configure_optimizers

    cfg = compose_train([f"experiment={experiment}"] * bool(experiment) + [f"scheduler={option}"])
    optimizer = hydra.utils.instantiate(cfg.optimizer)
    scheduler = hydra.utils.instantiate(cfg.scheduler) if cfg.scheduler else None
    built = configure_optimizers(torch.nn.Linear(2, 2), optimizer, scheduler, total_steps=50)
    assert isinstance(built["optimizer"], torch.optim.AdamW)
    if option == "none":
        assert "lr_scheduler" not in built
    else:
        assert built["lr_scheduler"]["scheduler"].total_steps == 50


@pytest.mark.parametrize("option", ["adamw", "sgd"])
def test_every_optimizer_option_builds(compose_train, option):
    cfg = compose_train([f"optimizer={option}", "optimizer.lr=0.25"])
    optimizer = hydra.utils.instantiate(cfg.optimizer)(torch.nn.Linear(2, 2).parameters())
    assert optimizer.defaults["lr"] == 0.25
