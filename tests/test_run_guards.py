"""The training app on bad inputs and bad luck: a diverging loss, a cut-short run, a checkpoint
that is not one, a full disk, a read-only data folder, a missing split file, a 10-step run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

from helpers.bad_files import corrupt_flac, disk_full, read_only, tree_state, write_jsonl
from helpers.runs import asr_overrides, tiny_speech_corpus
from mmembed.artifacts import CheckpointError, naming_the_folder_on_full_disk, write_atomically
from mmembed.callbacks import FiniteLossCheck, NonFiniteLossError, training_stop
from mmembed.data import sampling
from mmembed.data.sampling import DurationBucketBatchSampler
from mmembed.datagen import video as videogen
from mmembed.datagen.corpus_folder import lock_path
from mmembed.report import write_metrics
from mmembed.train import run

SMALL_RUN = (
    "data.max_batch_size=2",  # 6 utterances -> 3 batches an epoch
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.num_sanity_val_steps=0",
    "callbacks=none",
)


@pytest.fixture(scope="module")
def speech_corpus(tmp_path_factory):
    return tiny_speech_corpus(tmp_path_factory.mktemp("corpus") / "speech")


def saved_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


# --- a loss that stops being a number ----------------------------------------------------------


def test_finite_loss_check_names_the_step_and_the_batch_files():
    check = FiniteLossCheck()
    trainer = SimpleNamespace(global_step=7, current_epoch=1)
    check.on_train_batch_start(trainer, None, {"paths": ["a.wav", "b.wav"]}, 3)
    check.on_before_backward(trainer, None, torch.tensor(2.5))  # finite: nothing happens
    pattern = r"(?s)loss is nan at global step 7 \(epoch 1, batch 3\).*2 files:\n  a\.wav\n  b\.wav"
    with pytest.raises(NonFiniteLossError, match=pattern):
        check.on_before_backward(trainer, None, torch.tensor(float("nan")))
    with pytest.raises(NonFiniteLossError, match="loss is inf"):
        check.on_before_backward(trainer, None, torch.tensor(float("inf")))


@pytest.mark.slow
def test_a_diverging_run_stops_before_a_nan_reaches_the_weights(compose_train, speech_corpus):
    cfg = compose_train(
        asr_overrides(speech_corpus, *SMALL_RUN, "optimizer.lr=1e12",
                      "trainer.max_epochs=20", "trainer.gradient_clip_val=null")
    )  # fmt: skip
    with pytest.raises(NonFiniteLossError, match=r"(?s)at global step \d+ .*\.wav") as caught:
        run(cfg)
    files = caught.value.args[0].split("files:\n  ")[1].split("\n  ")
    assert len(files) in (1, 2) and all(Path(f).is_file() for f in files)


# --- why training stopped ----------------------------------------------------------------------


def stop_of(**state):
    defaults = dict(
        estimated_stepping_batches=40, max_steps=-1, global_step=40, should_stop=False,
        interrupted=False, fast_dev_run=False, early_stopping_callbacks=[], callbacks=[],
        current_epoch=2, max_epochs=2,
    )  # fmt: skip
    return training_stop(SimpleNamespace(**{**defaults, **state}))


def test_training_stop_tells_the_schedule_from_the_limits_that_cut_it():
    done = stop_of()
    assert (done.stopped_by, done.finished_schedule) == ("max_epochs", True)
    assert "finished its schedule (max_epochs) at step 40 of 40 (epoch 2 of 2)" in done.describe()
    assert stop_of(max_steps=40).stopped_by == "max_steps"

    early = EarlyStopping(monitor="val/cer")
    early.stopping_reason = EarlyStoppingReason.PATIENCE_EXHAUSTED
    early.stopping_reason_message = "Monitored metric val/cer did not improve in 4 records."
    stopped = stop_of(should_stop=True, global_step=25, early_stopping_callbacks=[early])
    assert (stopped.stopped_by, stopped.finished_schedule) == ("early_stopping", False)
    assert "stopped early at step 25 of 40" in stopped.describe()
    assert "did not improve in 4 records" in stopped.describe()

    other = stop_of(should_stop=True, global_step=3)
    assert other.stopped_by == "should_stop" and "CUT SHORT" in other.describe()
    assert stop_of(interrupted=True, global_step=3).stopped_by == "interrupted"
    # a stop requested on the very last step still finished the schedule
    assert stop_of(should_stop=True).finished_schedule


@pytest.mark.slow
def test_a_run_cut_short_by_max_time_says_so(compose_train, speech_corpus, tmp_path, capsys):
    cfg = compose_train(
        asr_overrides(speech_corpus, *SMALL_RUN, "trainer.max_epochs=1000",
                      "trainer.max_time=00:00:00:02")
    )  # fmt: skip
    metrics = run(cfg)
    assert "test/cer" in metrics  # the run still tests and reports
    report = capsys.readouterr().out
    assert "training was CUT SHORT by max_time" in report
    assert "trainer.max_time=0:00:02 was reached" in report
    saved = saved_metrics(tmp_path / "run")["run"]
    assert saved["stopped_by"] == "max_time" and not saved["finished_schedule"]
    assert saved["global_step"] < saved["scheduled_steps"] == 3000


@pytest.mark.slow
def test_early_stopping_is_reported_as_its_own_reason(compose_train, speech_corpus, tmp_path):
    # no epoch improves val/cer by 1000, so the second one stops the run
    cfg = compose_train(
        asr_overrides(speech_corpus, *SMALL_RUN[:-1], "trainer.max_epochs=30",
                      "callbacks.early_stopping.patience=1",
                      "callbacks.early_stopping.min_delta=1000")
    )  # fmt: skip
    run(cfg)
    saved = saved_metrics(tmp_path / "run")["run"]
    assert saved["stopped_by"] == "early_stopping" and saved["epochs"] == 2
    assert "val/cer" in saved["detail"]


@pytest.mark.slow
def test_a_run_of_exactly_ten_steps_with_one_cycle(compose_train, speech_corpus, tmp_path):
    # pct_start 0.1 x 10 steps = a warm-up of one step, which torch's OneCycleLR divides by
    cfg = compose_train(
        asr_overrides(speech_corpus, "data.max_batch_size=1", "trainer.max_epochs=2",
                      "trainer.limit_train_batches=5", "trainer.limit_val_batches=1",
                      "trainer.limit_test_batches=1", "callbacks=none")
    )  # fmt: skip
    assert cfg.scheduler.pct_start == 0.1
    metrics = run(cfg)
    assert "test/cer" in metrics
    saved = saved_metrics(tmp_path / "run")["run"]
    assert saved["global_step"] == saved["scheduled_steps"] == 10 and saved["finished_schedule"]


@pytest.mark.slow
def test_seeded_cpu_runs_repeat_exactly(compose_train, speech_corpus, tmp_path):
    """What the README and conf/trainer/default.yaml promise with deterministic: false."""
    overrides = asr_overrides(
        speech_corpus, *SMALL_RUN, "trainer.max_epochs=2", "trainer.log_every_n_steps=1"
    )
    first = run(compose_train(overrides, run_dir=tmp_path / "first"))
    second = run(compose_train(overrides, run_dir=tmp_path / "second"))
    assert first == second and "train/loss" in first
    assert (tmp_path / "first" / "csv" / "metrics.csv").read_text() == (
        tmp_path / "second" / "csv" / "metrics.csv"
    ).read_text()


# --- checkpoints that are not ------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all" * 10, b"PK\x03\x04junk"])
def test_resuming_from_a_file_that_is_not_a_checkpoint_names_it(
    compose_train, speech_corpus, tmp_path, content
):
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(content)
    cfg = compose_train(asr_overrides(speech_corpus, f"ckpt_path={bogus}"))
    with pytest.raises(CheckpointError, match=rf"{bogus}: not a readable PyTorch checkpoint"):
        run(cfg)
    cfg = compose_train(asr_overrides(speech_corpus, f"ckpt_path={tmp_path}/missing.ckpt"))
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: .*missing\.ckpt"):
        run(cfg)


def test_a_checkpoint_holding_no_dictionary_is_named(compose_train, speech_corpus, tmp_path):
    torch.save(torch.zeros(3), tmp_path / "tensor.ckpt")
    cfg = compose_train(asr_overrides(speech_corpus, f"ckpt_path={tmp_path}/tensor.ckpt"))
    with pytest.raises(CheckpointError, match=r"tensor\.ckpt: holds a Tensor"):
        run(cfg)


# --- a full disk -------------------------------------------------------------------------------


def test_atomic_writes_name_the_file_and_leave_the_old_one(tmp_path, capsys):
    target = write_atomically(tmp_path / "metrics.json", "old")
    with disk_full(0), pytest.raises(OSError, match=r"cannot write .*metrics\.json: File too"):
        write_metrics(target, {"test/cer": 0.25})
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]


def test_a_full_disk_when_saving_the_tokenizer_names_it(
    compose_train, speech_corpus, tmp_path, capsys
):
    cfg = compose_train(asr_overrides(speech_corpus, "debug=fast_dev_run"))
    with disk_full(16), pytest.raises(OSError, match=r"cannot write .*run/tokenizer\.json"):
        run(cfg)


@pytest.mark.slow
def test_a_full_disk_when_saving_a_checkpoint_names_it(
    compose_train, speech_corpus, tmp_path, capsys
):
    cfg = compose_train(
        asr_overrides(speech_corpus, "trainer.max_epochs=1", "trainer.limit_train_batches=1",
                      "trainer.limit_val_batches=1", "logger=csv")
    )  # fmt: skip
    # tokenizer, logs and config files fit; a checkpoint (hundreds of kB) does not
    with disk_full(64 * 1024), pytest.raises(OSError, match=r"cannot write .*checkpoints/.*\.ckpt"):
        run(cfg)
    assert not list((tmp_path / "run" / "checkpoints").glob("*"))  # no partial checkpoint


def test_a_full_disk_under_a_logger_names_the_run_folder(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(tmp_path / "run", name="csv", version="")
    logger.log_metrics({"train/loss": 1.0}, step=0)
    with (
        disk_full(0),
        pytest.raises(OSError) as caught,
        naming_the_folder_on_full_disk(tmp_path / "run"),
    ):
        logger.save()  # Lightning's own write: its error names no file
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert f"while writing in the run folder {tmp_path / 'run'}" in notes
    assert "MiB free on that disk" in notes
    # errors that already name their file are left alone
    with pytest.raises(OSError) as named, naming_the_folder_on_full_disk(tmp_path):
        raise OSError(28, "cannot write x.json: No space left on device")
    assert not getattr(named.value, "__notes__", None)


def test_a_full_disk_during_a_corpus_build_names_the_folder(tmp_path, capsys):
    out = tmp_path / "video"
    spec = dict(classes=["growing"], videos_per_class=2, num_frames=4, size=16)
    with disk_full(0), pytest.raises(OSError) as caught:
        videogen.ensure_video_corpus(out, **spec)
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert f"while building the mmembed.datagen.video corpus for {out}" in notes
    assert "MiB free on that disk" in notes
    assert list(tmp_path.iterdir()) == []  # no staging folder left


# --- data folders ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_read_only_corpus_is_read_without_writing_anything_there(
    compose_train, speech_corpus, tmp_path
):
    # the corpus step finds the corpus current (same spec) and leaves it alone
    corpus_step = ["corpus=speech", "corpus.num_train=6", "corpus.num_validation=3",
                   "corpus.num_test=3", "corpus.voices=[slt,rms]", "corpus.jobs=1"]  # fmt: skip
    overrides = asr_overrides(speech_corpus, "debug=fast_dev_run")
    overrides = [o for o in overrides if o != "corpus=none"] + corpus_step
    before = tree_state(speech_corpus.parent)
    with read_only(speech_corpus.parent):
        assert "test/cer" in run(compose_train(overrides))
    assert tree_state(speech_corpus.parent) == before
    assert lock_path(speech_corpus).is_file()
    assert not lock_path(speech_corpus).is_relative_to(speech_corpus.parent)


@pytest.mark.slow
def test_a_missing_split_file_fails_before_the_first_step(compose_train, speech_corpus, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(speech_corpus, partial)
    (partial / "test.jsonl").unlink()
    cfg = compose_train(asr_overrides(partial, "trainer.max_epochs=1", "logger=csv"))
    with pytest.raises(FileNotFoundError, match=r"manifest not found: .*partial/test\.jsonl"):
        run(cfg)
    assert not (tmp_path / "run" / "csv").exists()  # training never started
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_an_empty_dict_override_empties_the_default_dict(compose_train, tmp_path):
    import hydra

    from mmembed.overrides import apply_empty_dict_overrides

    cfg = compose_train(["experiment=caption_default", "data.extra_test_files={}"])
    assert dict(cfg.data.extra_test_files) == {"test_unseen": "test_unseen.json"}  # Hydra merged
    assert apply_empty_dict_overrides(cfg) == ["data.extra_test_files"]
    assert hydra.utils.instantiate(cfg.data).test_split_names == ["test"]
    untouched = compose_train(["experiment=caption_default"])
    assert apply_empty_dict_overrides(untouched) == []
    assert "test_unseen" in untouched.data.extra_test_files


@pytest.mark.slow
def test_skips_on_every_ddp_rank_reach_the_final_report(speech_corpus, tmp_path, monkeypatch):
    """Each rank loads its own share of the training data; rank 0 reports every rank's skips."""
    dirty = tmp_path / "dirty"
    shutil.copytree(speech_corpus, dirty)
    records = [json.loads(line) for line in (dirty / "train.jsonl").read_text().splitlines()]
    for index in range(4):
        corrupt_flac(dirty / f"corrupt{index}.flac", seconds=1.0)
        records.append({"audio_filepath": f"corrupt{index}.flac", "text": "a", "duration": 1.0})
    write_jsonl(dirty / "train.jsonl", records)
    # the run's first-epoch shards (seed 1234, batches of one): both ranks meet a corrupt file
    shards = []
    for rank in range(2):
        monkeypatch.setattr(sampling, "rank_and_world", lambda rank=rank: (rank, 2))
        batches = DurationBucketBatchSampler([r["duration"] for r in records], 60.0, 1, seed=1234)
        shards.append({records[i]["audio_filepath"] for batch in batches for i in batch})
    assert all(any(name.startswith("corrupt") for name in shard) for shard in shards)
    env = {**os.environ, "MMEMBED_RUN_ID": "ddp-skips"}
    command = [
        sys.executable, "-m", "mmembed.train", *asr_overrides(dirty), "trainer=ddp_cpu",
        "trainer.max_epochs=1", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
        "data.max_batch_size=1", "callbacks=none", f"paths.root_dir={tmp_path}",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "logs" / "asr_default" / "runs" / "ddp-skips"
    saved = json.loads((run_dir / "metrics.json").read_text())["data"]["skipped"]
    assert saved["train"] == {"unreadable audio": 4}
    for index in range(4):
        assert f"corrupt{index}.flac" in done.stdout
