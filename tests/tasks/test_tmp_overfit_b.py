from conftest import multimodal_overrides
from mmembed.train import run
from tasks.test_multimodal import memorised


def test_tmp(compose_train, multimodal_corpora, tmp_path):
    corpora = memorised(multimodal_corpora, tmp_path / "memorised")
    cfg = compose_train(multimodal_overrides(
        corpora,
        "data.captions.augment=false", "data.captions.extra_test_files=null",
        "data.speech.extra_test_manifests=null", "data.video.extra_test_splits=null",
        "data.video.crop_scale=[1.0,1.0]", "task.speech.encoder.spec_augment=false",
        "trainer.max_epochs=60", "trainer.max_time=null",
        "trainer.check_val_every_n_epoch=30", "task.weights.spoken_text=3.0",
        "callbacks=none", "logger=csv", "optimizer.lr=0.006",
    ))
    metrics = run(cfg)
    pairs = ("audio_text", "text_audio", "image_text", "text_image", "video_text", "text_video",
             "spoken_text", "text_spoken", "spoken_image", "image_spoken", "spoken_video",
             "video_spoken")
    recalls = {pair: metrics[f"test/retrieval/{pair}_r1"] for pair in pairs}
    print("RECALLS", recalls)
    assert all(value == 1.0 for value in recalls.values()), f"recall@1: {recalls}"
