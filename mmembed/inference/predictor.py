"""Loading an artifact and predicting with it: :func:`load` and the :class:`Predictor` base.

Nothing here imports Lightning or Hydra: a serving machine needs torch (and torchaudio,
torchvision, PyAV, soundfile for reading inputs), plus onnxruntime for ``runtime="onnx"``.

A predictor loads every graph in the chosen runtime, then runs the self-test: the sample
inputs stored at export go through the graphs again and must give the outputs the eager model
gave, within :data:`SELF_TEST_TOLERANCE`. A graph file that does not belong to its weights, a
runtime that computes something else, or a broken install fails here, at load, instead of
giving wrong answers later.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from mmembed.inference.artifact import Artifact, ArtifactError, read_artifact
from mmembed.inference.inputs import InputError, expand_inputs
from mmembed.inference.runtimes import Graph, check_compatible, load_graph
from mmembed.text.tokenizers import Tokenizer, load_tokenizer_dict

# task name in the manifest -> its predictor class
PREDICTORS = {
    "speech_recognition": "mmembed.inference.speech:SpeechPredictor",
    "image_captioning": "mmembed.inference.captioning:CaptionPredictor",
    "video_classification": "mmembed.inference.video:VideoPredictor",
    "multimodal_embedding": "mmembed.inference.embedding:EmbeddingPredictor",
}
SELFTEST = "selftest.safetensors"
# (rtol, atol) of the self-test. The torch program runs the eager model's own kernels (measured
# differences below 1e-5); ONNX Runtime sums in other orders, which trained models amplify
# (up to 6e-3 on CTC log-probabilities of about -14 measured); GPUs use other kernels again
# (TF32 matmuls, fused attention). A swapped or damaged weight moves outputs by far more.
SELF_TEST_TOLERANCE = {
    "torch": (1e-4, 1e-4),
    "onnx": (1e-2, 1e-2),
    "onnx-int8": (1e-2, 1e-2),  # graphs kept float; the int8 ones carry their own
    "cuda": (2e-2, 2e-2),
}


class SelfTestError(ArtifactError):
    """The graphs did not reproduce the outputs stored with them."""


class Predictor:
    """Runs one artifact's graphs; subclasses add the task's reading and decoding.

    Args:
        artifact: a verified artifact (:func:`mmembed.inference.artifact.read_artifact`).
        runtime: ``"torch"`` (the torch.export programs), ``"onnx"`` (ONNX Runtime),
            ``"onnx-int8"`` (ONNX Runtime on int8 weight products, speech encoders only; faster
            on CPU, not exact) or ``"aoti"`` (AOTInductor packages, CUDA builds only).
        device: ``"cpu"`` or ``"cuda"``.
        threads: intra-op threads of ONNX Runtime; None = torch's setting.
        self_test: re-run the stored samples now (recommended; costs one pass per graph).
    """

    task = ""
    extensions: tuple[str, ...] = ()

    def __init__(
        self,
        artifact: Artifact,
        runtime: str = "torch",
        device: str | torch.device = "cpu",
        threads: int | None = None,
        self_test: bool = True,
    ):
        self.artifact = artifact
        self.runtime = runtime
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' but torch sees no CUDA device")
        check_compatible(artifact, runtime, self.device)
        self.config: dict[str, Any] = artifact.json("config.json")
        self.tokenizer: Tokenizer = load_tokenizer_dict(
            self.config["tokenizer"], source=f"{artifact.path}:config.json"
        )
        self.graphs: dict[str, Graph] = {
            name: load_graph(artifact, name, runtime, self.device, threads)
            for name in artifact.manifest["graphs"]
        }
        self._files: tempfile.TemporaryDirectory | None = None
        if self_test:
            self.self_test()

    @property
    def manifest(self) -> dict[str, Any]:
        return self.artifact.manifest

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.artifact.path)!r}, runtime={self.runtime!r}, "
            f"device={str(self.device)!r})"
        )

    # --- the self-test ---------------------------------------------------------------------

    def self_test(self) -> None:
        """Run every graph on its stored sample inputs; raise :class:`SelfTestError` naming the
        graph, output and difference if any output is off."""
        samples = self.artifact.tensors(SELFTEST)
        key = "cuda" if self.device.type == "cuda" else self.runtime
        default = SELF_TEST_TOLERANCE.get(key, SELF_TEST_TOLERANCE["cuda"])
        for name, graph in self.graphs.items():
            spec = self.manifest["graphs"][name]
            # int8 graphs carry their own, measured at export (mmembed.inference.export.builder)
            own = spec.get("tolerance", {}).get(self.runtime)
            rtol, atol = (own["rtol"], own["atol"]) if own else default
            mean_atol = own.get("mean_atol") if own else None
            wanted = [f"{name}.input.{i}" for i in range(len(spec["inputs"]))]
            wanted += [f"{name}.output.{i}" for i in range(len(spec["outputs"]))]
            missing = [key for key in wanted if key not in samples]
            if missing:
                raise SelfTestError(f"{self.artifact.path}: {SELFTEST} lacks {missing}")
            inputs = [samples[f"{name}.input.{i}"] for i in range(len(spec["inputs"]))]
            outputs = graph(*(t.to(self.device) for t in inputs))
            for index, output_name in enumerate(spec["outputs"]):
                expected = samples[f"{name}.output.{index}"]
                problem = _difference(expected, outputs[index].cpu(), rtol, atol, mean_atol)
                if problem:
                    raise SelfTestError(
                        f"{self.artifact.path}: self-test failed: graph {name!r} output "
                        f"{output_name!r} ({self.runtime} runtime, {self.device}) differs from "
                        f"what the eager model gave at export: {problem} (tolerance rtol={rtol}, "
                        f"atol={atol}). The graph does not compute what was exported (a swapped "
                        "or damaged graph file, or a runtime that miscomputes it); re-export "
                        "the model, or try another runtime"
                    )

    # --- files and batches -----------------------------------------------------------------

    def resource(self, member: str) -> Path:
        """A ``files/`` member (lexicon, LM) as a file on disk, for libraries that need a path."""
        if self._files is None:
            self._files = tempfile.TemporaryDirectory(prefix="mmembed-files-")
        path = Path(self._files.name) / Path(member).name
        if not path.exists():
            path.write_bytes(self.artifact.read(member))
        return path

    def read(self, source: Any) -> Any:
        """One input (a path or an in-memory object) as the model's input; raises
        :class:`~mmembed.inference.inputs.InputError` naming it if it cannot be used."""
        raise NotImplementedError

    def run(self, items: Sequence[Any], **options: Any) -> list[dict[str, Any]]:
        """Predictions (one JSON-able dict each) for read inputs."""
        raise NotImplementedError

    def embed(self, inputs: Any, modality: str | None = None, batch_size: int = 8) -> Any:
        """Unit-norm embeddings (N, width) of ``inputs``: only a multimodal embedding model's
        artifact has the embedders (:class:`~mmembed.inference.embedding.EmbeddingPredictor`)."""
        raise self.embedders_missing()

    def embedders_missing(self) -> ValueError:
        """The error of asking this artifact for embeddings, naming what it holds."""
        return ValueError(
            f"{self.artifact.path} holds a {self.task} model (graphs: "
            f"{', '.join(self.graphs)}), which has no embedders; export a multimodal run "
            "(experiment=multimodal_default) to embed"
        )

    def predict_files(
        self, specs: Iterable[str], batch_size: int = 8, **options: Any
    ) -> Iterator[dict[str, Any]]:
        """One record per input file, in order: ``{"input": path, ...prediction}`` or
        ``{"input": path, "error": why}`` for an input that could not be read or run (the
        others still run). ``specs``: files, folders (their files of this task's kinds) or
        glob patterns."""
        paths = expand_inputs(specs, self.extensions)
        records = [{"input": path} for path in paths]
        return self.predict_records(
            records, paths, lambda path: self.read(_existing_file(path, self.extensions)),
            batch_size, **options,
        )  # fmt: skip

    def predict_records(
        self,
        records: Sequence[dict[str, Any]],
        sources: Sequence[Any],
        read: Callable[[Any], Any],
        batch_size: int = 8,
        **options: Any,
    ) -> Iterator[dict[str, Any]]:
        """``records`` (one per source) completed, in batches, with the prediction of
        ``read(source)``, or with ``"error"`` where it raised an
        :class:`~mmembed.inference.inputs.InputError` (the others still run)."""
        for start in range(0, len(sources), batch_size):
            chunk = list(zip(records[start : start + batch_size],
                             sources[start : start + batch_size], strict=True))  # fmt: skip
            readable, items = [], []
            for record, source in chunk:
                try:
                    items.append(read(source))
                    readable.append(record)
                except InputError as err:
                    record["error"] = str(err)
            if items:
                for record, prediction in zip(readable, self.run(items, **options), strict=True):
                    record.update(prediction)
            yield from (record for record, _ in chunk)


def _existing_file(path: str, extensions: tuple[str, ...]) -> str:
    if Path(path).is_dir():
        raise InputError(f"{path}: a folder with no {'/'.join(extensions)} files")
    if not Path(path).exists():
        raise InputError(f"{path}: no such file")
    return path


def _difference(
    expected: torch.Tensor,
    got: torch.Tensor,
    rtol: float,
    atol: float,
    mean_atol: float | None = None,
) -> str | None:
    if tuple(got.shape) != tuple(expected.shape):
        return f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if not expected.is_floating_point():
        if torch.equal(got.to(expected.dtype), expected):
            return None
        return (
            f"{int((got.to(expected.dtype) != expected).sum())} of {expected.numel()} values differ"
        )
    difference = (got.float() - expected.float()).abs().nan_to_num(float("inf"))
    if not bool((difference <= atol + rtol * expected.float().abs()).all()):
        return f"max absolute difference {float(difference.max()):.3g}"
    if mean_atol is not None and float(difference.mean()) > mean_atol:
        return f"mean absolute difference {float(difference.mean()):.3g} (over {mean_atol})"
    return None


def predictor_class(task: str) -> type[Predictor]:
    if task not in PREDICTORS:
        raise ArtifactError(f"unknown task {task!r}; this mmembed runs {sorted(PREDICTORS)}")
    module, name = PREDICTORS[task].split(":")
    return getattr(importlib.import_module(module), name)


def from_artifact(artifact: Artifact, **kwargs: Any) -> Predictor:
    """The task's predictor over an already read artifact (``kwargs``: see :class:`Predictor`)."""
    return predictor_class(artifact.manifest.get("task", ""))(artifact, **kwargs)


def load(
    path: str | PathLike,
    runtime: str = "torch",
    device: str | torch.device = "cpu",
    threads: int | None = None,
    self_test: bool = True,
) -> Predictor:
    """Load an ``.mmembed`` artifact written by ``mmembed-export``.

    Returns the task's predictor: ``transcribe(audio)`` (speech), ``caption(images)``
    (captioning), ``classify(videos, labels=None)`` (video) or ``embed(inputs, modality=None)``
    (multimodal embedding: unit vectors of audio, images, videos and texts). ``runtime``:
    ``"torch"``, ``"onnx"``, ``"onnx-int8"`` or ``"aoti"``; ``device``: ``"cpu"`` or
    ``"cuda"``; ``threads``: ONNX Runtime's intra-op threads (None = torch's); ``self_test``:
    check the graphs against the stored samples now. Raises
    :class:`~mmembed.inference.artifact.ArtifactError` naming what is wrong with a corrupt,
    truncated, modified or incompatible file, and :class:`SelfTestError` when the graphs do
    not reproduce their samples.
    """
    return from_artifact(
        read_artifact(path), runtime=runtime, device=device, threads=threads, self_test=self_test
    )
