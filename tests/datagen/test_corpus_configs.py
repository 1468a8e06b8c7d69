"""The corpus configs: each builds what its data config reads, the defaults match the
generators', and the out-of-domain corpora are what their comments promise."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mmembed.datagen import captions, speech, video
from mmembed.text import train_tokenizer

CONF = Path(__file__).resolve().parents[2] / "conf"
DATA_OPTIONS = sorted(path.stem for path in (CONF / "data").glob("*.yaml"))
# How each generator normalises a spec (what corpus.json stores and ensure compares), and the
# arguments that do not change the corpus.
NORMALIZE = {
    "mmembed.datagen.speech": (speech._normalized_spec, ("jobs",)),
    "mmembed.datagen.captions": (captions._normalized_spec, ()),
    "mmembed.datagen.video": (video._normalized_spec, ("workers",)),
}


def corpus_spec(cfg) -> tuple[str, dict]:
    """The generator module and the normalised spec of a composed ``corpus`` node."""
    corpus = OmegaConf.to_container(cfg.corpus, resolve=True)
    module = corpus.pop("_target_").rsplit(".", 1)[0]
    normalize, ignored = NORMALIZE[module]
    corpus.pop("out_dir")
    return module, normalize(**{k: v for k, v in corpus.items() if k not in ignored})


def test_every_data_option_has_its_corpus():
    assert {path.stem for path in (CONF / "corpus").glob("*.yaml")} == {*DATA_OPTIONS, "none"}


@pytest.mark.parametrize("option", DATA_OPTIONS)
def test_the_corpus_step_builds_what_the_data_module_reads(compose_train, tmp_path, option):
    cfg = compose_train([f"data={option}"])
    assert cfg.corpus.out_dir == cfg.data.data_dir == str(tmp_path / "data/generated" / option)
    module, spec = corpus_spec(cfg)
    # every extra test set the data module reads is one the corpus writes
    if module.endswith("speech"):
        written = {f"{name}.jsonl" for name in spec["extra_tests"]}
        read = set((cfg.data.extra_test_manifests or {}).values())
    elif module.endswith("captions"):
        written = {"test_unseen.json"} | (
            {"test_heldout.json"} if spec["heldout_categories"] else set()
        )
        read = set((cfg.data.extra_test_files or {}).values())
    else:
        written = {"test_ood.csv"} if spec["ood_test_videos_per_class"] else set()
        read = set((cfg.data.extra_test_splits or {}).values())
    assert read <= written, (option, read, written)


@pytest.mark.parametrize(
    ("option", "defaults"),
    [
        ("speech", speech._normalized_spec()),
        ("captions", captions._normalized_spec()),
        ("video", video._normalized_spec()),
    ],
)
def test_default_corpus_configs_are_the_generators_defaults(compose_train, option, defaults):
    # the corpus step and `mmembed-data <corpus>` build the same corpus
    assert corpus_spec(compose_train([f"data={option}"]))[1] == defaults


def test_out_of_domain_corpora(compose_train):
    def spec(option):
        return corpus_spec(compose_train([f"data={option}"]))[1]

    default_speech, new_speech = spec("speech"), spec("speech_newdomain")
    assert set(default_speech["extra_tests"]) == {"test_slow", "test_espeak"}
    slow = default_speech["extra_tests"]["test_slow"]
    assert slow["stretch"][0] > speech.DURATION_STRETCH_RANGE[1]
    assert slow["voices"] == default_speech["voices"]
    espeak_voices = default_speech["extra_tests"]["test_espeak"]["voices"]
    assert all(speech.is_espeak_voice(voice) for voice in espeak_voices)
    assert not any(speech.is_espeak_voice(voice) for voice in default_speech["voices"])
    assert all(speech.is_espeak_voice(voice) for voice in new_speech["voices"])
    assert new_speech["noise_snr"] and new_speech["reverb_rt60"] and not new_speech["extra_tests"]
    assert [new_speech[f"num_{split}"] for split in speech.SPLITS] == [400, 60, 100]
    assert new_speech["seed"] == default_speech["seed"]
    assert new_speech["held_out_sentences"] == (
        default_speech["num_test"] + default_speech["num_validation"]
    )

    heldout, new_captions = spec("captions_heldout"), spec("captions_newdomain")
    assert len(heldout["heldout_categories"]) == 2
    assert new_captions["only_categories"] == heldout["heldout_categories"]
    assert heldout["seed"] == new_captions["seed"]

    default_video, new_video = spec("video"), spec("video_newdomain")
    assert default_video["style"] == "default" and default_video["ood_test_videos_per_class"] > 0
    assert new_video["style"] == "ood" and new_video["videos_per_class"] == 20


@pytest.mark.parametrize(
    ("experiment", "option"),
    [
        ("asr_default", "speech_newdomain"),
        ("caption_default", "captions_heldout"),
        ("caption_default", "captions_newdomain"),
        ("video_default", "video_newdomain"),
    ],
)
def test_a_default_experiment_runs_on_another_corpus_by_one_override(
    compose_train, experiment, option
):
    cfg = compose_train([f"experiment={experiment}", f"data={option}"])
    assert cfg.data.data_dir.endswith(f"generated/{option}")
    assert cfg.corpus.out_dir == cfg.data.data_dir


TINY_OVERRIDES = {
    "speech_newdomain": ["corpus.num_train=2", "corpus.num_validation=1", "corpus.num_test=1"],
    "captions_heldout": ["corpus.max_emoji=6", "data.image_size=16"],
    "captions_newdomain": ["corpus.max_emoji=6", "data.image_size=16"],
    "video_newdomain": ["corpus.videos_per_class=3", "corpus.num_frames=4", "corpus.size=16"]
    + ["data.size=16", "data.frames_per_clip=4", "data.frame_stride=1"],
}


@pytest.mark.parametrize(
    "option",
    # captions_heldout draws all ~420 held-out emoji: several seconds
    [pytest.param(o, marks=pytest.mark.slow) if o == "captions_heldout" else o
     for o in sorted(TINY_OVERRIDES)],
)  # fmt: skip
def test_new_corpus_configs_build_and_their_data_modules_read_them(compose_train, option):
    import hydra

    cfg = compose_train([f"data={option}", "data.num_workers=0", *TINY_OVERRIDES[option]])
    hydra.utils.instantiate(cfg.corpus)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.set_tokenizer(train_tokenizer(datamodule.training_texts(), kind="char"))
    datamodule.setup()
    loaders = datamodule.test_dataloader()
    loaders = loaders if isinstance(loaders, list) else [loaders]
    assert len(loaders) == len(datamodule.test_split_names)
    assert all(len(loader.dataset) > 0 for loader in loaders)
    if option == "captions_heldout":
        assert datamodule.test_split_names == ["test", "test_unseen", "test_heldout"]
        heldout = datamodule.records("test_heldout")
        assert len(heldout) > 400  # every flag and animal, never in the other splits
        trained = {record.path.name for record in datamodule.records("train")}
        assert not trained & {record.path.name for record in heldout}


# The README's `mmembed-data` commands for the new corpora: each builds the corpus of its config.
CLI_COMMANDS = {
    "captions_heldout": ["captions", "--heldout-categories", "Flags", "Animals & Nature"],
    "captions_newdomain": ["captions", "--only-categories", "Flags", "Animals & Nature"],
    "video_newdomain": ["video", "--style", "ood", "--videos-per-class", "20"]
    + ["--split-fractions", "0.35", "0.15", "0.5", "--ood-test-videos-per-class", "0"],
    "speech_newdomain": ["speech", "--num-train", "400", "--num-validation", "60"]
    + ["--num-test", "100", "--voices", *speech.DEFAULT_ESPEAK_VOICES, "--noise-snr", "10", "25"]
    + ["--reverb-rt60", "0.2", "0.6", "--held-out-sentences", "400", "--extra-tests", "{}"],
}


@pytest.mark.parametrize("option", sorted(CLI_COMMANDS))
def test_cli_builds_the_same_corpus_as_the_config(compose_train, monkeypatch, option):
    from mmembed.datagen import cli

    module_name, wanted = corpus_spec(compose_train([f"data={option}"]))
    module = {"speech": speech, "captions": captions, "video": video}[module_name.split(".")[-1]]
    built = {}
    ensure = next(name for name in vars(module) if name.startswith("ensure_"))
    monkeypatch.setattr(module, ensure, lambda out, **spec: built.update(spec) or out)
    args = cli.build_parser().parse_args(CLI_COMMANDS[option])
    args.run(args)
    normalize, ignored = NORMALIZE[module_name]
    assert normalize(**{k: v for k, v in built.items() if k not in ignored}) == wanted
