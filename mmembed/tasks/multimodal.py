"""One multimodal embedding model: speech, images, video and text in one table and one space.

The model is the three single tasks composed over ONE :class:`~mmembed.SharedEmbedding` and
ONE tokenizer (trained on transcripts, captions and class names), plus a small text encoder
over the same table:

- ``speech``: the recogniser (:class:`~mmembed.tasks.speech_recognition.SpeechRecognition`),
  tied CTC over the table (by default over its character rows only, under ids of their own:
  ``speech_units``, :class:`~mmembed.models.table_rows.TableRows`);
- ``captions``: the captioner (:class:`~mmembed.tasks.image_captioning.ImageCaptioning`),
  whose decoder reads and writes the table;
- ``video``: the video classifier (:class:`~mmembed.tasks.video_classification.
  VideoClassification`), scoring clips against class names embedded by the text encoder;
- ``text_encoder``: texts -> the shared space (:class:`~mmembed.models.text_encoder.
  LabelTextEncoder` with Transformer layers), the hub every modality is aligned to.

Each part keeps its own loss, decoding and metrics (its code runs unchanged: a composed task
logs as ``<split>/<part>/<metric>``). On top, every modality gets one pooled, L2-normalised
embedding in the shared width (audio and images through a :class:`~mmembed.models.retrieval.
PooledProjection`, videos as the video task embeds them) and a symmetric InfoNCE term with a
learnable temperature aligns it with its text (CLIP's objective, text as the hub): audio with
transcripts and with the spoken captions' texts, images with their captions, videos with their
class names. The objectives are weighted by ``weights``.

Every validation and test scores retrieval both ways (recall@1/5/10, median rank, several
positives per query) for audio<->text, image<->text, video<->label text, spoken caption<->image
and spoken class name<->video, scores zero-shot classification (videos by new phrasings of their
class names, images by spoken names), draws the top images of a few spoken and typed queries, and
projects the shared space to 2-D with points of every modality.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Unpack

import torch
import torch.nn.functional as F
from torch import nn

from mmembed.embedding import SharedEmbedding
from mmembed.metrics.retrieval import DEFAULT_KS, retrieval_scores, save_retrieval_grid
from mmembed.models.heads import ScaledCosineLogits
from mmembed.models.retrieval import (
    AudioEmbedder,
    ImageEmbedder,
    PooledProjection,
    TextEmbedder,
    VideoEmbedder,
    contrastive_loss,
    positive_mask,
)
from mmembed.models.table_rows import TableRows
from mmembed.models.text_encoder import LabelTextEncoder
from mmembed.tasks.base import TokenTableArgs, TokenTableTask, is_empty
from mmembed.tasks.image_captioning import ImageCaptioning, _evenly_spaced
from mmembed.tasks.speech_recognition import SpeechRecognition
from mmembed.tasks.video_classification import VideoClassification
from mmembed.text.tokenizers import CharacterView, Tokenizer, normalize_text
from mmembed.visualize import plot_shared_space

log = logging.getLogger(__name__)

PARTS = ("speech", "captions", "video")
# objective -> default weight: the three task losses, then the alignments with text
DEFAULT_WEIGHTS = {
    "speech": 1.0,
    "captions": 1.0,
    "video": 1.0,
    "audio_text": 1.0,
    "spoken_text": 1.0,
    "image_text": 1.0,
    "video_text": 1.0,
    # CTC on the spoken captions too (more transcribed speech for the recogniser)
    "spoken_ctc": 0.0,
}
SPEECH_UNITS = ("char", "subword")
_TEXT_CHUNK = 512


class MultimodalEmbedding(TokenTableTask):
    """The three tasks over one table, one tokenizer and one embedding space.

    Args:
        shared: ``tokenizer`` (the one tokenizer, trained on every part's texts),
            ``embedding``, ``width``, ``optimizer``, ``scheduler``, ``scheduler_interval``
            (keywords): see :class:`~mmembed.tasks.base.TokenTableTask`.
        speech, captions, video: factories of the single tasks (their configs in
            ``conf/task/``, as partials), called with the tokenizer, the one table and the width.
        text_encoder: factory of the text tower, called with the tokenizer and the table; the
            video task scores class names with it too.
        weights: objective -> weight, over :data:`DEFAULT_WEIGHTS` (a weight of 0 skips it).
        speech_units: ``"char"``: CTC targets are the characters of the tokenizer's vocabulary
            (:class:`~mmembed.text.CharacterView`); ``"subword"``: its tokens. Must match the
            data module's ``speech_units``.
        speech_readout: CTC scores the character rows through a linear map of its own
            (:class:`~mmembed.models.table_rows.TableRows`' ``readout``): a model built from a
            captioner's and a recogniser's runs keeps the captioner's rows in the table and fits
            the map so that the recogniser's logits stay the ones it learned.
        label_phrasings: class name -> another phrasing of it (``"moving left": "going to the
            left"``), scored zero-shot at test as ``test/zero_shot/video_phrasings_top1``.
        retrieval_ks: the K of recall@K.
        pooling: how audio frames and image regions become one vector: ``"mean"`` or
            ``"attention"`` (:class:`~mmembed.models.retrieval.PooledProjection`).
        grid_queries: spoken (and as many typed) queries in the top-5 image PNG.
        plot_dir: folder of the retrieval grids and shared-space projections; None = the run
            folder (``retrieval/`` and ``shared_space/``).
    """

    object_arguments = ("speech", "captions", "video", "text_encoder")

    def __init__(
        self,
        speech: Callable[..., SpeechRecognition],
        captions: Callable[..., ImageCaptioning],
        video: Callable[..., VideoClassification],
        text_encoder: Callable[[Tokenizer, SharedEmbedding], LabelTextEncoder],
        weights: Mapping[str, float] | None = None,
        speech_units: str = "char",
        speech_readout: bool = False,
        label_phrasings: Mapping[str, str] | None = None,
        retrieval_ks: Sequence[int] = DEFAULT_KS,
        pooling: str = "mean",
        grid_queries: int = 4,
        plot_dir: str | None = None,
        **shared: Unpack[TokenTableArgs],
    ):
        super().__init__(**shared)
        unknown = set(weights or {}) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ValueError(
                f"unknown objective(s) {sorted(unknown)}; known: {list(DEFAULT_WEIGHTS)}"
            )
        if speech_units not in SPEECH_UNITS:
            raise ValueError(f"speech_units must be one of {SPEECH_UNITS}, got {speech_units!r}")
        self.weights = {**DEFAULT_WEIGHTS, **(weights or {})}
        self.speech_units = speech_units
        if speech_readout and speech_units != "char":
            raise ValueError("speech_readout needs speech_units='char' (CTC over the table's rows)")
        self.label_phrasings = dict(label_phrasings or {})
        self.retrieval_ks = tuple(retrieval_ks)
        self.grid_queries = grid_queries
        self.plot_dir = plot_dir

        self.text_encoder = text_encoder(self.tokenizer, self.embedding)
        parts = dict(embedding=self._the_table, width=self.width)
        speech_tokenizer, speech_table = self.tokenizer, self._the_table
        if speech_units == "char":
            # CTC over the table's character rows only, under ids of their own
            speech_tokenizer = CharacterView(self.tokenizer)
            rows = TableRows(self.embedding, speech_tokenizer.rows, readout=speech_readout)
            speech_table = lambda **_: rows
        # Attributes, not a ModuleDict: Lightning hands the trainer to child LightningModules.
        self.speech = speech(tokenizer=speech_tokenizer, embedding=speech_table, width=self.width)
        self.captions = captions(tokenizer=self.tokenizer, **parts)
        self.video = video(tokenizer=self.tokenizer, label_encoder=self.text_encoder, **parts)
        for name in PARTS:
            getattr(self, name).compose_into(self, name)
        self.audio_head = PooledProjection(self.width, pooling)
        self.image_head = PooledProjection(self.width, pooling)
        # one learnable temperature per aligned modality; videos use the video task's own
        self.audio_scale = ScaledCosineLogits()
        self.image_scale = ScaledCosineLogits()
        self._eval_sets: list[tuple[str, str]] = []
        self._store: dict[tuple[str, str], dict[str, list]] = {}

    def _the_table(self, num_embeddings: int, out_features: int) -> SharedEmbedding:
        if (num_embeddings, out_features) != (self.embedding.num_embeddings, self.width):
            raise ValueError(
                f"a part asked for a {num_embeddings} x {out_features} table; the shared one is "
                f"{self.embedding.num_embeddings} x {self.width}"
            )
        return self.embedding

    # --- the shared space ----------------------------------------------------------------------

    def embedder(self, modality: str) -> nn.Module:
        """The module of one modality's path into the space, sharing this model's weights:
        ``"audio"`` (waveforms, lengths), ``"image"`` (images), ``"video"`` (clips) or
        ``"text"`` (ids, mask); each returns unit-norm (B, width) embeddings. Small and
        tensor-only, so ``torch.export`` takes it as it is."""
        if modality == "audio":
            return AudioEmbedder(self.speech.encoder, self.audio_head)
        if modality == "image":
            return ImageEmbedder(self.captions.encoder, self.image_head)
        if modality == "video":
            return VideoEmbedder(self.video.encoder)
        if modality == "text":
            return TextEmbedder(self.text_encoder)
        raise ValueError(f"unknown modality {modality!r}; choose audio, image, video or text")

    def embed_audio(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings (B, width) of padded waveforms (B, S) at the training rate."""
        frames, frame_lengths = self.speech.encoder(waveforms, lengths)
        return self.audio_head(frames, frame_lengths)

    def embed_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings (B, width) of images (B, 3, H, W), preprocessed as in
        training (the caption data's eval transform)."""
        return self.image_head(self.captions(images))

    def embed_video(self, clips: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings (B, width) of clips (B, 3, T, H, W), or of videos given as K
        clips each (B, K, 3, T, H, W; averaged)."""
        return self.embedder("video")(clips)

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm embeddings (N, width) of texts (any phrasing: class names, captions,
        queries)."""
        return self.text_encoder(texts)

    # --- training ------------------------------------------------------------------------------

    def _weighted(self, name: str) -> bool:
        return self.weights[name] != 0.0

    def _align(self, embeddings, texts, head, positives) -> torch.Tensor:
        return contrastive_loss(embeddings, self.text_encoder(texts), head, positives)

    def _speech_terms(self, batch: dict[str, Any], ctc: str, alignment: str) -> dict:
        terms = {}
        frames, frame_lengths, log_probs = self.speech.encode(
            batch["waveforms"], batch["waveform_lengths"]
        )
        if self._weighted(ctc):
            terms[ctc], _ = self.speech._losses(batch, frames, frame_lengths, log_probs)
        if self._weighted(alignment):
            texts = batch["texts"]
            embeddings = self.audio_head(frames, frame_lengths)
            same_text = positive_mask(texts, texts, embeddings.device)
            terms[alignment] = self._align(embeddings, texts, self.audio_scale, same_text)
        return terms

    def _caption_terms(self, batch: dict[str, Any]) -> dict:
        terms = {}
        memory = self.captions(batch["images"])
        if self._weighted("captions"):
            terms["captions"] = self.captions.teacher_forcing_loss(batch, memory)
        if self._weighted("image_text"):
            captions = [normalize_text(caption) for caption in batch["captions"]]
            ids = batch["image_ids"].tolist()
            # a pair matches when it is the same image, or the same caption of another image
            positives = positive_mask(ids, ids) | positive_mask(captions, captions)
            terms["image_text"] = self._align(
                self.image_head(memory), captions, self.image_scale, positives.to(memory.device)
            )
        return terms

    def _video_terms(self, batch: dict[str, Any]) -> dict:
        terms = {}
        clips, labels = batch["clips"], batch["labels"]
        embeddings = self.video.encoder(clips)
        if self._weighted("video"):
            terms["video"] = self.video.training_loss(self.video.classify(embeddings), labels)
        if self._weighted("video_text"):
            names = self.video.class_names
            positives = F.one_hot(labels, len(names)).bool()
            terms["video_text"] = contrastive_loss(
                embeddings, self.video.label_embeddings(names), self.video.cosine_head, positives
            )
        return terms

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if not batch:
            raise ValueError("nothing to train on: the batch holds no part")
        # a part whose items all failed to load (counted skips) adds no terms this step
        parts = {name: part for name, part in batch.items() if not is_empty(part)}
        terms: dict[str, torch.Tensor] = {}
        if "speech" in parts:
            terms.update(self._speech_terms(parts["speech"], "speech", "audio_text"))
        if "spoken" in parts:
            terms.update(self._speech_terms(parts["spoken"], "spoken_ctc", "spoken_text"))
        if "captions" in parts:
            terms.update(self._caption_terms(parts["captions"]))
        if "video" in parts:
            terms.update(self._video_terms(parts["video"]))
        if not terms:
            return self.nothing_to_learn()
        loss = sum(self.weights[name] * value for name, value in terms.items())
        self.log("train/loss", loss, prog_bar=True, batch_size=1)
        for name, value in terms.items():
            self.log(f"train/{name}_loss", value, batch_size=1)
        for name, head in (("audio", self.audio_scale), ("image", self.image_scale),
                           ("video", self.video.cosine_head)):  # fmt: skip
            self.log(f"train/{name}_logit_scale", head.scale, batch_size=1)
        return loss

    # --- evaluation ----------------------------------------------------------------------------

    def part_test_splits(self, part: str) -> list[str]:
        """The test sets of one part (what a composed task's ``test_split_names`` returns)."""
        return [split for name, split in self.trainer.datamodule.eval_sets("test") if name == part]

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        units = getattr(datamodule, "speech_units", self.speech_units)
        if units != self.speech_units:
            raise ValueError(
                f"the task trains speech on {self.speech_units!r} units but the data module "
                f"tokenises {units!r} (set data.speech_units={self.speech_units})"
            )
        for name in PARTS:
            getattr(self, name).setup(stage)

    def _evaluate(self, batch: Any, batch_idx: int, dataloader_idx: int, stage: str) -> None:
        part, split = self._eval_sets[dataloader_idx]
        if is_empty(batch):  # every item failed to load (counted skips)
            return
        name = "val" if stage == "val" else split  # the split name the parts log under
        kept = self._store.setdefault((part, split), defaultdict(list))
        if part == "speech":
            encoded = self.speech.encode(batch["waveforms"], batch["waveform_lengths"])
            self.speech._evaluate(batch, batch_idx, name, encoded)
            kept["embeddings"].append(self.audio_head(encoded[0], encoded[1]))
            kept["texts"] += batch["texts"]
        elif part == "captions":
            memory = self.captions(batch["images"])
            decoding = self.captions.decoding
            beam = decoding.validation_beam_size if stage == "val" else decoding.beam_size
            trainer = self.trainer
            counts = trainer.num_val_batches if stage == "val" else trainer.num_test_batches
            self.captions._evaluate(batch, name, beam, counts[dataloader_idx], memory)
            kept["embeddings"].append(self.image_head(memory))
            kept["references"] += [list(map(normalize_text, refs)) for refs in batch["references"]]
            kept["images"].append(batch["images"].cpu())
        elif part == "video":
            clips, labels = batch["clips"], batch["labels"]
            embeddings = self.video.encoder(clips.flatten(0, 1))
            self.video._evaluate(batch, name, embeddings)
            per_video = F.normalize(embeddings, dim=-1).view(*clips.shape[:2], -1).mean(dim=1)
            kept["embeddings"].append(F.normalize(per_video, dim=-1))
            kept["labels"] += labels.tolist()
        else:  # spoken captions and spoken class names: audio with the text it reads
            embeddings = self.embed_audio(batch["waveforms"], batch["waveform_lengths"])
            kept["embeddings"].append(embeddings)
            kept["texts"] += batch["texts"]

    def on_validation_epoch_start(self) -> None:
        self._eval_sets = self.trainer.datamodule.eval_sets("validate")
        self._store = {}

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, batch_idx, dataloader_idx, "val")

    def on_validation_epoch_end(self) -> None:
        self.captions.on_validation_epoch_end()
        self.video.on_validation_epoch_end()
        self._finish("val", "validation", f"val_epoch_{self.current_epoch:03d}")

    def on_test_epoch_start(self) -> None:
        self._eval_sets = self.trainer.datamodule.eval_sets("test")
        self._store = {}
        for name in PARTS:
            getattr(self, name).on_test_epoch_start()

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, batch_idx, dataloader_idx, "test")

    def on_test_epoch_end(self) -> None:
        self.captions.on_test_epoch_end()
        self.video.on_test_epoch_end()
        for split in dict.fromkeys(split for _, split in self._eval_sets):
            self._finish(split, split, split)

    # --- retrieval scores and plots ------------------------------------------------------------

    @torch.no_grad()
    def _embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.cat([
            self.text_encoder(texts[start : start + _TEXT_CHUNK])
            for start in range(0, len(texts), _TEXT_CHUNK)
        ])  # fmt: skip

    def _gathered(self, part: str, split: str) -> dict[str, Any] | None:
        kept = self._store.get((part, split))
        if not kept:
            return None
        return {**kept, "embeddings": torch.cat(kept["embeddings"]).float()}

    def retrieval_pairs(self, split: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``name -> (similarity (Q, G), positives (Q, G))`` of every retrieval direction
        scored on ``split``, from the embeddings kept while evaluating it."""
        pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

        def both_ways(forward: str, backward: str, queries, gallery, positives) -> None:
            similarity = queries @ gallery.t()
            pairs[forward] = (similarity, positives)
            pairs[backward] = (similarity.t(), positives.t())

        speech = self._gathered("speech", split)
        captions = self._gathered("captions", split)
        video = self._gathered("video", split)
        spoken = self._gathered("spoken", split)
        spoken_labels = self._gathered("spoken_labels", split)
        if speech:
            texts = list(dict.fromkeys(speech["texts"]))
            both_ways("audio_text", "text_audio", speech["embeddings"], self._embed_texts(texts),
                      positive_mask(speech["texts"], texts))  # fmt: skip
        if captions:
            texts = list(dict.fromkeys(r for refs in captions["references"] for r in refs))
            both_ways("image_text", "text_image", captions["embeddings"], self._embed_texts(texts),
                      _contains(captions["references"], texts))  # fmt: skip
        if video:
            names = self.video.class_names
            both_ways("video_text", "text_video", video["embeddings"], self._embed_texts(names),
                      positive_mask(video["labels"], range(len(names))))  # fmt: skip
            phrasings = [self.label_phrasings.get(name) for name in names]
            if all(phrasings) and split != "validation":
                similarity = video["embeddings"] @ self._embed_texts(phrasings).t()
                pairs["zero_shot_video_phrasings"] = (similarity, pairs["video_text"][1])
        if spoken:
            texts = list(dict.fromkeys(spoken["texts"]))
            both_ways("spoken_text", "text_spoken", spoken["embeddings"], self._embed_texts(texts),
                      positive_mask(spoken["texts"], texts))  # fmt: skip
        if spoken and captions:
            both_ways("spoken_image", "image_spoken", spoken["embeddings"], captions["embeddings"],
                      _contains(captions["references"], spoken["texts"]).t())  # fmt: skip
            # zero-shot: each image classified among the names read aloud, every name's
            # readings averaged into one spoken prototype
            names = list(dict.fromkeys(spoken["texts"]))
            readings = positive_mask(names, spoken["texts"]).float()
            prototypes = F.normalize(readings @ spoken["embeddings"].cpu(), dim=-1)
            pairs["zero_shot_images_by_spoken_names"] = (
                captions["embeddings"].cpu() @ prototypes.t(),
                _contains(captions["references"], names),
            )
        if spoken_labels and video:
            names = [self.video.class_names[label] for label in video["labels"]]
            positives = positive_mask(spoken_labels["texts"], names)
            both_ways("spoken_video", "video_spoken", spoken_labels["embeddings"],
                      video["embeddings"], positives)  # fmt: skip
        return {name: (s.cpu(), p.cpu()) for name, (s, p) in pairs.items()}

    def _finish(self, prefix: str, split: str, file_stem: str) -> None:
        pairs = self.retrieval_pairs(split)
        recalls_at_1 = []
        for name, (similarity, positives) in pairs.items():
            # a part evaluated on some of its batches only (sanity check, limit_val_batches)
            # leaves queries whose positives were not seen: they are not scored
            answerable = positives.any(dim=1)
            if not answerable.any():
                continue
            scores = retrieval_scores(
                similarity[answerable], positives[answerable], self.retrieval_ks
            )
            if name.startswith("zero_shot"):
                self.log(f"{prefix}/zero_shot/{name.removeprefix('zero_shot_')}_top1", scores["r1"],
                         sync_dist=True, add_dataloader_idx=False)  # fmt: skip
                continue
            recalls_at_1.append(scores["r1"])
            for metric, value in scores.items():
                # equal on every rank (evaluation is not sharded); the mean tells Lightning so
                self.log(f"{prefix}/retrieval/{name}_{metric}", value, sync_dist=True,
                         add_dataloader_idx=False)  # fmt: skip
        if recalls_at_1:
            self.log(f"{prefix}/retrieval/mean_r1", sum(recalls_at_1) / len(recalls_at_1),
                     prog_bar=True, sync_dist=True, add_dataloader_idx=False)  # fmt: skip
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        self._save_grid(split, file_stem, pairs)
        self._save_projection(split, file_stem)

    def _plot_folder(self, kind: str) -> Path:
        return Path(self.plot_dir or self.trainer.default_root_dir) / kind

    def _save_grid(self, split: str, file_stem: str, pairs: dict) -> None:
        captions = self._gathered("captions", split)
        spoken = self._gathered("spoken", split)
        if not captions or not spoken or self.grid_queries <= 0:
            return
        picks = _evenly_spaced(len(spoken["texts"]), self.grid_queries)
        texts = [spoken["texts"][i] for i in picks]
        typed = self._embed_texts(texts).float() @ captions["embeddings"].t()
        similarity = torch.cat([pairs["spoken_image"][0][picks], typed.cpu()])
        relevant = torch.cat([pairs["spoken_image"][1][picks]] * 2)
        top = min(5, similarity.shape[1])
        labels = [f'spoken: "{t}"' for t in texts] + [f'typed: "{t}"' for t in texts]
        normalization = self.captions.image_normalization or {}
        path = save_retrieval_grid(
            labels,
            torch.cat(captions["images"]),
            similarity.topk(top, dim=1).indices,
            relevant,
            self._plot_folder("retrieval") / f"{file_stem}.png",
            **normalization,
        )
        log.info("retrieval samples: %s", path)

    def _save_projection(self, split: str, file_stem: str) -> None:
        groups: dict[str, torch.Tensor] = {}
        texts: list[str] = []
        for part, modality in (("speech", "audio"), ("spoken", "spoken audio"),
                               ("captions", "image"), ("video", "video")):  # fmt: skip
            kept = self._gathered(part, split)
            if kept:
                groups[modality] = kept["embeddings"]
                texts += kept.get("texts", [])
                texts += [refs[0] for refs in kept.get("references", [])]
        texts += self.video.class_names
        groups["text"] = self._embed_texts(list(dict.fromkeys(texts)))
        if sum(len(group) for group in groups.values()) < 3:
            return
        path = plot_shared_space(
            groups,
            self._plot_folder("shared_space") / f"{file_stem}.png",
            title=f"shared space ({split})",
        )
        log.info("shared-space projection: %s", path)

    # --- checkpoints -----------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        self.video.on_save_checkpoint(checkpoint)  # the class names

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.video.on_load_checkpoint(checkpoint)


def _contains(reference_lists: Sequence[Sequence[str]], texts: Sequence[str]) -> torch.Tensor:
    """(len(reference_lists), len(texts)) bool: whether each text is one of the references."""
    columns: dict[str, list[int]] = defaultdict(list)
    for index, text in enumerate(texts):
        columns[text].append(index)
    mask = torch.zeros(len(reference_lists), len(texts), dtype=torch.bool)
    for row, references in enumerate(reference_lists):
        for text in references:
            mask[row, columns.get(text, [])] = True
    return mask
