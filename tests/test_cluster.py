"""Cluster jobs: ranks from the environment, the preflight check, run ids and resume, atomic
checkpoints, and jobs that are killed, preempted and requeued, on one machine.

The end-to-end tests run `mmembed-train` in subprocesses on a tiny speech corpus and compare
final weights bitwise: an interrupted-and-resumed run must end exactly where the same run
uninterrupted ends, whoever started its processes (Lightning, torchrun, submitit)."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment

from helpers import fake_slurm
from helpers.run_control import assert_resumes_exactly
from helpers.runs import tiny_video_corpus, video_overrides
from mmembed.artifacts import CheckpointError
from mmembed.callbacks import AtomicCheckpointIO, Preempted, RunCheckpoint
from mmembed.cluster.environment import SubmititLocalEnvironment, cluster_plugins, external_launch
from mmembed.cluster.preflight import PreflightError, check_process_count
from mmembed.cluster.resume import ResumeError, resume_checkpoint
from mmembed.cluster.run_id import given_run_id
from mmembed.datagen.speech import build_speech_corpus
from mmembed.train import run

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

SLURM_JOB = {
    "SLURM_JOB_ID": "8123", "SLURM_JOB_NAME": "train", "SLURM_NTASKS": "4",
    "SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_NUM_NODES": "2", "SLURM_NNODES": "2",
    "SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
    "SLURM_NODELIST": "node[07-08]",
}  # fmt: skip
LAUNCH_VARIABLES = [
    *SLURM_JOB, "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "MMEMBED_RUN_ID",
    "SUBMITIT_EXECUTOR", "TORCHELASTIC_RUN_ID", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "LOCAL_RANK",
    "RANK", "MASTER_ADDR", "MASTER_PORT",  # Lightning's environments set these two
]  # fmt: skip


@pytest.fixture
def clean_launch_env(monkeypatch):
    """No scheduler or launcher variables from the machine running the tests; the rank a
    trainer built under fake ones sets for rank_zero_only is put back afterwards."""
    from lightning.pytorch.utilities import rank_zero_only

    before = dict(os.environ)
    for name in [*LAUNCH_VARIABLES, *(v for v in os.environ if v.startswith("SUBMITIT_LOCAL"))]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)
    yield monkeypatch
    # Lightning's environments also write MASTER_ADDR/MASTER_PORT into os.environ
    os.environ.clear()
    os.environ.update(before)


def build_trainer(**kwargs):
    import lightning as L

    return L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, plugins=cluster_plugins(),
        **kwargs,
    )  # fmt: skip


# --- where ranks come from ------------------------------------------------------------------


def test_slurm_variables_give_rank_world_and_node_and_requeueing_stays_off(clean_launch_env):
    for name, value in SLURM_JOB.items():
        clean_launch_env.setenv(name, value)
    (environment,) = cluster_plugins()
    assert isinstance(environment, SLURMEnvironment) and not environment.auto_requeue
    trainer = build_trainer(devices=2, num_nodes=2, strategy="ddp")
    assert (trainer.global_rank, trainer.local_rank, trainer.node_rank) == (3, 1, 1)
    assert trainer.world_size == 4
    assert trainer.strategy.cluster_environment.main_address == "node07"
    launch = external_launch()
    assert (launch.processes, launch.nodes) == (4, 2)
    check_process_count(trainer)  # 2 devices x 2 nodes = 4 tasks
    assert given_run_id() == "8123"
    clean_launch_env.setenv("SLURM_ARRAY_JOB_ID", "8100")
    clean_launch_env.setenv("SLURM_ARRAY_TASK_ID", "7")
    assert given_run_id() == "8100_7", "each array task has its own run folder"
    clean_launch_env.setenv("MMEMBED_RUN_ID", "mine")
    assert given_run_id() == "mine"
    clean_launch_env.delenv("MMEMBED_RUN_ID")
    clean_launch_env.setenv("SLURM_JOB_NAME", "interactive")
    assert given_run_id() is None, "runs in an salloc session are not one job to resume"


def test_submitit_local_variables_give_the_ranks_lightning_does_not_detect(clean_launch_env):
    clean_launch_env.setenv("SUBMITIT_EXECUTOR", "local")
    for name, value in {"NTASKS": "2", "GLOBALID": "1", "LOCALID": "1", "NODEID": "0",
                        "JOB_NUM_NODES": "1", "JOB_ID": "4242"}.items():  # fmt: skip
        clean_launch_env.setenv(f"SUBMITIT_LOCAL_{name}", value)
    (environment,) = cluster_plugins()
    assert isinstance(environment, SubmititLocalEnvironment)
    trainer = build_trainer(devices=2, strategy="ddp")
    assert (trainer.global_rank, trainer.local_rank, trainer.world_size) == (1, 1, 2)
    assert environment.main_port == 20000 + 4242  # the same on every task of the job
    assert given_run_id() == "4242"


def test_a_plain_machine_gets_lightnings_own_detection(clean_launch_env):
    assert cluster_plugins() == [] and external_launch() is None and given_run_id() is None


@pytest.mark.parametrize(
    ("variables", "source"),
    [
        (SLURM_JOB, r"SLURM \(SLURM_NTASKS=4, 2 node\(s\)\) started 4"),
        (
            {
                "TORCHELASTIC_RUN_ID": "x",
                "WORLD_SIZE": "2",
                "LOCAL_WORLD_SIZE": "2",
                "RANK": "0",
                "LOCAL_RANK": "0",
            },
            r"torchrun \(WORLD_SIZE=2\) started 2",
        ),
    ],  # fmt: skip
)
def test_preflight_mismatch_fails_before_any_data_work_naming_both_numbers(
    clean_launch_env, compose_train, tmp_path, variables, source
):
    for name, value in variables.items():
        clean_launch_env.setenv(name, value)
    # the data folder does not exist: the preflight error must come first
    cfg = compose_train(
        ["experiment=asr_default", "corpus=none", f"data.data_dir={tmp_path}/nowhere"]
    )
    with pytest.raises(
        PreflightError, match=rf"trainer.devices=1 x trainer.num_nodes=1 = 1 .*{source}"
    ):
        run(cfg)


@pytest.mark.parametrize("launcher", ["submitit_slurm", "submitit_local"])
def test_the_submitit_launchers_compose_with_one_task_per_gpu(compose_train, launcher):
    from hydra.utils import get_class

    cfg = compose_train([f"hydra/launcher={launcher}", "hydra.launcher.gpus_per_node=4"])
    settings = cfg.hydra.launcher
    assert get_class(settings._target_).__name__ == launcher.split("_")[1].title() + "Launcher"
    if launcher == "submitit_slurm":
        assert settings.tasks_per_node == 4 and settings.max_num_timeout > 0
        assert {"partition", "account", "qos", "constraint", "signal_delay_s"} <= settings.keys()


# --- run folders and resume ------------------------------------------------------------------


def test_resume_auto_continues_the_run_folder_and_never_refuses_it(tmp_path):
    assert resume_checkpoint(None, "auto", tmp_path) is None, "a fresh run starts from scratch"
    (tmp_path / "last.ckpt").write_bytes(b"")
    assert resume_checkpoint(None, "auto", tmp_path) == str(tmp_path / "last.ckpt")
    assert resume_checkpoint("given.ckpt", "never", tmp_path) == "given.ckpt"
    with pytest.raises(ResumeError, match=r"last\.ckpt exists and resume=never"):
        resume_checkpoint(None, "never", tmp_path)
    with pytest.raises(ResumeError, match="resume must be one of"):
        resume_checkpoint(None, "always", tmp_path)
    assert resume_checkpoint(None, "auto", tmp_path, training=False) is None, "test-only runs"


@pytest.mark.parametrize("alias", ["hpc", "last"])
def test_lightnings_checkpoint_names_mean_the_run_folders_last_checkpoint(tmp_path, alias):
    """ckpt_path=hpc fails in Lightning on a job's first run (no hpc checkpoint yet)."""
    assert resume_checkpoint(alias, "auto", tmp_path) is None, "the first run starts afresh"
    with pytest.raises(ResumeError, match=rf"ckpt_path={alias}: there is no .*last\.ckpt"):
        resume_checkpoint(alias, "auto", tmp_path, training=False)
    (tmp_path / "last.ckpt").write_bytes(b"")
    for training in (True, False):
        assert resume_checkpoint(alias, "never", tmp_path, training) == str(tmp_path / "last.ckpt")


def test_the_run_folder_is_named_by_the_run_id(compose_train, clean_launch_env):
    from hydra.core.hydra_config import HydraConfig

    for name, value in SLURM_JOB.items():
        clean_launch_env.setenv(name, value)
    compose_train([])
    assert HydraConfig.get().run.dir.endswith("/train/runs/8123")
    clean_launch_env.setenv("MMEMBED_RUN_ID", "again")
    compose_train([])
    assert HydraConfig.get().run.dir.endswith("/train/runs/again")


# --- atomic checkpoints ----------------------------------------------------------------------

WRITER = """
import sys, torch
from mmembed.callbacks import AtomicCheckpointIO
AtomicCheckpointIO().save_checkpoint({"weights": torch.ones(60_000_000)}, sys.argv[1])
"""


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one_loadable(tmp_path):
    last = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"weights": torch.zeros(3), "step": 7}, last)
    temp_dir = tmp_path / "tmpdir"
    temp_dir.mkdir()
    env = {**os.environ, "TMPDIR": str(temp_dir), "PYTHONPATH": str(ROOT)}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(last)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not any(p.stat().st_size > 0 for p in last.parent.glob(".last.ckpt.tmp-*")):
            assert writer.poll() is None, "the writer finished before it could be killed"
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.005)
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    saved = torch.load(last, weights_only=True)
    assert saved["step"] == 7 and torch.equal(saved["weights"], torch.zeros(3))
    assert list(temp_dir.iterdir()) == [], "nothing is written to $TMPDIR"
    (orphan,) = last.parent.glob(".last.ckpt.tmp-*")
    # the next run's checkpoint callback removes what the killed writer left
    checkpoint = RunCheckpoint(dirpath=last.parent)
    checkpoint.setup(build_trainer(callbacks=[checkpoint]), None, "fit")
    assert not orphan.exists() and last.exists()


def test_a_failed_save_keeps_the_old_checkpoint_and_leaves_nothing(tmp_path):
    last = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, last)
    with pytest.raises(Exception, match="pickle"):
        AtomicCheckpointIO().save_checkpoint({"step": 2, "bad": lambda: None}, last)
    assert torch.load(last, weights_only=True) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_a_resumed_run_keeps_the_best_of_the_run_it_continues_from_another_folder(tmp_path):
    earlier = RunCheckpoint(dirpath=tmp_path / "first", monitor="val/loss")
    earlier.best_model_score = torch.tensor(0.25)
    earlier.best_model_path = str(tmp_path / "first" / "epoch_003.ckpt")
    earlier.best_k_models = {earlier.best_model_path: earlier.best_model_score}
    resumed = RunCheckpoint(dirpath=tmp_path / "second", monitor="val/loss")
    resumed.load_state_dict(earlier.state_dict())
    assert resumed.best_model_score == 0.25 and resumed.best_model_path == earlier.best_model_path
    assert resumed.dirpath == str(tmp_path / "second"), "new checkpoints go to the new folder"


def test_loggers_continue_the_interrupted_series(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mmembed.loggers import CSVLogger, TensorBoardLogger

    csv = tmp_path / "csv" / "metrics.csv"
    first = CSVLogger(tmp_path, name="csv", version="")
    for step in range(5):
        first.log_metrics({"loss": float(step)}, step=step)
    first.save()
    resumed = CSVLogger(tmp_path, name="csv", version="")
    resumed.continue_from(3)
    resumed.log_metrics({"loss": 30.0, "lr": 0.1}, step=3)
    resumed.save()
    rows = csv.read_text().splitlines()
    assert rows == ["loss,lr,step", "0.0,,0", "1.0,,1", "2.0,,2", "30.0,0.1,3"]
    for start, scale in ((0, 1.0), (3, 10.0)):  # an interrupted run, then its resume
        board = TensorBoardLogger(tmp_path, name="tb", version="")
        if start:
            board.continue_from(start)
        for step in range(start, 5):
            board.log_metrics({"loss": scale * step}, step=step)
        board.finalize("success")
        time.sleep(1.1)  # event files are named by the second they were created in
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("loss")]
    assert logged == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]


# --- killed, preempted, requeued: end to end ---------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    # 8 utterances in batches of 2: 4 steps per epoch in one process, 2 per rank in two
    return build_speech_corpus(
        tmp_path_factory.mktemp("corpus") / "speech", num_train=8, num_validation=3,
        num_test=3, voices=("slt", "rms"), jobs=1,
    )  # fmt: skip


def resumable_asr(corpus):
    """A deterministic tiny ASR run with dropout (RNG matters), a checkpoint every step."""
    return [
        "experiment=asr_default", f"data.data_dir={corpus}", "corpus=none",
        "task.width=32", "task.encoder.d_model=32", "task.encoder.num_layers=1",
        "task.encoder.num_heads=2", "task.encoder.ffn_dim=64", "task.encoder.n_mels=40",
        "task.encoder.subsampling_channels=8", "task.embedding.embedding_dim=16",
        "task.encoder.dropout=0.1", "data.num_workers=0", "data.max_batch_size=2",
        "trainer.max_time=null", "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1",
        "callbacks.model_checkpoint.last_every_n_train_steps=1", "callbacks.rich_progress_bar=null",
        "test=false",
    ]  # fmt: skip


def train_cli(root, run_id, *overrides, launcher=(sys.executable, "-m", "mmembed.train"), env=()):
    """``mmembed-train`` in a subprocess, with ``MMEMBED_RUN_ID=run_id`` (None: unset) and no
    scheduler or launcher variables of the machine running the tests."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")]),
        **dict(env),
    }
    for name in LAUNCH_VARIABLES:
        env.pop(name, None)
    if run_id is not None:
        env["MMEMBED_RUN_ID"] = run_id
    command = [*launcher, *overrides, f"paths.root_dir={root}"]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip


def finish(process, timeout=600):
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def run_dir(root, run_id):
    return root / "logs" / "asr_default" / "runs" / run_id


def weights(folder):
    return torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def assert_bitwise_equal(got, expected):
    assert got.keys() == expected.keys()
    different = [name for name in got if not torch.equal(got[name], expected[name])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def two_process_reference(corpus, tmp_path_factory):
    """The 2-process (gloo) run, uninterrupted, started by Lightning's own launcher."""
    root = tmp_path_factory.mktemp("reference")
    code, output = finish(
        train_cli(root, "ref", *resumable_asr(corpus), "trainer=ddp_cpu", "trainer.max_epochs=2")
    )
    assert code == 0, output[-3000:]
    return run_dir(root, "ref")


@pytest.mark.slow
@pytest.mark.parametrize(("trainer", "kill_step"), [("cpu", 3), ("ddp_cpu", 2)])
def test_a_run_killed_mid_epoch_resumes_bitwise_exact_from_its_run_folder(
    corpus, tmp_path, request, trainer, kill_step
):
    """SIGKILL after the mid-epoch checkpoint of step kill_step - 1; the restart with the same
    run id and no ckpt_path ends with the uninterrupted run's weights and metrics.csv."""
    common = [*resumable_asr(corpus), f"trainer={trainer}", "trainer.max_epochs=2"]
    if trainer == "ddp_cpu":
        reference = request.getfixturevalue("two_process_reference")
    else:
        code, output = finish(train_cli(tmp_path, "ref", *common))
        assert code == 0, output[-3000:]
        reference = run_dir(tmp_path, "ref")
    killer = [
        "+callbacks.kill._target_=helpers.run_control.KillAt", f"+callbacks.kill.step={kill_step}"
    ]
    code, output = finish(train_cli(tmp_path, "job", *common, *killer))
    assert code == -signal.SIGKILL, output[-3000:]
    folder = run_dir(tmp_path, "job")
    saved = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == kill_step - 1 and saved["epoch"] == 0, "a mid-epoch checkpoint"

    code, output = finish(train_cli(tmp_path, "job", *common))
    assert code == 0, output[-3000:]
    assert f"resuming from {folder}/checkpoints/last.ckpt" in output
    assert_bitwise_equal(weights(folder), weights(reference))
    # the logged series continues: every step once, with the uninterrupted run's values
    csv = (folder / "csv" / "metrics.csv").read_text()
    assert csv == (reference / "csv" / "metrics.csv").read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "message"),
    [
        ("SIGUSR1", "preempted by SIGUSR1: saved .*at step 2; no scheduler to requeue it"),
        ("SIGTERM", "stopped by SIGTERM: saved .*at step 2$"),
    ],
)
def test_a_signal_stops_a_run_at_the_step_boundary_with_its_checkpoint(
    compose_train, corpus, tmp_path, signum, message
):
    overrides = [*resumable_asr(corpus), "trainer.max_epochs=1",
                 "callbacks.model_checkpoint.last_every_n_train_steps=null",
                 "+callbacks.signal._target_=helpers.run_control.SignalAt",
                 "+callbacks.signal.step=2", f"+callbacks.signal.signum={signum}"]  # fmt: skip
    with pytest.raises(Preempted, match=message) as stopped:
        run(compose_train(overrides))
    assert stopped.value.code == os.EX_TEMPFAIL
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 2, "written at the step the signal arrived in"
    assert signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None), "handlers put back"


class Payload:
    """What a crafted checkpoint hides: unpickling it opens (creates) a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("how", ["ckpt_path", "resume=auto"])
def test_a_crafted_checkpoint_is_refused_without_running_its_payload(
    compose_train, corpus, tmp_path, how
):
    marker = tmp_path / "payload_ran"
    crafted = tmp_path / ("crafted.ckpt" if how == "ckpt_path" else "run/checkpoints/last.ckpt")
    crafted.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "tokenizer": Payload(marker)}, crafted)
    extra = [f"ckpt_path={crafted}"] if how == "ckpt_path" else []
    with pytest.raises(CheckpointError, match=rf"{crafted}: not a readable PyTorch checkpoint"):
        run(compose_train([*resumable_asr(corpus), *extra]))
    assert not marker.exists(), "the payload ran"


@pytest.mark.slow
def test_an_sbatch_job_preempted_by_sigusr1_requeues_itself_once_and_resumes(
    compose_train, corpus, tmp_path, clean_launch_env
):
    """A plain SLURM job (sbatch + srun, no submitit): SIGUSR1 -> last.ckpt at the step
    boundary -> one ``scontrol requeue <job id>`` (Lightning's own requeue stays off) -> exit
    75; the requeued job (same job id, same folder) continues from last.ckpt by itself."""
    job = {**SLURM_JOB, "SLURM_JOB_ID": "5150", "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1",
           "SLURM_NNODES": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_PROCID": "0",
           "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "node01"}  # fmt: skip
    for name, value in job.items():
        clean_launch_env.setenv(name, value)
    slurm = tmp_path / "slurm"
    clean_launch_env.setenv("PATH", f"{fake_slurm.install(slurm)}{os.pathsep}{os.environ['PATH']}")
    common = [*resumable_asr(corpus), "trainer.max_epochs=1",
              "callbacks.model_checkpoint.last_every_n_train_steps=null"]  # fmt: skip
    signaller = ["+callbacks.signal._target_=helpers.run_control.SignalAt",
                 "+callbacks.signal.step=2", "+callbacks.signal.signum=SIGUSR1"]  # fmt: skip
    with pytest.raises(Preempted, match=r"preempted by SIGUSR1: saved .*at step 2; SLURM job 5150"):
        run(compose_train([*common, *signaller]))
    assert (slurm / "jobs.log").read_text().splitlines() == ["scontrol requeue 5150"]
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 2

    run(compose_train(common))  # the requeued job: same job id, no ckpt_path
    final = torch.load(last, weights_only=True)
    assert final["global_step"] == 4 and final["epoch"] == 0
    assert (slurm / "jobs.log").read_text().splitlines() == ["scontrol requeue 5150"], "once"


def task_pids(marker):
    """submitit's task processes (``python -u -m submitit.core._submit <folder>``, not the srun
    that started them) whose folder mentions ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().decode().split("\0")
        except (OSError, ValueError):
            continue
        if args[1:4] == ["-u", "-m", "submitit.core._submit"] and marker in args[4]:
            pids.append(int(entry.name))
    return pids


SUBMITIT_LAUNCHERS = {
    # the same job on this machine, through submitit's local executor
    "submitit_local": [],
    # a job array submitted with sbatch to the fake SLURM of tests/helpers/fake_slurm.py: srun
    # starts the tasks with SLURM's variables, and submitit requeues with scontrol
    "submitit_slurm": ["hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
                       "hydra.launcher.mem_gb=null"],  # fmt: skip
}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", sorted(SUBMITIT_LAUNCHERS))
def test_a_submitit_two_task_job_is_preempted_requeued_and_finishes_exactly(
    corpus, tmp_path, two_process_reference, launcher
):
    """hydra/launcher=submitit_local|submitit_slurm with 2 tasks and no MMEMBED_RUN_ID: the job
    gets submitit's preemption signal (SIGUSR2, as SLURM or submitit's controller sends it
    before the time limit) mid-training, writes last.ckpt, submitit requeues it (on SLURM with
    one ``scontrol requeue``), and the requeued job finishes in the same folder with the weights
    of the uninterrupted run."""
    env = {}
    if launcher == "submitit_slurm":
        env["PATH"] = f"{fake_slurm.install(tmp_path / 'slurm')}{os.pathsep}{os.environ['PATH']}"
    job = train_cli(
        tmp_path, None, "-m", *resumable_asr(corpus), "trainer=ddp_cpu", "trainer.max_epochs=2",
        f"hydra/launcher={launcher}", "hydra.launcher.tasks_per_node=2",
        *SUBMITIT_LAUNCHERS[launcher], env=env,
    )  # fmt: skip
    multiruns = tmp_path / "logs" / "asr_default" / "multiruns"
    deadline = time.monotonic() + 400
    while not list(multiruns.glob("*/0/checkpoints/last.ckpt")):
        assert job.poll() is None, job.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the job never wrote a checkpoint"
        time.sleep(0.05)
    (sweep,) = multiruns.iterdir()
    tasks = task_pids(str(sweep))
    assert len(tasks) == 2
    for pid in tasks:
        os.kill(pid, signal.SIGUSR2)
    code, output = finish(job)
    assert code == 0, output[-3000:]
    (log,) = sweep.glob(".submitit/*/*_0_log.out")
    text = log.read_text()
    preempted = re.search(r"preempted by SIGUSR2: saved \S+last\.ckpt at step (\d+)", text)
    assert preempted and int(preempted[1]) < 4, "preempted mid-training (4 steps per rank)"
    if launcher == "submitit_slurm":
        events = (tmp_path / "slurm" / "jobs.log").read_text()
        job_id = re.search(r"submitted (\S+) \(2 task\(s\)\)", events)[1]
        assert events.count("scontrol requeue") == 1 and f"scontrol requeue {job_id}\n" in events
        assert f"requeued {job_id}\n" in events and events.count("requeued") == 1
    else:
        assert "Requeued job" in text, "submitit requeued it"
    assert "resuming from" in text and text.count("final metrics:") == 1
    assert_bitwise_equal(weights(sweep / "0"), weights(two_process_reference))
    assert sorted(p.name for p in sweep.iterdir() if not p.name.startswith(".")) == [
        "0",
        "multirun.yaml",
    ], "the requeued job ran in the same folder"


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(corpus, tmp_path, two_process_reference):
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node=2", "-m", "mmembed.train")  # fmt: skip
    code, output = finish(
        train_cli(
            tmp_path,
            "elastic",
            *resumable_asr(corpus),
            "trainer=ddp_cpu",
            "trainer.max_epochs=2",
            launcher=torchrun,
        )  # fmt: skip
    )
    assert code == 0, output[-3000:]
    assert output.count("final metrics:") == 1
    assert_bitwise_equal(weights(run_dir(tmp_path, "elastic")), weights(two_process_reference))


@pytest.mark.slow
def test_a_multirun_of_two_configurations_with_ddp_cpu_runs_each_job_once(
    corpus, tmp_path, two_process_reference
):
    """Lightning starts the second rank of each sweep job itself: that rank runs its own job
    in its job's folder, not the whole sweep."""
    code, output = finish(
        train_cli(
            tmp_path,
            "sweep",
            "-m",
            *resumable_asr(corpus),
            "trainer=ddp_cpu",
            "trainer.max_epochs=2,1",
        )  # fmt: skip
    )
    assert code == 0, output[-3000:]
    logs = tmp_path / "logs" / "asr_default"
    assert sorted(p.name for p in logs.iterdir()) == ["multiruns"], "no stray run folders"
    sweep = logs / "multiruns" / "sweep"
    assert output.count("final metrics:") == 2
    assert_bitwise_equal(weights(sweep / "0"), weights(two_process_reference))
    one_epoch = torch.load(sweep / "1" / "checkpoints" / "last.ckpt", weights_only=True)
    assert one_epoch["epoch"] == 0 and one_epoch["global_step"] == 2


# --- on GPUs (pytest -m gpu; CI has none) -----------------------------------------------------
# Video classification: unlike CTC loss, every op of its backward has a deterministic CUDA
# kernel, so trainer.deterministic=true makes GPU runs bitwise repeatable.


@pytest.fixture(scope="module")
def video_corpus(tmp_path_factory):
    return tiny_video_corpus(tmp_path_factory.mktemp("video") / "corpus")


def gpu_video_run(corpus, *extra):
    return video_overrides(
        corpus, "trainer.deterministic=true", "trainer.max_epochs=2", "trainer.max_time=null",
        "trainer.limit_val_batches=1", "task.encoder.dropout=0.1", "data.color_jitter=0.5",
        "callbacks.rich_progress_bar=null", "test=false", *extra,
    )  # fmt: skip


@pytest.mark.gpu
def test_a_stopped_gpu_run_resumes_bitwise_with_its_cuda_rng_states(
    compose_train, video_corpus, tmp_path
):
    assert torch.cuda.is_available(), "needs a CUDA device"
    assert_resumes_exactly(compose_train, gpu_video_run(video_corpus, "trainer=gpu"), tmp_path, 1)


@pytest.mark.gpu
def test_a_two_gpu_nccl_run_killed_mid_epoch_resumes_bitwise(video_corpus, tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip(f"needs 2 GPUs, this machine has {torch.cuda.device_count()}")
    common = [*gpu_video_run(video_corpus, "trainer=ddp", "trainer.devices=2"),
              "callbacks.model_checkpoint.last_every_n_train_steps=1"]  # fmt: skip
    code, output = finish(train_cli(tmp_path, "ref", *common))
    assert code == 0, output[-3000:]
    killer = ["+callbacks.kill._target_=helpers.run_control.KillAt", "+callbacks.kill.step=2"]
    code, output = finish(train_cli(tmp_path, "job", *common, *killer))
    assert code != 0, output[-3000:]
    code, output = finish(train_cli(tmp_path, "job", *common))
    assert code == 0 and "resuming from" in output, output[-3000:]
    runs = tmp_path / "logs" / "video_default" / "runs"
    assert_bitwise_equal(weights(runs / "job"), weights(runs / "ref"))
