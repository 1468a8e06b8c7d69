"""A SLURM of one machine for tests: ``sbatch``, ``srun``, ``scontrol requeue`` and ``sacct``,
enough for submitit's ``SlurmExecutor`` (and so hydra-submitit-launcher's ``submitit_slurm``)
to submit a job array, run its tasks with SLURM's variables, and requeue a preempted job.

:func:`install` writes the four commands into ``<state>/bin`` (put it first on ``PATH``); their
state (job counter, requeue marks, every command line) lives in ``<state>``. A job runs
detached, as under SLURM: its script again, with ``SLURM_RESTART_COUNT`` + 1, whenever
``scontrol requeue`` marked it while it ran. ``<state>/jobs.log`` records every submission,
start and requeue, one line each.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

COMMANDS = ("sbatch", "srun", "scontrol", "sacct")


def install(state: Path) -> Path:
    """The folder of the fake commands (created with ``state``)."""
    bin_dir = state / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        script = bin_dir / name
        script.write_text(
            f'#!/bin/sh\nFAKE_SLURM_STATE={shlex.quote(str(state))} exec '
            f'{shlex.quote(sys.executable)} {shlex.quote(__file__)} {name} "$@"\n'
        )
        script.chmod(0o755)
    return bin_dir


def _state() -> Path:
    return Path(os.environ["FAKE_SLURM_STATE"])


def _log(line: str) -> None:
    with open(_state() / "jobs.log", "a") as handle:
        handle.write(line + "\n")


def _directives(script: Path) -> dict[str, str]:
    options = {}
    for line in script.read_text().splitlines():
        match = re.match(r"#SBATCH --([\w-]+)(?:=(.*))?$", line)
        if match:
            options[match[1]] = shlex.split(match[2])[0] if match[2] else ""
    return options


def sbatch(args: list[str]) -> None:
    script = Path(args[-1])
    options = _directives(script)
    counter = _state() / "next_job_id"
    job_id = int(counter.read_text()) if counter.exists() else 1000
    counter.write_text(str(job_id + 1))
    array = options.get("array")
    indices = [None]
    if array:
        first, last = re.match(r"(\d+)-(\d+)", array).groups()
        indices = list(range(int(first), int(last) + 1))
    nodes = int(options.get("nodes", 1))
    tasks = nodes * int(options.get("ntasks-per-node", 1))
    for offset, index in enumerate(indices):
        env = {
            **os.environ,
            "SLURM_JOB_ID": str(job_id + offset),
            "SLURM_JOB_NAME": options.get("job-name", script.stem),
            "SLURM_NTASKS": str(tasks),
            "SLURM_NTASKS_PER_NODE": options.get("ntasks-per-node", "1"),
            "SLURM_JOB_NUM_NODES": str(nodes),
            "SLURM_NNODES": str(nodes),
            "SLURM_JOB_NODELIST": "localhost",
            "SLURM_NODELIST": "localhost",
            "SLURM_SUBMIT_DIR": os.getcwd(),
        }
        name = str(job_id + offset)
        if index is not None:
            env.update(SLURM_ARRAY_JOB_ID=str(job_id), SLURM_ARRAY_TASK_ID=str(index))
            name = f"{job_id}_{index}"
        _log(f"submitted {name} ({tasks} task(s)): {' '.join(args)}")
        subprocess.Popen(
            [sys.executable, __file__, "job", name, str(script)], env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    print(f"Submitted batch job {job_id}", flush=True)


def job(args: list[str]) -> None:
    """Run a job's script; again while ``scontrol requeue`` marked it during the run."""
    name, script = args
    mark = _state() / f"requeue_{name}"
    restarts = 0
    while True:
        _log(f"started {name} (restart {restarts})")
        env = {**os.environ, "SLURM_RESTART_COUNT": str(restarts)}
        code = subprocess.run(["bash", script], env=env).returncode
        if not mark.exists():
            _log(f"ended {name} with {code}")
            return
        mark.unlink()
        restarts += 1
        _log(f"requeued {name}")


def _expand(pattern: str, task: int) -> str:
    env = os.environ
    return (
        pattern.replace("%A", env.get("SLURM_ARRAY_JOB_ID", ""))
        .replace("%a", env.get("SLURM_ARRAY_TASK_ID", ""))
        .replace("%j", env["SLURM_JOB_ID"])
        .replace("%t", str(task))
    )


def srun(args: list[str]) -> None:
    """``srun [--unbuffered] [--output F] [--error F] command...``: one process per task."""
    files: dict[str, str] = {}
    while args and args[0].startswith("--"):
        option = args.pop(0)
        if option in ("--output", "--error"):
            files[option] = args.pop(0)
    tasks = int(os.environ["SLURM_NTASKS"])
    per_node = int(os.environ.get("SLURM_NTASKS_PER_NODE", tasks))
    with contextlib.ExitStack() as files_open:
        processes = []
        for task in range(tasks):
            env = {
                **os.environ, "SLURM_PROCID": str(task), "SLURM_LOCALID": str(task % per_node),
                "SLURM_NODEID": str(task // per_node), "SLURM_STEP_ID": "0",
            }  # fmt: skip
            streams = {
                option: files_open.enter_context(open(_expand(files[option], task), "a"))
                for option in ("--output", "--error")
                if option in files
            }
            out = streams.get("--output")
            err = streams.get("--error", out)
            processes.append(subprocess.Popen(args, env=env, stdout=out, stderr=err))
        codes = [process.wait() for process in processes]
    sys.exit(max(codes, key=abs))


def scontrol(args: list[str]) -> None:
    _log(f"scontrol {' '.join(args)}")
    if args[:1] == ["requeue"]:
        (_state() / f"requeue_{args[1]}").touch()


def sacct(args: list[str]) -> None:
    print("JobID|State|NodeList")  # no rows: submitit then waits for the result file


if __name__ == "__main__":
    {"sbatch": sbatch, "srun": srun, "scontrol": scontrol, "sacct": sacct, "job": job}[
        sys.argv[1]
    ](sys.argv[2:])
