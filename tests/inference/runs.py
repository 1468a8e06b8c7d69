"""Helpers of the inference tests: trained tiny runs (real mmembed-train runs, seconds long)
and a fresh Python process without the training stack."""

import functools
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

from conftest import GLOBAL_SEED, compose_train_config
from mmembed import SharedEmbedding
from mmembed.inference.export.rebuild import TrainedModel
from mmembed.models.video import build_video_encoder
from mmembed.tasks.video_classification import VideoClassification
from mmembed.text import train_tokenizer

# On top of the helpers' tiny-run settings: every run trains its full epochs (no time limit or
# early stop, so a busy machine gives the same model), quietly, from the test's seed.
FULL_RUN = [
    "trainer.max_time=null",
    "callbacks.early_stopping=null",
    "callbacks.rich_progress_bar=null",
    f"seed={1234 + GLOBAL_SEED}",
]

# The training stack a serving process must never import.
TRAINING_MODULES = ("lightning", "pytorch_lightning", "lightning_fabric", "hydra", "omegaconf")

# A sitecustomize-style prelude for subprocesses: importing any training module fails, as it
# would on a machine where they are not installed.
_BLOCK_TRAINING_STACK = f"""
import importlib.abc, sys
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {TRAINING_MODULES!r}:
            raise ImportError(f"{{name}} is not installed on this serving machine")
        return None
sys.meta_path.insert(0, _Blocked())
"""


def train_run(root: Path, overrides: list[str]) -> Path:
    """Train with ``mmembed.train.run`` and leave the run folder as ``mmembed-train`` does
    (checkpoints/, tokenizer.json, metrics.json, .hydra/config.yaml)."""
    from hydra.core.global_hydra import GlobalHydra

    from mmembed.train import run

    run_dir = root / "run"
    cfg = compose_train_config(root, overrides, run_dir)
    try:
        run(cfg)
    finally:
        GlobalHydra.instance().clear()
    # Hydra saves the job's config without its own node, interpolations unresolved
    config = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, run_dir / ".hydra" / "config.yaml")
    return run_dir


def linear_video_model(folder: Path, classes) -> TrainedModel:
    """An untrained small video classifier with a linear head (seeded), as a rebuilt run of
    4-frame 32-pixel clips, two per video."""
    torch.manual_seed(0)
    task = VideoClassification(
        tokenizer=train_tokenizer(classes, kind="char"),
        encoder=build_video_encoder("video_small", 32, channels=(8, 16)),
        embedding=functools.partial(SharedEmbedding, embedding_dim=16),
        width=32,
        head="linear",
        class_names=classes,
    ).eval()
    data = dict(frames_per_clip=4, frame_stride=2, size=32, num_eval_clips=2, target_fps=None,
                loop_short_videos=False, mean=(0.45,) * 3, std=(0.225,) * 3)  # fmt: skip
    return TrainedModel(task, folder / "x.ckpt", "0" * 64, {}, data, None)


def memorised(corpus: Path, destination: Path, train_file: str, other_files) -> Path:
    """A copy of ``corpus`` in which every file of ``other_files`` (the validation and test
    splits) is its training split ``train_file``."""
    shutil.copytree(corpus, destination)
    for name in other_files:
        shutil.copy(destination / train_file, destination / name)
    return destination


def run_serving_python(code: str, timeout: float = 300):
    """Run ``code`` in a fresh interpreter in which the training stack cannot be imported (as
    on a serving machine without it) and return the JSON-able value it leaves in ``result``.
    Fails if any training module got imported anyway."""
    script = "\n".join(
        [
            _BLOCK_TRAINING_STACK,
            code,
            "import json as _json, sys as _sys",
            f"_training = {TRAINING_MODULES!r}",
            "_imported = sorted(m for m in _sys.modules if m.split('.')[0] in _training)",
            "print('RESULT ' + _json.dumps({'result': result, 'imported': _imported}))",
        ]
    )
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert done.returncode == 0, done.stderr[-4000:]
    line = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")][-1]
    report = json.loads(line[len("RESULT ") :])
    assert report["imported"] == [], f"the serving process imported {report['imported']}"
    return report["result"]


def swap_program_weights(data: bytes) -> bytes:
    """A ``torch.export.save`` archive with two same-shaped weights swapped (a graph that no
    longer matches what it was exported from, yet loads fine)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    config_name = next(n for n in source.namelist() if n.endswith("model_weights_config.json"))
    config = json.loads(source.read(config_name))
    by_shape: dict[str, list[str]] = {}
    for name, payload in config["config"].items():
        by_shape.setdefault(json.dumps(payload["tensor_meta"]["sizes"]), []).append(name)
    first, second = next(names for names in by_shape.values() if len(names) >= 2)[:2]
    entries = config["config"]
    entries[first]["path_name"], entries[second]["path_name"] = (
        entries[second]["path_name"],
        entries[first]["path_name"],
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            edited = json.dumps(config).encode() if name == config_name else source.read(name)
            target.writestr(name, edited)
    return out.getvalue()


def swap_onnx_initializers(data: bytes, data_type: str = "FLOAT") -> bytes:
    """An ONNX model with two same-shaped initializers of ``data_type`` (an
    ``onnx.TensorProto`` name: FLOAT, or INT8 for an int8 graph's weights) swapped."""
    import onnx

    wanted = getattr(onnx.TensorProto, data_type)
    model = onnx.load_from_string(data)
    seen: dict[tuple, onnx.TensorProto] = {}
    for tensor in model.graph.initializer:
        key = (tuple(tensor.dims), tensor.data_type)
        if len(tensor.dims) >= 1 and tensor.data_type == wanted and key in seen:
            other = seen[key]
            if tensor.raw_data != other.raw_data:
                tensor.raw_data, other.raw_data = other.raw_data, tensor.raw_data
                return model.SerializeToString()
        seen.setdefault(key, tensor)
    raise AssertionError("no two same-shaped initializers to swap")
