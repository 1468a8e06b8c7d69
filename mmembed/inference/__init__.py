"""Exported-model inference: one self-checking ``.mmembed`` file per trained model.

    mmembed-export logs/asr_default/runs/<run> --out asr.mmembed
    mmembed-predict asr.mmembed clips/*.wav --output transcripts.jsonl

    predictor = mmembed.load("asr.mmembed", runtime="onnx")
    predictor.transcribe(["a.wav", "b.flac"])

    mmembed.load("multimodal.mmembed").embed(["a.wav", "b.png", "c.mp4"])  # (3, width)

Modules: :mod:`.artifact` (the file format: write, read, verify), :mod:`.runtimes` (the torch,
ONNX Runtime and AOTInductor graph runners, and what makes loading safe), :mod:`.predictor`
(:func:`load`, the self-test), :mod:`.speech`, :mod:`.captioning`, :mod:`.video`,
:mod:`.embedding` (the tasks' predictors), :mod:`.export` (the export side, which needs the
training stack), :mod:`.cli`.
Nothing on the loading and predicting side imports Lightning or Hydra.
"""

from mmembed.inference.artifact import ArtifactError
from mmembed.inference.inputs import InputError
from mmembed.inference.predictor import Predictor, SelfTestError, load

__all__ = ["ArtifactError", "InputError", "Predictor", "SelfTestError", "load"]
