"""Settings for seconds-long runs of the training app on CPU: each task's default experiment
with a tiny model (same code paths), on a tiny corpus, without the corpus step."""

# Speech recognition (experiment=asr_default).
TINY_ASR = [
    "task.width=32",
    "task.encoder.d_model=32",
    "task.encoder.num_layers=1",
    "task.encoder.num_heads=2",
    "task.encoder.ffn_dim=64",
    "task.encoder.n_mels=40",
    "task.encoder.subsampling_channels=8",
    "task.embedding.embedding_dim=16",
    "data.num_workers=0",
    "corpus=none",
]

# Image captioning (experiment=caption_default).
TINY_CAPTIONER = [
    "task.width=32",
    "task.encoder.channels=[8,16]",
    "task.embedding.embedding_dim=16",
    "task.decoder.num_layers=1",
    "task.decoder.num_heads=2",
    "task.decoder.ffn_dim=64",
    "task.decoding.max_length=6",
    "task.decoding.beam_size=2",
    "task.grid_images=4",
    "tokenizer.vocab_size=120",
    "data.image_size=32",
    "data.batch_size=8",
    "data.num_workers=0",
    "corpus=none",
]

# Video classification (experiment=video_default).
TINY_VIDEO = [
    "task.width=32",
    "task.embedding.embedding_dim=16",
    "task.encoder.channels=[8,16]",
    "data.size=32",
    "data.frames_per_clip=4",
    "data.frame_stride=2",
    "data.batch_size=4",
    "data.eval_batch_size=4",
    "data.num_workers=0",
    "corpus=none",
]


def asr_overrides(corpus, *extra):
    return ["experiment=asr_default", f"data.data_dir={corpus}", *TINY_ASR, *extra]


def caption_overrides(corpus, *extra):
    return ["experiment=caption_default", f"data.data_dir={corpus}", *TINY_CAPTIONER, *extra]


def video_overrides(corpus, *extra):
    return ["experiment=video_default", f"data.data_dir={corpus}", *TINY_VIDEO, *extra]


# Tiny corpora of the embedded generators (seconds to build), for module-scoped fixtures.
VIDEO_CLASSES = ["moving left", "moving right", "growing"]


def tiny_speech_corpus(folder):
    """6 / 3 / 3 utterances in two flite voices."""
    from mmembed.datagen.speech import build_speech_corpus

    return build_speech_corpus(
        folder, num_train=6, num_validation=3, num_test=3, voices=("slt", "rms"), jobs=1
    )


def tiny_caption_corpus(folder):
    """16 emoji rendered at 32 px, with seen and unseen test sets."""
    from mmembed.datagen.captions import build_caption_corpus

    return build_caption_corpus(folder, seed=5, image_size=32, max_emoji=16)


def tiny_video_corpus(folder, classes=VIDEO_CLASSES):
    """4 videos of 8 frames (32 px) per class, split 2 / 1 / 1."""
    from mmembed.datagen.video import build_video_corpus

    return build_video_corpus(
        folder, classes=classes, videos_per_class=4, num_frames=8, size=32,
        split_fractions=(0.5, 0.25, 0.25),
    )  # fmt: skip
