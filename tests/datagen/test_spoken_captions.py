"""The spoken-caption corpus: captions and class names read by flite, paired with their images
and videos."""

import json

import pytest
import soundfile as sf

from mmembed.data.coco import load_coco_captions
from mmembed.data.manifest import read_manifest
from mmembed.data.video_annotations import read_class_list
from mmembed.datagen import cli, spoken_captions
from mmembed.datagen.corpus_folder import read_corpus_info


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_image_and_class_is_read_and_paired(multimodal_corpora):
    captions, video, spoken = (multimodal_corpora[p] for p in ("captions", "video", "spoken"))
    classes = read_class_list(video / "classes.txt")
    for split in ("train", "validation", "test"):
        images = load_coco_captions(captions / f"{split}.json", captions / "images")
        by_id = {image.image_id: image for image in images}
        entries = lines(spoken / f"{split}.jsonl")
        read = [e for e in entries if "image_id" in e]
        for entry, parsed in zip(entries, read_manifest(spoken / f"{split}.jsonl"), strict=True):
            info = sf.info(str(parsed.audio_path))  # the audio exists, as long as it says
            assert abs(info.frames / info.samplerate - entry["duration"]) < 0.01
        for entry in read:
            image = by_id[entry["image_id"]]
            assert (captions / "images" / entry["image_file"]) == image.path
            assert entry["text"] in image.references
        if split == "train":
            # one reading per distinct set of captions; renderings of an emoji share it
            assert len(read) == len({image.references for image in images}) < len(images)
            assert sorted(e["label"] for e in entries if "label" in e) == sorted(classes)
        else:
            # every evaluation image, by its first (most specific) caption
            assert [e["text"] for e in read] == [image.references[0] for image in images]
            labels = lines(spoken / f"labels_{split}.jsonl")
            assert sorted(e["label"] for e in labels) == sorted(classes)
            assert all(e["text"] == e["label"] for e in labels)
    counts = read_corpus_info(spoken, "mmembed.datagen.spoken_captions")["counts"]
    assert counts["labels_test"]["labels"] == len(classes)


def test_same_spec_same_corpus_and_a_changed_source_rebuilds(multimodal_corpora, tmp_path,
                                                             monkeypatch):
    captions, video, spoken = (multimodal_corpora[p] for p in ("captions", "video", "spoken"))
    spec = dict(captions_dir=captions, video_dir=video, voices=("slt", "rms"), label_readings=1)
    again = spoken_captions.build_spoken_caption_corpus(tmp_path / "again", jobs=1, **spec)
    for name in ("train.jsonl", "test.jsonl", "labels_test.jsonl"):
        assert (again / name).read_text() == (spoken / name).read_text()
    first = lines(spoken / "test.jsonl")[0]["audio_filepath"]
    assert (again / first).read_bytes() == (spoken / first).read_bytes()

    def fail_build(*args, **kwargs):
        raise AssertionError("rebuilt a corpus that was already there")

    with monkeypatch.context() as patch:
        patch.setattr(spoken_captions, "build_spoken_caption_corpus", fail_build)
        assert spoken_captions.ensure_spoken_caption_corpus(again, **spec) == again
        # new readings of the class names are a new spec
        with pytest.raises(AssertionError, match="rebuilt"):
            spoken_captions.ensure_spoken_caption_corpus(again, **{**spec, "label_readings": 2})


def test_cli_builds_it_from_the_other_corpora(multimodal_corpora, tmp_path, capsys):
    out = tmp_path / "cli"
    sources = ["--captions", str(multimodal_corpora["captions"]),
               "--video", str(multimodal_corpora["video"])]  # fmt: skip
    cli.main(["spoken_captions", "--out", str(out), *sources, "--voices", "slt",
              "--label-readings", "1"])  # fmt: skip
    printed = capsys.readouterr().out
    assert "spoken_captions corpus" in printed and "labels_test: 3 labels" in printed
    assert read_corpus_info(out, "mmembed.datagen.spoken_captions")["spec"]["voices"] == ["slt"]
