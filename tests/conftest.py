import os

import torch

# Without a GPU, the Triton kernels run in Triton's CPU interpreter. The variable must be set
# before any @triton.jit function is defined, i.e. before mmembed is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import random  # noqa: E402
import zlib  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mmembed import SharedEmbedding  # noqa: E402

# Every test starts from its own fixed seed, derived from this global seed and the test's id, so
# a test draws the same data whatever ran before it. CI runs the suite under several global
# seeds (MMEMBED_TEST_SEED) to show that no threshold holds by luck.
GLOBAL_SEED = int(os.environ.get("MMEMBED_TEST_SEED", "0"))


def pytest_report_header(config):
    return f"mmembed test seed: MMEMBED_TEST_SEED={GLOBAL_SEED}"


@pytest.fixture(autouse=True)
def seed_everything(request):
    """Seed python, numpy and torch before each test; yields the seed it used."""
    seed = zlib.crc32(f"{GLOBAL_SEED}:{request.node.nodeid}".encode())
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    yield seed


def make_pair(num_embeddings, embedding_dim, out_features, seed=0, **kwargs):
    """A SharedEmbedding and the nn.Embedding + nn.Linear it must match, with equal weights."""
    torch.manual_seed(seed)
    layer = SharedEmbedding(num_embeddings, embedding_dim, out_features=out_features, **kwargs)
    embedding = torch.nn.Embedding(
        num_embeddings,
        embedding_dim,
        padding_idx=kwargs.get("padding_idx"),
        max_norm=kwargs.get("max_norm"),
        scale_grad_by_freq=kwargs.get("scale_grad_by_freq", False),
        dtype=kwargs.get("dtype"),
    )
    linear = None
    with torch.no_grad():
        embedding.weight.copy_(layer.weight)
    if out_features is not None:
        linear = torch.nn.Linear(
            embedding_dim, out_features, bias=kwargs.get("bias", True), dtype=kwargs.get("dtype")
        )
        linear.load_state_dict(layer.projection.state_dict())
    return layer, embedding, linear


def run_torch(embedding, linear, ids):
    rows = embedding(ids)
    return linear(rows) if linear is not None else rows


@pytest.fixture
def pair():
    return make_pair


def compose_train_config(root, overrides=(), run_dir=None):
    """Compose ``conf/train.yaml`` like ``mmembed-train`` does, with every path in ``root``
    (the run folder ``run_dir``, default ``root/run``); pass the cfg to ``mmembed.train.run``."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    run_dir = run_dir or root / "run"
    GlobalHydra.instance().clear()
    with initialize_config_module("mmembed.conf", version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"paths.root_dir={root}", f"paths.output_dir={run_dir}", *overrides],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture
def compose_train(tmp_path):
    """``compose(overrides, run_dir=None) -> cfg``: :func:`compose_train_config` in
    ``tmp_path``."""
    from hydra.core.global_hydra import GlobalHydra

    yield lambda overrides=(), run_dir=None: compose_train_config(tmp_path, overrides, run_dir)
    GlobalHydra.instance().clear()


# --- the multimodal task's tiny corpora -------------------------------------------------------

# A multimodal model small enough for seconds-long CPU runs; the same code paths as the default.
TINY_MULTIMODAL = [
    "corpus=none",
    "tokenizer.vocab_size=90",
    "data.num_workers=0",
    "data.captions.image_size=32",
    "data.captions.batch_size=8",
    "data.video.size=32",
    "data.video.frames_per_clip=4",
    "data.video.batch_size=4",
    "task.width=32",
    "task.embedding.embedding_dim=16",
    "task.speech.encoder.d_model=32",
    "task.speech.encoder.num_layers=1",
    "task.speech.encoder.num_heads=2",
    "task.speech.encoder.ffn_dim=64",
    "task.speech.encoder.n_mels=40",
    "task.speech.encoder.subsampling_channels=8",
    "task.captions.decoder.num_layers=1",
    "task.captions.decoder.num_heads=2",
    "task.captions.decoder.ffn_dim=64",
    "task.captions.encoder.channels=[8,16,32]",
    "task.captions.grid_images=4",
    "task.video.encoder.channels=[8,16,32]",
    "task.text_encoder.num_heads=2",
    "task.text_encoder.ffn_dim=64",
]


def multimodal_overrides(corpora, *extra, experiment="multimodal_scratch"):
    """``mmembed-train`` overrides of ``experiment`` (a multimodal one) on the tiny corpora."""
    return [
        f"experiment={experiment}",
        *(f"data.{part}.data_dir={corpora[part]}" for part in ("speech", "captions", "video")),
        f"data.spoken.data_dir={corpora['spoken']}",
        *TINY_MULTIMODAL,
        *extra,
    ]


@pytest.fixture(scope="session")
def multimodal_corpora(tmp_path_factory):
    """Tiny speech, caption, video and spoken-caption corpora: part -> folder."""
    from mmembed.datagen.captions import build_caption_corpus
    from mmembed.datagen.speech import build_speech_corpus
    from mmembed.datagen.spoken_captions import build_spoken_caption_corpus
    from mmembed.datagen.video import build_video_corpus

    root = tmp_path_factory.mktemp("multimodal")
    # with the out-of-domain test sets of the default corpora (test_slow, test_espeak,
    # test_unseen, test_ood), which the data configs read
    speech = build_speech_corpus(root / "speech", num_train=6, num_validation=3, num_test=3,
                                 voices=("slt", "rms"), jobs=2)  # fmt: skip
    captions = build_caption_corpus(root / "captions", max_emoji=12, image_size=32,
                                    eval_fractions=(0.25, 0.25))  # fmt: skip
    video = build_video_corpus(root / "video", videos_per_class=6, num_frames=8, size=32,
                               classes=["moving left", "growing", "standing still"],
                               ood_test_videos_per_class=1)  # fmt: skip
    spoken = build_spoken_caption_corpus(
        root / "spoken", captions_dir=captions, video_dir=video, voices=("slt", "rms"),
        label_readings=1, jobs=2,
    )  # fmt: skip
    return {"speech": speech, "captions": captions, "video": video, "spoken": spoken}
