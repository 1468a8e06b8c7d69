"""mmembed-export and mmembed-predict: command lines, error reporting, and a serving process
that never imports the training stack."""

import dataclasses
import json
from types import SimpleNamespace

import pytest

from inference.runs import run_serving_python
from mmembed.inference.cli import export_main, predict_main
from mmembed.inference.export.rebuild import ExportError, apply_tuned_decoding
from mmembed.inference.inputs import AUDIO_EXTENSIONS, expand_inputs
from mmembed.models.decoding import SpeechDecoding


def test_loading_and_predicting_never_import_lightning_or_hydra():
    # Every module of the predicting side, and the lazy mmembed.load, in a process in which the
    # training stack cannot even be imported.
    modules = run_serving_python(
        """
import sys, mmembed
import mmembed.inference, mmembed.inference.cli
import mmembed.inference.speech, mmembed.inference.captioning, mmembed.inference.video
import mmembed.inference.embedding, mmembed.embed
assert mmembed.load is mmembed.inference.load
result = sorted(m for m in sys.modules if m.startswith("mmembed.inference"))
"""
    )
    assert "mmembed.inference.predictor" in modules
    assert not any(m.startswith("mmembed.inference.export") for m in modules)


def test_export_errors_name_the_problem(tmp_path, capsys):
    assert export_main([str(tmp_path / "absent")]) == 1
    assert "absent: no such run folder or checkpoint" in capsys.readouterr().err
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    assert export_main([str(run_dir)]) == 1
    assert "no checkpoints/*.ckpt" in capsys.readouterr().err
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"truncated")
    assert export_main([str(run_dir)]) == 1
    assert "last.ckpt: not a readable PyTorch checkpoint" in capsys.readouterr().err
    assert export_main([str(run_dir / "checkpoints" / "last.ckpt")]) == 1
    assert "the run's config" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_main([str(run_dir), "--runtime", "torch,tensorrt"])
    assert "runtimes must be some of torch, onnx, onnx-int8, aoti" in capsys.readouterr().err


def test_predict_refuses_a_model_it_cannot_load(tmp_path, capsys):
    model = tmp_path / "model.mmembed"
    model.write_bytes(b"PK\x03\x04 truncated")
    assert predict_main([str(model), "a.wav"]) == 2
    assert "model.mmembed: not a readable mmembed artifact" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict_main([str(model), "a.wav", "--batch-size", "0"])


def test_inputs_expand_folders_and_globs_and_keep_what_names_nothing(tmp_path):
    (tmp_path / "clips" / "more").mkdir(parents=True)
    for name in ("b.wav", "a.FLAC", "notes.txt", "more/c.ogg"):
        (tmp_path / "clips" / name).write_bytes(b"")
    (tmp_path / "empty").mkdir()
    specs = [
        str(tmp_path / "clips"),
        str(tmp_path / "clips" / "*.wav"),
        str(tmp_path / "nothing*.wav"),
        str(tmp_path / "empty"),
        "missing.wav",
    ]
    assert expand_inputs(specs, AUDIO_EXTENSIONS) == [
        str(tmp_path / "clips" / "a.FLAC"),
        str(tmp_path / "clips" / "b.wav"),
        str(tmp_path / "clips" / "more" / "c.ogg"),
        str(tmp_path / "clips" / "b.wav"),
        str(tmp_path / "nothing*.wav"),
        str(tmp_path / "empty"),
        "missing.wav",
    ]


def test_tuned_decoding_applies_only_to_the_decoder_it_was_tuned_for(tmp_path):
    options = SpeechDecoding(method="ctc_beam", lexicon="lexicon.txt", lm="lm.arpa")
    record = tmp_path / "decoding.json"
    tuned = {**dataclasses.asdict(options), "lm_weight": 0.5, "word_score": -1.0}
    record.write_text(json.dumps({"chosen": {}, "decoding": tuned, "grid": []}))
    task = SimpleNamespace(decoding=options)
    apply_tuned_decoding(task, record)
    assert task.decoding == dataclasses.replace(options, lm_weight=0.5, word_score=-1.0)
    # tuned with another LM: the exported decoder keeps its own weights
    other = SimpleNamespace(decoding=dataclasses.replace(options, lm="other.arpa"))
    apply_tuned_decoding(other, record)
    assert other.decoding.lm_weight == options.lm_weight
    apply_tuned_decoding(task, tmp_path / "absent.json")  # no record: nothing to apply
    record.write_text("{not json")
    with pytest.raises(ExportError, match="decoding.json: not a decoding record"):
        apply_tuned_decoding(task, record)
