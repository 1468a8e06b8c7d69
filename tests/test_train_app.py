"""The Hydra + Lightning training app, exercised through speech recognition."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from helpers.runs import TINY_ASR, asr_overrides, tiny_speech_corpus
from mmembed.text import load_tokenizer
from mmembed.train import ConfigError, run, validate_config

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def group_options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if p.stem != "default")




@pytest.fixture(scope="module")
def speech_corpus(tmp_path_factory):
    return tiny_speech_corpus(tmp_path_factory.mktemp("corpus") / "speech")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_resolves(compose_train, experiment):
    cfg = compose_train([f"experiment={experiment}"])
    validate_config(cfg)
    assert cfg.task_name == experiment


@pytest.mark.parametrize(
    ("group", "option"),
    [
        (g, o)
        for g in (
            "trainer", "logger", "callbacks", "debug", "tokenizer", "data", "corpus", "task",
            "optimizer", "scheduler",
        )  # fmt: skip
        for o in group_options(g)
    ],
)
def test_every_group_option_composes(compose_train, group, option):
    # a corpus is built for its own data module (which is what `corpus: ${data}` picks)
    paired = [f"data={option}"] if group == "corpus" and option != "none" else []
    cfg = compose_train([*paired, f"{group}={option}"])
    validate_config(cfg)


@pytest.mark.parametrize("trainer", ["cpu", "ddp_cpu"])
def test_cpu_trainer_configs_build_a_trainer(compose_train, trainer):
    import hydra

    cfg = compose_train([f"trainer={trainer}"])
    built = hydra.utils.instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    assert built.max_epochs == cfg.trainer.max_epochs
    assert built.num_devices == cfg.trainer.devices


def test_top_level_typo_fails_with_a_suggestion(compose_train):
    cfg = compose_train(["+trainr.max_epochs=3"])
    with pytest.raises(ConfigError, match="unknown top-level config key.*'trainr'.*'trainer'"):
        validate_config(cfg)


def test_nested_typo_fails_at_composition(compose_train):
    with pytest.raises(ConfigCompositionException, match="max_epoch"):
        compose_train(["trainer.max_epoch=3"])


def test_unknown_component_argument_names_the_key(compose_train, speech_corpus):
    cfg = compose_train(
        asr_overrides(speech_corpus, "debug=fast_dev_run", "+task.encoder.num_layer=2")
    )
    with pytest.raises(Exception, match="num_layer"):
        run(cfg)


@pytest.mark.slow
def test_fast_dev_run_of_the_default_asr_experiment(compose_train, speech_corpus, tmp_path):
    cfg = compose_train(asr_overrides(speech_corpus, "debug=fast_dev_run"))
    metrics = run(cfg)
    assert {"train/loss", "val/cer", "val/wer", "test/cer", "test/wer"} <= metrics.keys()
    assert metrics["test/cer"] >= 0.0 and torch.isfinite(torch.tensor(metrics["train/loss"]))
    run_dir = tmp_path / "run"
    tokenizer = load_tokenizer(run_dir / "tokenizer.json")
    assert tokenizer.decode(tokenizer.encode("the cat")) == "the cat"
    assert json.loads((run_dir / "metrics.json").read_text())["test/cer"] == metrics["test/cer"]


@pytest.mark.slow
def test_joint_ctc_attention_with_bpe_and_beam_search_runs(compose_train, speech_corpus, tmp_path):
    cfg = compose_train(
        [
            "experiment=asr_joint",
            f"data.data_dir={speech_corpus}",
            *TINY_ASR,
            "task.decoder.num_layers=1",
            "task.decoder.num_heads=2",
            "task.decoder.ffn_dim=64",
            "task.decoding.beam_size=2",
            "task.decoding.max_length=20",
            "tokenizer=bpe",  # subword units through the same tied table
            "tokenizer.vocab_size=60",
            "debug=fast_dev_run",
        ]
    )
    metrics = run(cfg)
    assert "train/attention_loss" in metrics and "train/ctc_loss" in metrics
    assert "test/cer" in metrics
    assert load_tokenizer(tmp_path / "run" / "tokenizer.json").kind == "bpe"


@pytest.mark.slow
def test_ctc_beam_search_decoding_runs(compose_train, speech_corpus):
    cfg = compose_train(
        asr_overrides(speech_corpus, "debug=fast_dev_run", "task.decoding.method=ctc_beam")
    )
    assert "test/cer" in run(cfg)


@pytest.mark.slow
def test_resume_continues_at_the_saved_global_step(compose_train, speech_corpus, tmp_path, capsys):
    common = asr_overrides(
        speech_corpus,
        "data.max_batch_size=2",  # 6 utterances -> 3 batches per epoch
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=1",
        "callbacks=none",
        "+callbacks.model_checkpoint._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        f"+callbacks.model_checkpoint.dirpath={tmp_path}/ckpt",
        "+callbacks.model_checkpoint.save_last=true",
        "test=false",
    )
    run(compose_train([*common, "trainer.max_epochs=1"], run_dir=tmp_path / "first"))
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 2 and saved["epoch"] == 0
    shutil.copy(tmp_path / "ckpt" / "last.ckpt", tmp_path / "resume_from.ckpt")

    second = tmp_path / "second"
    run(
        compose_train(
            [*common, "trainer.max_epochs=2", f"ckpt_path={tmp_path}/resume_from.ckpt"],
            run_dir=second,
        )
    )
    resumed = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert resumed["global_step"] == 4 and resumed["epoch"] == 1
    # the resumed run trained only the second epoch: its logged steps start after step 2
    rows = (second / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    steps = [
        int(r.split(",")[header.index("step")])
        for r in rows[1:]
        if r.split(",")[header.index("train/loss")]
    ]
    assert steps and min(steps) >= 2, steps
    # the tokenizer came from the checkpoint, not from retraining
    assert saved["tokenizer"] == resumed["tokenizer"]

    # a test-only run evaluates the given checkpoint (not fresh weights)
    capsys.readouterr()
    metrics = run(
        compose_train(
            [*common, "train=false", "test=true", f"ckpt_path={tmp_path}/resume_from.ckpt"],
            run_dir=tmp_path / "test_only",
        )
    )
    assert "test/cer" in metrics
    assert f"best checkpoint: {tmp_path}/resume_from.ckpt" in capsys.readouterr().out


@pytest.mark.slow
def test_overfit_memorises_a_handful_of_utterances(compose_train, speech_corpus, tmp_path):
    """The model really learns: CER on memorised utterances falls below 10%."""
    memorised = tmp_path / "memorised"
    shutil.copytree(speech_corpus, memorised)
    for split in ("validation", "test"):
        shutil.copy(memorised / "train.jsonl", memorised / f"{split}.jsonl")
    cfg = compose_train(
        [
            "experiment=asr_default",
            f"data.data_dir={memorised}",
            "data.num_workers=0",
            "corpus=none",
            "task.width=96",
            "task.encoder.d_model=96",
            "task.encoder.num_layers=2",
            "task.encoder.ffn_dim=192",
            "task.encoder.dropout=0.0",
            "task.encoder.spec_augment=false",
            "optimizer.lr=0.003",
            "scheduler.pct_start=0.1",
            "trainer.max_epochs=80",
            "trainer.max_time=null",
            "trainer.check_val_every_n_epoch=20",
            "callbacks=none",
            "logger=csv",
        ]
    )
    metrics = run(cfg)
    assert metrics["test/cer"] < 0.10, metrics


@pytest.mark.slow
def test_two_process_ddp_on_cpu(speech_corpus, tmp_path):
    """Lightning relaunches rank 1 through the console script; both ranks share one run folder
    and only rank 0 reports."""
    env = {**os.environ, "MMEMBED_RUN_ID": "ddp-test"}
    command = [
        sys.executable, "-m", "mmembed.train", *asr_overrides(speech_corpus),
        "trainer=ddp_cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
        "data.max_batch_size=2", "callbacks=none", f"paths.root_dir={tmp_path}",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "logs" / "asr_default" / "runs" / "ddp-test"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "test/cer" in metrics
    assert done.stdout.count("final metrics:") == 1


def test_train_config_is_valid_yaml_with_defaults():
    cfg = OmegaConf.load(CONF / "train.yaml")
    assert cfg.defaults[0] == "_self_"
