"""Bad data never poisons a run: every data path, with valid items mixed with every bad kind
(non-finite samples, a header that is fine over contents that are not, garbage, a 16-bit
image, text the tokenizer cannot represent, ...), trains and tests to the end; the metrics count
the valid items only (they equal a run on a copy holding just those); the report names every
bad file.

Evaluation runs one item a batch, so the dirty and the clean run compute each item alike and
their scores match exactly.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from helpers.bad_files import (
    CJK_TEXT,
    DIGIT_TEXT,
    MIXED_TEXT,
    corrupt_flac,
    garbage,
    grey16_png,
    nonfinite_wav,
    truncated_jpeg,
    undecodable_mp4,
    write_jsonl,
)
from helpers.runs import (
    asr_overrides,
    caption_overrides,
    tiny_caption_corpus,
    tiny_speech_corpus,
    tiny_video_corpus,
    video_overrides,
)
from mmembed.data.manifest import read_manifest
from mmembed.data.skips import SkippedItemsWarning
from mmembed.datagen import video as videogen
from mmembed.text.coverage import UnrepresentedTextWarning
from mmembed.train import run

pytestmark = pytest.mark.slow


def dirty_and_clean(corpus: Path, tmp_path: Path) -> tuple[Path, Path]:
    dirty, clean = tmp_path / "dirty", tmp_path / "clean"
    shutil.copytree(corpus, dirty)
    shutil.copytree(corpus, clean)
    return dirty, clean


def run_both(compose_train, overrides, dirty: Path, clean: Path, tmp_path: Path, capsys):
    """Train and test on ``dirty``; test its best checkpoint on ``clean``. Returns the two
    metric dicts, the warnings' text and the final report's text of the dirty run."""
    with pytest.warns(SkippedItemsWarning) as caught:
        metrics = run(compose_train(overrides(dirty), run_dir=tmp_path / "dirty_run"))
    report = capsys.readouterr().out
    best = report.split("best checkpoint: ")[1].split("\n")[0]
    assert Path(best).is_file()
    baseline = run(
        compose_train([*overrides(clean), "train=false", f"ckpt_path={best}"],
                      run_dir=tmp_path / "clean_run")
    )  # fmt: skip
    warned = "\n".join(str(w.message) for w in caught)
    text_warnings = [str(w.message) for w in caught if w.category is UnrepresentedTextWarning]
    return metrics, baseline, warned, text_warnings, report


def assert_same_test_scores(metrics: dict, baseline: dict) -> None:
    scores = {name: value for name, value in metrics.items() if name.startswith("test")}
    assert scores and scores == {name: baseline[name] for name in scores}


def assert_named_everywhere(names, warned: str, report: str) -> None:
    for name in names:
        assert name in warned, f"{name} not in the warnings"
        assert name in report, f"{name} not in the final report"


# --- speech ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def speech_corpus(tmp_path_factory):
    return tiny_speech_corpus(tmp_path_factory.mktemp("corpus") / "speech")


def add_utterances(folder: Path, split: str, items: dict[str, str]) -> None:
    """Append audio files (name -> transcript) to a split's manifest, with the durations their
    headers state (1 s for a file without one)."""
    manifest = folder / f"{split}.jsonl"
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    for audio, text in items.items():
        try:
            info = soundfile.info(str(folder / audio))
            duration = info.frames / info.samplerate
        except soundfile.LibsndfileError:
            duration = 1.0
        records.append({"audio_filepath": audio, "text": text, "duration": duration})
    write_jsonl(manifest, records)


def test_speech_run_with_every_kind_of_bad_audio_and_text(
    compose_train, speech_corpus, tmp_path, capsys
):
    dirty, clean = dirty_and_clean(speech_corpus, tmp_path)
    speech = read_manifest(dirty / "train.jsonl")[0].audio_path  # real speech, 16 kHz
    samples, _ = soundfile.read(str(speech), dtype="float32")
    for folder in (dirty, clean):  # valid items with text the tokenizer cannot fully represent
        shutil.copy(speech, folder / "mixed.wav")
        shutil.copy(speech, folder / "digits.wav")
        add_utterances(folder, "validation", {"mixed.wav": MIXED_TEXT})
        add_utterances(folder, "test", {"digits.wav": DIGIT_TEXT})
    bad = {
        "train": {"nan.wav": "the nan file", "inf.wav": "the inf file",
                  "corrupt.flac": "a corrupt file", "garbage.wav": "no header at all",
                  "cjk.wav": CJK_TEXT},
        "validation": {"corrupt_val.flac": "a corrupt file", "nan_val.wav": "the nan file"},
        "test": {"corrupt_test.flac": "a corrupt file", "inf_test.wav": "the inf file"},
    }  # fmt: skip
    for split, files in bad.items():
        for name in files:
            if "nan" in name or "inf" in name:
                nonfinite_wav(dirty / name, float("nan" if "nan" in name else "inf"),
                              samples=samples)  # fmt: skip
            elif name.endswith(".flac"):
                corrupt_flac(dirty / name, seconds=1.0)
            elif name == "garbage.wav":
                garbage(dirty / name)
            else:
                shutil.copy(speech, dirty / name)
        add_utterances(dirty, split, files)

    def overrides(folder):
        settings = ["data.max_batch_size=1", "trainer.max_epochs=2"]
        return asr_overrides(folder, *settings, "data.extra_test_manifests=null")

    metrics, baseline, warned, text_warnings, report = run_both(
        compose_train, overrides, dirty, clean, tmp_path, capsys
    )
    assert np.isfinite(metrics["train/loss"])
    assert metrics["val/items"] == 4 and metrics["test/items"] == 4  # 3 + the odd-text one
    assert_same_test_scores(metrics, baseline)
    assert_named_everywhere([n for files in bad.values() for n in files], warned, report)
    saved = json.loads((tmp_path / "dirty_run" / "metrics.json").read_text())["data"]
    assert saved["skipped"] == {
        "train": {"non-finite audio": 2, "unreadable audio": 2, "unrepresentable transcript": 1},
        "validation": {"unreadable audio": 1, "non-finite audio": 1},
        "test": {"unreadable audio": 1, "non-finite audio": 1},
    }
    assert saved["unrepresented_text"]["validation"]["dropped"] == {"東": 1, "京": 1}
    assert "7" in saved["unrepresented_text"]["test"]["unknown"]
    assert [m.split(":")[0] for m in text_warnings] == ["validation", "test"]
    assert "text the model cannot represent" in report


# --- captions ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def caption_corpus(tmp_path_factory):
    return tiny_caption_corpus(tmp_path_factory.mktemp("corpus") / "captions")


def add_images(folder: Path, split: str, images: dict[str, str]) -> None:
    """Append images (file name -> caption) to a split's COCO file."""
    path = folder / f"{split}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    for file_name, caption in images.items():
        image_id = 10_000 + len(data["images"])
        data["images"].append({"id": image_id, "file_name": file_name})
        data["annotations"].append({"id": image_id, "image_id": image_id, "caption": caption})
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def test_caption_run_with_every_kind_of_bad_image_and_text(
    compose_train, caption_corpus, tmp_path, capsys
):
    dirty, clean = dirty_and_clean(caption_corpus, tmp_path)
    valid = {"train": {"deep_train.png": "an emoji of a grey ramp",
                       "mixed.png": f"an emoji of {MIXED_TEXT}"},
             "test": {"deep_test.png": f"an emoji of {DIGIT_TEXT}"}}  # fmt: skip
    for folder in (dirty, clean):
        for split, images in valid.items():
            for name in images:
                grey16_png(folder / "images" / name)  # 16-bit: valid, scaled at load
            add_images(folder, split, images)
    bad = {
        "train": {"cut_train.jpg": "an emoji of a cut file", "garbage.png": "an emoji of noise"},
        "validation": {"cut_val.jpg": "an emoji of a cut file", "garbage_val.png": "noise"},
        "test": {"cut_test.jpg": "an emoji of a cut file"},
        "test_unseen": {"cut_unseen.jpg": "an emoji of a cut file"},
    }
    for split, images in bad.items():
        for name in images:
            (garbage if name.startswith("garbage") else truncated_jpeg)(dirty / "images" / name)
        add_images(dirty, split, images)

    def overrides(folder):
        return caption_overrides(folder, "data.eval_batch_size=1", "trainer.max_epochs=2")

    metrics, baseline, warned, _, report = run_both(
        compose_train, overrides, dirty, clean, tmp_path, capsys
    )
    counts = {split: len(json.loads((clean / f"{split}.json").read_text())["images"])
              for split in ("validation", "test", "test_unseen")}  # fmt: skip
    assert metrics["val/items"] == counts["validation"]
    assert metrics["test/items"] == counts["test"]
    assert metrics["test_unseen/items"] == counts["test_unseen"]
    assert_same_test_scores(metrics, baseline)
    assert_named_everywhere([n for images in bad.values() for n in images], warned, report)
    saved = json.loads((tmp_path / "dirty_run" / "metrics.json").read_text())["data"]
    assert saved["skipped"]["train"] == {"unreadable image": 2}  # garbage at indexing, cut later
    assert saved["unrepresented_text"]["train"]["dropped"] == {"東": 1, "京": 1}


def test_a_missing_test_set_fails_before_training_unless_the_override_drops_it(
    compose_train, caption_corpus, tmp_path
):
    partial = tmp_path / "partial"
    shutil.copytree(caption_corpus, partial)
    (partial / "test_unseen.json").unlink()
    base = caption_overrides(partial, "debug=fast_dev_run")
    with pytest.raises(FileNotFoundError, match=r"COCO captions file not found: .*test_unseen"):
        run(compose_train([*base, "logger=csv"]))
    assert not (tmp_path / "run" / "csv").exists()  # found before the first step
    for name, value in (("empty", "{}"), ("null", "null")):
        drop = f"data.extra_test_files={value}"
        metrics = run(compose_train([*base, drop], run_dir=tmp_path / name))
        assert "test/bleu_4" in metrics and not any("unseen" in name for name in metrics)


# --- video -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def video_corpus(tmp_path_factory):
    return tiny_video_corpus(tmp_path_factory.mktemp("video") / "corpus")


def test_video_run_with_every_kind_of_bad_video(compose_train, video_corpus, tmp_path, capsys):
    dirty, clean = dirty_and_clean(video_corpus, tmp_path)
    rng = np.random.default_rng(0)
    frames = videogen.render_video("growing", rng, 8, 32, 0, 0.0)
    short = dirty / "videos" / "short.mp4"
    videogen.write_mp4(short, videogen.render_video("growing", rng, 2, 32, 0, 0.0), fps=8)
    (dirty / "videos" / "empty.mp4").write_bytes(b"")
    garbage(dirty / "videos" / "garbage.mp4")
    bad = {
        "train": ["undecodable_train.mp4", "short.mp4", "empty.mp4", "garbage.mp4"],
        "validation": ["undecodable_val.mp4"],
        "test": ["undecodable_test.mp4"],
    }
    for split, names in bad.items():
        for name in names:
            if name.startswith("undecodable"):
                undecodable_mp4(dirty / "videos" / name, frames)
        with (dirty / f"{split}.csv").open("a") as csv:
            csv.writelines(f"videos/{name},growing\n" for name in names)

    def overrides(folder):
        return video_overrides(folder, "data.eval_batch_size=1", "trainer.max_epochs=2")

    metrics, baseline, warned, _, report = run_both(
        compose_train, overrides, dirty, clean, tmp_path, capsys
    )
    assert metrics["val/items"] == 3 and metrics["test/items"] == 3
    assert_same_test_scores(metrics, baseline)
    assert_named_everywhere([n for names in bad.values() for n in names], warned, report)
    saved = json.loads((tmp_path / "dirty_run" / "metrics.json").read_text())["data"]
    assert saved["skipped"] == {
        "train": {"too short": 1, "empty": 1, "unreadable": 2},
        "validation": {"unreadable": 1},
        "test": {"unreadable": 1},
    }
