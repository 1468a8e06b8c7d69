"""The data-module contract every loader shares, and the corpus-folder contract every
generator follows."""

import os
import signal

import pytest
import torch
from torch.utils.data import TensorDataset

from mmembed.data import sampling
from mmembed.data.datamodule import TaskDataModule
from mmembed.data.skips import SkippedItem, SkippedItemsWarning, summarize, warn_skipped
from mmembed.datagen import corpus_folder


class Numbers(TaskDataModule):
    """Ten numbers a split, one of them 'unreadable'."""

    built: list[str]

    def build_dataset(self, split):
        self.built = [*getattr(self, "built", []), split]
        self.skipped[split].append(SkippedItem(f"{split}.csv:3", "unreadable", "bad bytes"))
        return TensorDataset(torch.arange(10))

    def training_texts(self):
        return ["one", "two"]


def test_setup_builds_the_splits_of_each_stage_once():
    data = Numbers(batch_size=4)
    data.setup("fit")
    assert data.built == ["train", "validation"]
    data.setup("validate")
    data.setup("test")
    assert data.built == ["train", "validation", "test"]
    assert summarize(data.skipped) == [
        f"{split}: 1 skipped ({{'unreadable': 1}})" for split in ("train", "validation", "test")
    ]


def test_training_loader_shuffles_and_shards_evaluation_loaders_do_not(monkeypatch):
    def values(loader):
        return torch.cat([batch[0] for batch in loader]).tolist()

    data = Numbers(batch_size=4, eval_batch_size=10)
    shuffled = values(data.train_dataloader())
    assert sorted(shuffled) == list(range(10)) and shuffled != list(range(10))
    assert values(data.val_dataloader()) == list(range(10))
    shares = []
    for rank in range(2):
        monkeypatch.setattr(sampling, "rank_and_world", lambda rank=rank: (rank, 2))
        shares.append(values(Numbers(batch_size=5).train_dataloader()))
    assert sorted(shares[0] + shares[1]) == list(range(10))
    assert len(shares[0]) == len(shares[1]) == 5


class SignalledNumbers(Numbers):
    """Each item sends its loading process the preemption warning SLURM sends a whole task."""

    def build_dataset(self, split):
        return SignalledItems()


class SignalledItems(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        os.kill(os.getpid(), signal.SIGUSR1)
        return torch.tensor(index)


def test_loader_workers_survive_the_preemption_warning():
    data = SignalledNumbers(batch_size=2, num_workers=1)
    batches = [batch for batch in data.loader("validation")]
    assert torch.cat(batches).tolist() == [0, 1, 2, 3]


def test_training_batches_draw_their_randomness_from_their_own_seed():
    """The same batch loads the same random draws whatever the global RNG did before."""

    class Noisy(Numbers):
        def build_dataset(self, split):
            return Jitter()

    def epoch(data):
        return [batch for batch in data.train_dataloader()]

    torch.manual_seed(1)
    first = epoch(Noisy(batch_size=4, seed=3))
    torch.manual_seed(2)
    second = epoch(Noisy(batch_size=4, seed=3))
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(first[0], epoch(Noisy(batch_size=4, seed=4))[0])


class Jitter(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, index):
        return index + torch.rand(())


def test_bad_batch_sizes_are_named():
    with pytest.raises(ValueError, match="batch_size must be a positive"):
        Numbers(batch_size=0)
    with pytest.raises(ValueError, match="eval_batch_size must be a positive"):
        Numbers(batch_size=2, eval_batch_size=-1)


def test_one_warning_counts_and_names_the_skipped_items():
    items = [SkippedItem(f"a.wav:{i}", "empty", "no samples") for i in range(25)]
    with pytest.warns(SkippedItemsWarning, match=r"(?s)skipped 25 of 30 clips.*a\.wav:0.*5 more"):
        warn_skipped("m.jsonl", items, 30, "clips")


@pytest.mark.parametrize("count", [1, 2, 3, 7, 10, 99, 1000])
def test_split_sizes_add_up_and_fill_every_split_when_they_can(count):
    sizes = corpus_folder.split_sizes(count, (0.7, 0.15, 0.15))
    assert sum(sizes) == count
    if count >= 3:
        assert min(sizes) >= 1
    assert abs(sizes[0] - 0.7 * count) <= 2


def test_a_failed_build_leaves_the_old_corpus_and_no_staging_folder(tmp_path):
    out = tmp_path / "corpus"
    with corpus_folder.staging(out, "gen") as folder:
        (folder / "a.txt").write_text("first")
        corpus_folder.write_info(folder, "gen", {"v": 1}, {"train": {"items": 1}})
    assert corpus_folder.is_current(out, "gen", {"v": 1}, ["a.txt"])
    assert corpus_folder.describe_counts(corpus_folder.read_corpus_info(out, "gen")) == [
        "train: 1 items"
    ]
    with pytest.raises(KeyboardInterrupt), corpus_folder.staging(out, "gen") as folder:
        (folder / "a.txt").write_text("second")
        raise KeyboardInterrupt
    assert (out / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]
    with (
        pytest.raises(RuntimeError, match="wrote no corpus.json"),
        corpus_folder.staging(out, "gen"),
    ):
        pass
    assert not corpus_folder.is_current(out, "other", {"v": 1})
    with pytest.raises(FileExistsError, match="corpus=none"), corpus_folder.staging(out, "other"):
        pass
