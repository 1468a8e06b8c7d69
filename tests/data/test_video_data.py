"""Video data: the generated corpus, decoding, clip sampling, both layouts, errors, batches."""

import shutil
import warnings

import numpy as np
import pytest
import torch

from helpers.bad_files import latin1_text, undecodable_mp4
from mmembed.data.skips import SkippedItem
from mmembed.data.video import (
    VideoClassificationDataset,
    VideoDataModule,
    VideoRecord,
    VideoSkipWarning,
    collate_videos,
    index_videos,
)
from mmembed.data.video_annotations import (
    VideoAnnotationError,
    read_video_csv,
    scan_class_folders,
)
from mmembed.data.video_clips import ClipSampling
from mmembed.data.video_io import VideoReadError, decode_frames, probe_video
from mmembed.datagen import video as videogen

CLASSES = ["moving right", "moving up", "standing still"]
# No pixel noise or distractors, so the only thing that changes between frames is the target.
TINY = dict(
    classes=CLASSES,
    videos_per_class=3,
    num_frames=8,
    size=32,
    max_distractors=0,
    noise_std=0.0,
    ood_test_videos_per_class=1,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return videogen.build_video_corpus(tmp_path_factory.mktemp("video") / "corpus", **TINY)


def videos_of(corpus, class_name):
    return sorted((corpus / "videos" / videogen.class_folder(class_name)).glob("*.mp4"))


def write_csv(path, rows):
    path.write_text("\n".join(["path,label", *rows]) + "\n")
    return path


# --- generated corpus ------------------------------------------------------------------------


def test_corpus_layout(corpus):
    assert (corpus / "classes.txt").read_text().splitlines() == CLASSES
    info = videogen.read_corpus_info(corpus)
    splits = ("train", "validation", "test", "test_ood")
    assert info["counts"] == {split: {"videos": 3} for split in splits}
    for split in splits:
        entries = read_video_csv(corpus / f"{split}.csv")
        assert sorted(e.label for e in entries) == sorted(CLASSES)  # one video per class each
        folder = "videos_test_ood" if split == "test_ood" else "videos"
        assert all(e.path.is_relative_to(corpus / folder) and e.path.is_file() for e in entries)
    assert len(list(corpus.glob("videos/*/*.mp4"))) == 9
    assert not list(corpus.parent.glob(f".{corpus.name}.*"))  # no staging folder left


def test_generation_is_deterministic(tmp_path):
    spec = dict(classes=["bouncing"], videos_per_class=2, num_frames=4, size=16)
    first = videogen.build_video_corpus(tmp_path / "a", **spec)
    second = videogen.build_video_corpus(tmp_path / "b", workers=2, **spec)
    other_seed = videogen.build_video_corpus(tmp_path / "c", seed=1, **spec)
    more_classes = videogen.build_video_corpus(
        tmp_path / "d", **{**spec, "classes": ["growing", "bouncing"]}
    )
    for path in sorted(first.rglob("*.mp4")):
        relative = path.relative_to(first)
        assert path.read_bytes() == (second / relative).read_bytes()
        assert path.read_bytes() == (more_classes / relative).read_bytes()
        assert path.read_bytes() != (other_seed / relative).read_bytes()
    assert (first / "train.csv").read_text() == (second / "train.csv").read_text()


def test_ensure_reuses_rebuilds_and_protects(tmp_path):
    spec = dict(classes=["growing"], videos_per_class=1, num_frames=4, size=16)
    out = videogen.ensure_video_corpus(tmp_path / "corpus", **spec)
    stamp = (out / "corpus.json").stat().st_mtime_ns
    videogen.ensure_video_corpus(out, **spec)
    assert (out / "corpus.json").stat().st_mtime_ns == stamp
    videogen.ensure_video_corpus(out, **{**spec, "num_frames": 6})
    assert videogen.read_corpus_info(out)["spec"]["num_frames"] == 6
    assert probe_video(next(out.rglob("*.mp4"))).num_frames == 6

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a corpus")
    with pytest.raises(FileExistsError, match="refusing"):
        videogen.ensure_video_corpus(foreign, **spec)
    assert (foreign / "notes.txt").exists()


def test_cli_builds_the_corpus_and_reports_its_counts(tmp_path, capsys):
    from mmembed.datagen import cli

    out = tmp_path / "cli"
    cli.main(["video", "--out", str(out), "--videos-per-class", "3", "--num-frames", "2"]
             + ["--size", "16", "--ood-test-videos-per-class", "1"])  # fmt: skip
    assert len(list(out.glob("videos/*/*.mp4"))) == 3 * len(videogen.CLASS_NAMES)
    assert len(list(out.glob("videos_test_ood/*/*.mp4"))) == len(videogen.CLASS_NAMES)
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed
    for split in ("train", "validation", "test", "test_ood"):
        assert f"{split}: {len(videogen.CLASS_NAMES)} videos" in printed
    cli.main(["video", "--out", str(out / "ood"), "--videos-per-class", "3", "--num-frames", "2"]
             + ["--size", "16", "--style", "ood", "--ood-test-videos-per-class", "0"])  # fmt: skip
    info = videogen.read_corpus_info(out / "ood")
    assert info["spec"]["style"] == "ood" and "test_ood" not in info["counts"]
    assert not (out / "ood" / "test_ood.csv").exists()
    assert videogen.__doc__.strip().count("\n") == 0


def test_ood_test_leaves_the_other_splits_unchanged(tmp_path):
    spec = dict(classes=["bouncing", "growing"], videos_per_class=2, num_frames=4, size=16)
    plain = videogen.build_video_corpus(tmp_path / "a", **spec, ood_test_videos_per_class=0)
    with_ood = videogen.build_video_corpus(tmp_path / "b", **spec, ood_test_videos_per_class=2)
    files = sorted(p.relative_to(plain) for p in plain.rglob("*") if p.is_file())
    assert len(files) == 4 + 3 + 2  # videos, three CSVs, classes.txt, corpus.json
    for name in files:
        if name.name != "corpus.json":
            assert (plain / name).read_bytes() == (with_ood / name).read_bytes(), name
    assert len(read_video_csv(with_ood / "test_ood.csv")) == 4
    # A corpus rendered in the OOD style has its own videos: none is a test_ood video.
    ood_corpus = videogen.build_video_corpus(tmp_path / "c", **spec, style="ood")
    test_ood = {p.read_bytes() for p in with_ood.glob("videos_test_ood/*/*.mp4")}
    assert test_ood and not test_ood & {p.read_bytes() for p in ood_corpus.glob("videos/*/*.mp4")}
    with pytest.raises(ValueError, match="unknown video style 'fancy'"):
        videogen.build_video_corpus(tmp_path / "d", **spec, style="fancy")


def _texture(frame: np.ndarray) -> tuple[int, float]:
    """Distinct colours, and the share of sharp horizontal steps (summed over channels)."""
    colours = len(np.unique(frame.reshape(-1, 3), axis=0))
    steps = np.abs(np.diff(frame.astype(int), axis=1)).sum(axis=-1)
    return colours, float((steps > 40).mean())


def test_ood_style_has_other_textures_shapes_and_sizes():
    base = int(np.random.randint(1 << 30))  # varies with MMEMBED_TEST_SEED
    for index in range(20):
        class_name = videogen.CLASS_NAMES[index % len(videogen.CLASS_NAMES)]
        textures = {
            style: _texture(
                videogen.render_video(
                    class_name, np.random.default_rng([base, index]), 2, 64, 0, 0.0, style
                )[0]
            )
            for style in videogen.STYLES
        }
        # default: smooth colour noise; ood: two-colour checkerboards with sharp edges
        assert textures["default"][0] > 800 and textures["ood"][0] < 200, textures
        assert textures["default"][1] < 0.06 and textures["ood"][1] > 0.09, textures

    def tracks(class_name, style):
        return [
            videogen._target_track(
                class_name, np.random.default_rng([base, i]), 8, 64, videogen.STYLES[style]
            )
            for i in range(30)
        ]

    for class_name in videogen.CLASS_NAMES:
        default, ood = tracks(class_name, "default"), tracks(class_name, "ood")
        assert {t.shape for t in default} <= set(videogen.SHAPES)
        assert {t.shape for t in ood} <= set(videogen.OOD_SHAPES)
        assert not set(videogen.SHAPES) & set(videogen.OOD_SHAPES)
        # every size an OOD target takes (at its start and end) lies outside the default range
        for frame in (0, -1):
            seen = [t.radius[frame] for t in default]
            assert all(not min(seen) <= t.radius[frame] <= max(seen) for t in ood), class_name
    distractors = {
        style: [
            videogen._distractor_track(np.random.default_rng([base, i]), 4, 64, look).radius[0]
            for i in range(30)
        ]
        for style, look in videogen.STYLES.items()
    }
    assert max(distractors["ood"]) < min(distractors["default"])


# --- decoding --------------------------------------------------------------------------------


def changed_pixel_centroids(frames: torch.Tensor) -> np.ndarray:
    """(x, y) centroid of the pixels that change between consecutive frames."""
    signal = frames.float().sum(dim=1)  # (T, H, W)
    centroids = []
    for change in (signal[1:] - signal[:-1]).abs():
        ys, xs = torch.nonzero(change > 60, as_tuple=True)
        centroids.append((xs.float().mean().item(), ys.float().mean().item()))
    return np.array(centroids)


def test_decoded_video_shape_and_motion(corpus):
    for path in videos_of(corpus, "moving right"):
        info = probe_video(path)
        assert (info.num_frames, info.fps) == (8, 8.0)
        frames = decode_frames(path, range(8))
        assert frames.shape == (8, 3, 32, 32) and frames.dtype == torch.uint8
        centroids = changed_pixel_centroids(frames)
        assert centroids[-2:, 0].mean() - centroids[:2, 0].mean() > 4  # travels >= 30% of 32 px
        assert abs(centroids[-2:, 1].mean() - centroids[:2, 1].mean()) < 2
    for path in videos_of(corpus, "moving up"):
        centroids = changed_pixel_centroids(decode_frames(path, range(8)))
        assert centroids[:2, 1].mean() - centroids[-2:, 1].mean() > 4  # image y points down
    for path in videos_of(corpus, "standing still"):
        frames = decode_frames(path, range(8)).float()
        assert (frames[1:] - frames[:-1]).abs().amax() < 30  # only compression noise


def test_decode_selected_frames_in_order(corpus):
    path = videos_of(corpus, "moving right")[0]
    everything = decode_frames(path, range(8))
    assert torch.equal(decode_frames(path, [6, 2, 2]), everything[[6, 2, 2]])


# --- clip sampling ---------------------------------------------------------------------------


def test_training_clips_are_random_and_within_bounds():
    sampling = ClipSampling(frames_per_clip=4, frame_stride=2)
    assert sampling.span(fps=8) == 7
    generator = torch.Generator().manual_seed(0)
    starts = {sampling.random_start(10, 8, generator) for _ in range(200)}
    assert starts == {0, 1, 2, 3}
    assert sampling.indices(3, 10, 8) == [3, 5, 7, 9]


def test_eval_clips_are_uniform_and_cover_the_video():
    sampling = ClipSampling(frames_per_clip=8)
    starts = sampling.uniform_starts(num_frames=20, fps=8, num_clips=3)
    assert starts == [0, 6, 12]
    covered = {i for s in starts for i in sampling.indices(s, 20, 8)}
    assert covered == set(range(20))
    assert sampling.uniform_starts(20, 8, num_clips=1) == [6]  # one clip: the middle


def test_target_fps_and_short_videos():
    by_time = ClipSampling(frames_per_clip=4, target_fps=10)
    assert by_time.indices(0, 100, fps=30) == [0, 3, 6, 9]
    assert by_time.indices(0, 100, fps=25) == [0, 2, 5, 7]  # every 2.5 frames, floored
    assert ClipSampling(frames_per_clip=4, loop_short_videos=True).indices(0, 3, 8) == [0, 1, 2, 0]
    assert ClipSampling(frames_per_clip=4, loop_short_videos=True).min_frames(8) == 1
    with pytest.raises(ValueError, match="does not fit"):
        ClipSampling(frames_per_clip=4).indices(0, 3, 8)


# --- layouts and errors ----------------------------------------------------------------------


def test_folder_layout_reads_class_names_from_folders(corpus, tmp_path):
    for class_name in CLASSES:
        folder = tmp_path / "train" / videogen.class_folder(class_name)
        folder.mkdir(parents=True)
        for video in videos_of(corpus, class_name):
            shutil.copy(video, folder / video.name)
        (folder / "README.txt").write_text("not a video")
    data = VideoDataModule(tmp_path, layout="folders", frames_per_clip=4)
    assert data.class_names == sorted(CLASSES)
    entries = scan_class_folders(tmp_path / "train")
    assert len(entries) == 9 and all(e.path.suffix == ".mp4" for e in entries)
    dataset = data.dataset("train")
    assert [data.class_names[v.label] for v in dataset.videos] == [e.label for e in entries]


def test_csv_with_absolute_paths_and_extra_columns(corpus, tmp_path):
    video = videos_of(corpus, "moving up")[0]
    csv = tmp_path / "list.csv"
    csv.write_text(f"id,label,path\n7,moving up,{video}\n")
    (entry,) = read_video_csv(csv)
    assert (entry.path, entry.label) == (video, "moving up")


@pytest.mark.parametrize(
    "rows, error, message",
    [
        (["videos/moving_up/0000.mp4"], VideoAnnotationError, r"list\.csv:3: expected 2 columns"),
        (["videos/moving_up/0000.mp4,"], VideoAnnotationError, r"list\.csv:3: empty"),
        (["videos/moving_up/0099.mp4,moving up"], FileNotFoundError, r"list\.csv:3: video not"),
    ],
)
def test_bad_csv_lines_name_file_and_line(corpus, rows, error, message):
    csv = write_csv(corpus / "list.csv", ["videos/moving_up/0001.mp4,moving up", *rows])
    try:
        with pytest.raises(error, match=message):
            read_video_csv(csv)
    finally:
        csv.unlink()


def test_csv_header_and_unknown_label(corpus, tmp_path):
    bad_header = tmp_path / "bad.csv"
    bad_header.write_text("file,class\nx.mp4,moving up\n")
    with pytest.raises(VideoAnnotationError, match=r"bad\.csv:1: header must name"):
        read_video_csv(bad_header)
    csv = write_csv(corpus / "unknown.csv", ["videos/moving_up/0000.mp4,dancing"])
    try:
        with pytest.raises(VideoAnnotationError, match=r"unknown\.csv:2: unknown label 'dancing'"):
            index_videos(read_video_csv(csv), CLASSES, ClipSampling(4), csv)
    finally:
        csv.unlink()


@pytest.fixture
def bad_videos(corpus, tmp_path):
    """A CSV with one good video and four unusable ones."""
    good = videos_of(corpus, "moving up")[0]
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(2000))
    (tmp_path / "truncated.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    short = videogen.render_video("moving up", np.random.default_rng(0), 2, 32, 0, 0.0)
    videogen.write_mp4(tmp_path / "short.mp4", short, fps=8)
    shutil.copy(good, tmp_path / "good.mp4")
    names = ["good", "empty", "garbage", "truncated", "short"]
    return write_csv(tmp_path / "list.csv", [f"{name}.mp4,moving up" for name in names])


def test_unusable_videos_are_skipped_with_a_counted_warning(bad_videos):
    entries = read_video_csv(bad_videos)
    with pytest.warns(VideoSkipWarning) as caught:
        kept = index_videos(entries, CLASSES, ClipSampling(frames_per_clip=4), bad_videos)
    assert [v.path.name for v in kept] == ["good.mp4"]
    (warning,) = caught
    message = str(warning.message)
    assert "skipped 4 of 5 videos" in message
    for name in ["empty.mp4", "garbage.mp4", "truncated.mp4", "short.mp4"]:
        assert name in message
    assert "'empty': 1, 'unreadable': 2, 'too short': 1" in message
    assert "list.csv:3: " in message and "empty.mp4: empty (no frames)" in message
    assert "list.csv:6: " in message and "too short (2 frames, a clip needs 4)" in message


def test_strict_raises_on_the_first_unusable_video(bad_videos):
    with pytest.raises(VideoReadError, match=r"list\.csv:3: .*empty\.mp4"):
        index_videos(read_video_csv(bad_videos), CLASSES, ClipSampling(4), bad_videos, strict=True)


def test_looping_keeps_short_videos(bad_videos):
    sampling = ClipSampling(frames_per_clip=4, loop_short_videos=True)
    with pytest.warns(VideoSkipWarning, match="skipped 3 of 5"):
        kept = index_videos(read_video_csv(bad_videos), CLASSES, sampling, bad_videos)
    assert sorted(v.path.name for v in kept) == ["good.mp4", "short.mp4"]
    dataset = VideoClassificationDataset(kept, sampling, train=False, num_eval_clips=2)
    assert dataset[1].clip.shape == (2, 3, 4, 32, 32)


def test_decode_failure_at_load_time_is_a_skip_never_a_substitute(corpus, tmp_path):
    frames = videogen.render_video("moving up", np.random.default_rng(0), 8, 32, 0, 0.0)
    broken = undecodable_mp4(tmp_path / "broken.mp4", frames)
    assert probe_video(broken).num_frames == 8  # the header is fine
    good = videos_of(corpus, "moving up")[0]
    videos = [VideoRecord(broken, 0, 8, 8.0, "list.csv:2: broken.mp4"),
              VideoRecord(good, 1, 8, 8.0)]  # fmt: skip
    for train in (True, False):
        dataset = VideoClassificationDataset(videos, ClipSampling(4), train=train)
        failed = dataset[0]
        assert isinstance(failed, SkippedItem) and failed.kind == "unreadable"
        assert failed.where == "list.csv:2: broken.mp4" and "cannot decode" in failed.reason
        batch = collate_videos([dataset[0], dataset[1]])
        assert batch["labels"].tolist() == [1] and batch["video_indices"].tolist() == [1]
        assert batch["paths"] == [str(good)] and batch["skipped"] == [failed]
    with pytest.raises(VideoReadError, match=r"list\.csv:2: broken\.mp4: cannot decode"):
        VideoClassificationDataset(videos, ClipSampling(4), strict=True)[0]


# --- dataset and datamodule ------------------------------------------------------------------


def test_eval_item_holds_the_uniform_clips(corpus):
    path = videos_of(corpus, "moving right")[0]
    dataset = VideoClassificationDataset(
        [VideoRecord(path, 0, 8, 8.0)], ClipSampling(4), train=False, num_eval_clips=3
    )
    clips, label, index, item_path = dataset[0]  # no transform: uint8 (K, C, T, H, W)
    assert clips.shape == (3, 3, 4, 32, 32) and (label, index, item_path) == (0, 0, str(path))
    frames = decode_frames(path, range(8))
    for clip, start in zip(clips, [0, 2, 4], strict=True):
        assert torch.equal(clip, frames[start : start + 4].movedim(0, 1))


def test_datamodule_batches(corpus):
    data = VideoDataModule(
        corpus, frames_per_clip=4, frame_stride=2, num_eval_clips=2, size=24, batch_size=2
    )
    assert data.class_names == CLASSES and data.training_texts() == CLASSES
    data.set_tokenizer(tokenizer := object())
    assert data.tokenizer is tokenizer
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    clips, labels, indices = batch["clips"], batch["labels"], batch["video_indices"]
    assert clips.shape == (2, 3, 4, 24, 24) and clips.dtype == torch.float32
    assert labels.dtype == torch.long and indices.shape == (2,)
    assert -3 < clips.mean() < 3 and clips.std() > 0.1  # normalised
    assert len(batch["paths"]) == 2 and batch["skipped"] == []
    batches = list(data.val_dataloader())
    assert batches[0]["clips"].shape == (2, 2, 3, 4, 24, 24)
    assert torch.cat([b["video_indices"] for b in batches]).tolist() == [0, 1, 2]
    assert sorted(torch.cat([b["labels"] for b in batches]).tolist()) == [0, 1, 2]


def test_datamodule_scores_extra_test_splits(corpus):
    data = VideoDataModule(
        corpus, frames_per_clip=4, size=24, extra_test_splits={"test_ood": "test_ood.csv"}
    )
    assert data.test_split_names == ["test", "test_ood"]
    data.setup("test")
    test, test_ood = data.test_dataloader()
    assert len(test.dataset) == len(test_ood.dataset) == len(CLASSES)
    ood_paths = {video.path for video in test_ood.dataset.videos}
    assert all(path.is_relative_to(corpus / "videos_test_ood") for path in ood_paths)
    with pytest.raises(ValueError, match="extra_test_splits may not reuse the split names"):
        VideoDataModule(corpus, extra_test_splits={"validation": "test_ood.csv"})


def test_corpus_step_builds_once_then_the_datamodule_reads_it(tmp_path, monkeypatch):
    spec = dict(classes=CLASSES[:2], videos_per_class=3, num_frames=4, size=16)
    out = videogen.ensure_video_corpus(tmp_path / "generated", **spec)
    monkeypatch.setattr(videogen, "build_video_corpus", None)  # a rebuild would fail
    assert videogen.ensure_video_corpus(out, **spec) == out  # same spec: reused
    data = VideoDataModule(out, frames_per_clip=4, frame_stride=1, num_eval_clips=3, size=16)
    assert data.class_names == CLASSES[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.setup("test")
    assert next(iter(data.test_dataloader()))["clips"].shape == (2, 3, 3, 4, 16, 16)


def test_csv_line_numbers_count_blank_lines_and_ignore_a_bom(corpus):
    csv = corpus / "bom.csv"
    csv.write_text("\ufeffpath,label\n\nvideos/moving_up/0000.mp4,moving up\n\nbroken\n")
    try:
        with pytest.raises(VideoAnnotationError, match=r"bom\.csv:5: expected 2 columns"):
            read_video_csv(csv)
    finally:
        csv.unlink()


def test_annotations_that_are_not_utf8_fail_naming_file_and_line(tmp_path):
    csv = latin1_text(tmp_path / "list.csv", "path,label\na.mp4,moving up\nb.mp4,caf\u00e9\n")
    with pytest.raises(VideoAnnotationError, match=r"list\.csv:3: not UTF-8 text \(byte 0xe9"):
        read_video_csv(csv)
    latin1_text(tmp_path / "classes.txt", "moving up\nna\u00efve\n")
    with pytest.raises(VideoAnnotationError, match=r"classes\.txt:2: not UTF-8"):
        assert VideoDataModule(tmp_path).class_names


def test_training_data_is_sharded_across_ddp_ranks(corpus, monkeypatch):
    """Trainers leave sharding to the datamodules (use_distributed_sampler: false)."""
    import mmembed.data.sampling as sampling

    seen = []
    for rank in range(2):
        monkeypatch.setattr(sampling, "rank_and_world", lambda rank=rank: (rank, 2))
        data = VideoDataModule(corpus, frames_per_clip=4, frame_stride=2, size=24, batch_size=1)
        data.setup("fit")
        loader = data.train_dataloader()
        assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)
        seen.append(list(loader.sampler))
        # evaluation is not sharded: every rank scores every video
        assert len(data.val_dataloader().dataset) == len(list(data.val_dataloader()))
    total = len(data.train_dataloader().dataset)
    assert [len(s) for s in seen] == [(total + 1) // 2] * 2  # equal shares (padded)
    assert set(seen[0]) | set(seen[1]) == set(range(total))
