"""Every trained head on tiny real training sets, and the scores file each one writes.

Each head must overfit four real clips of four emotions (training accuracy >= 90 %):
gradients reach what is trained and the clip aggregation is right. The heads trained
from scratch (C3D, VGG-19) are overfitted with augmentation off (``train.augment``), as
one checks that a net can fit: on four clips of one actor, flips and shifts hide the few
pixels that tell the expressions apart, and 20 windows are too few to learn them.
Accuracy on held-out data is measured by the workflow and the benchmarks, not here.
"""

from __future__ import annotations

import json
from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch

from msff import scores
from msff.datasets import SpectrogramSegments, windows
from msff.heads import blstm
from msff.heads.audio_cnn import audio_features, finetune_audio_cnn, segment_batches
from msff.heads.audio_cnn import infer as audio_cnn_infer
from msff.heads.audio_cnn import load as audio_cnn_load
from msff.heads.blstm import train_blstm
from msff.heads.c3d import train_c3d
from msff.heads.frame_cnn import cnn_features, face_batches, finetune_cnn
from msff.heads.frame_cnn import infer as frame_cnn_infer
from msff.heads.frame_cnn import load as frame_cnn_load
from msff.predict import backbone_pass
from msff.stages.audio import spectrograms
from msff.stages.faces import align_faces
from msff.stages.media import extract_audio, extract_frames
from msff.train import TrainSettings

from .conftest import DATA

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
FACE_CLIPS = {  # MEAD front-view crops of one actor, four emotions
    "angry": DATA / "mead_front" / "M030_front_angry_level3_001.mp4",
    "happy": DATA / "mead_front" / "M030_front_happy_level3_001.mp4",
    "sad": DATA / "mead_front" / "M030_front_sad_level3_001.mp4",
    "surprise": DATA / "mead_front" / "M030_front_surprised_level3_001.mp4",
}
SPEECH_CLIPS = {  # RAVDESS actor 03, strong intensity
    "angry": DATA / "ravdess_speech" / "Actor_03" / "03-01-05-02-01-01-03.flac",
    "happy": DATA / "ravdess_speech" / "Actor_03" / "03-01-03-02-01-01-03.flac",
    "sad": DATA / "ravdess_speech" / "Actor_03" / "03-01-04-02-01-01-03.flac",
    "surprise": DATA / "ravdess_speech" / "Actor_03" / "03-01-08-02-01-01-03.flac",
}
# Higher than the paper's 0.01: four clips give few steps per epoch, and this is a test.
SETTINGS = TrainSettings(batch_size=8, lr=0.05, epochs=20, patience=20, seed=0)
FROM_SCRATCH = TrainSettings(
    batch_size=4, optimizer="adam", lr=0.001, epochs=40, patience=40, augment=False, seed=0
)


def records(labels, extra=()):
    clips = [
        dict(clip=f"c_{label}", split="train", speaker="s1") | {"class": label} for label in labels
    ]
    return clips + [
        dict(clip=clip, split="test", speaker="s2") | {"class": label} for clip, label in extra
    ]


def train_accuracy(path, clips):
    table = scores.read(path, CLASSES)
    assert list(table.index) == [c["clip"] for c in clips]  # one row per clip, in order
    np.testing.assert_allclose(table[CLASSES].to_numpy().sum(1), 1, atol=1e-4)
    train = table[table.split == "train"]
    predicted = np.array(CLASSES)[train[CLASSES].to_numpy().argmax(1)]
    return (predicted == np.array([c["class"] for c in clips if c["split"] == "train"])).mean()


@pytest.fixture(scope="module")
def faces(tmp_path_factory, bad_clips):
    folder = tmp_path_factory.mktemp("faces")
    out = {}
    for label, path in {**FACE_CLIPS, "noface": bad_clips["no_face"]}.items():
        frames = folder / f"{label}.frames.h5"
        assert extract_frames(label, str(path), frames, fps=10, max_side=None) == ""
        out[f"c_{label}"] = str(folder / f"{label}.h5")
        assert (
            align_faces(
                label,
                frames,
                out[f"c_{label}"],
                size=64,
                detect_max_side=None,
                min_face_size=20,
                min_prob=0.9,
                track_min_iou=0.3,
                batch_size=16,
                device="cpu",
            )
            == ""
        )
    return out


@pytest.mark.parametrize("head_start", ["random", "zeroshot"])
def test_frame_cnn_then_blstm_overfit_real_faces(tmp_path, faces, head_start):
    """Both heads fit four clips and msff predict's path reproduces them; ``zeroshot``: the
    features carry FER2013's log-probabilities after fc7 and both heads start from them."""
    clips = records(FACE_CLIPS, extra=[("c_noface", "sad")])
    model, frame_scores = tmp_path / "cnn.pt", tmp_path / "frames.tsv"
    finetune_cnn(
        "fer2013",
        clips,
        faces,
        model,
        tmp_path / "cnn.json",
        frame_scores,
        CLASSES,
        SETTINGS,
        fc_width=64,
        crop=56,
        max_train_frames=12,
        weights=None,
        head_start=head_start,
        device="cpu",
        out_features=tmp_path / "features.h5",
    )
    assert train_accuracy(frame_scores, clips) >= 0.9
    width = 64 + (len(CLASSES) if head_start == "zeroshot" else 0)
    table = scores.read(frame_scores, CLASSES)
    assert table.loc["c_noface", "note"] == "no face found"
    np.testing.assert_allclose(table.loc["c_noface", CLASSES].to_numpy(float), 1 / 7, atol=1e-5)

    # The features come from the pass that scored the frames: the same as a pass of the
    # saved model over the faces (cnn_features), and scoring them gives the frame scores.
    features = tmp_path / "features.h5"
    cnn_features(model, clips, faces, tmp_path / "again.h5", device="cpu")
    built, _ = frame_cnn_load(model)
    with h5py.File(features) as f, h5py.File(tmp_path / "again.h5") as again:
        assert sorted(f) == sorted(c["clip"] for c in clips)
        assert f["c_noface"].shape == (0, width)
        assert f.attrs["prior_classes"] == width - 64
        for clip in f:
            feats = f[clip][()]
            np.testing.assert_array_equal(feats, again[clip][()])
            if len(feats):
                with torch.no_grad():
                    logits = built.model.classify(torch.from_numpy(feats.astype(np.float32)))
                mean = torch.softmax(logits, 1).mean(0).numpy()
                got = table.loc[clip, CLASSES].to_numpy(float)
                np.testing.assert_allclose(got, mean, atol=2e-3)
    blstm_scores = tmp_path / "blstm.tsv"
    train_blstm(
        features,
        clips,
        blstm_scores,
        tmp_path / "blstm.pt",
        tmp_path / "blstm.json",
        CLASSES,
        SETTINGS,
        hidden=32,
        window=8,
        stride=4,
        unseen_note="no face found",
        device="cpu",
    )
    assert train_accuracy(blstm_scores, clips) >= 0.9
    assert json.loads((tmp_path / "blstm.json").read_text())["model"]["prior"] == width - 64

    # msff predict's streamed path (features to a file batch by batch, the BLSTM reading
    # two windows at a time) gives what the workflow wrote for the clip.
    loaded, sequence = frame_cnn_load(model), blstm.load(tmp_path / "blstm.pt")
    written = scores.read(blstm_scores, CLASSES)
    for clip in ("c_angry", "c_sad"):
        out = tmp_path / f"{clip}.pass.h5"
        passed = backbone_pass(frame_cnn_infer(loaded, faces[clip]), out, keep_rows=True)
        np.testing.assert_allclose(passed.mean, table.loc[clip, CLASSES].to_numpy(float), atol=2e-3)
        np.testing.assert_allclose(passed.rows.mean(0), passed.mean, atol=1e-6)
        with h5py.File(out) as f, h5py.File(features) as stored:
            np.testing.assert_array_equal(f["features"][()], stored[clip][()])
            got = blstm.infer(sequence, f["features"], batch_windows=2)
            assert len(windows(len(f["features"]), 8, 4)) > 2  # more than one batch
        np.testing.assert_allclose(got, written.loc[clip, CLASSES].to_numpy(float), atol=2e-3)
    nothing = backbone_pass(frame_cnn_infer(loaded, faces["c_noface"]), tmp_path / "n.h5", True)
    assert nothing is None


def test_same_seed_same_frame_scores_whatever_ran_before(tmp_path, faces):
    """The fc layers' start is seeded too: the global generator's state does not matter."""
    clips = records(FACE_CLIPS)
    written = []
    for run in range(2):
        torch.manual_seed(run)  # another history before each run
        torch.rand(run + 5)
        out = tmp_path / f"frames{run}.tsv"
        finetune_cnn(
            "fer2013",
            clips,
            faces,
            tmp_path / f"cnn{run}.pt",
            tmp_path / f"cnn{run}.json",
            out,
            CLASSES,
            replace(SETTINGS, epochs=1),
            fc_width=32,
            crop=56,
            max_train_frames=4,
            weights=None,
            device="cpu",
        )
        written.append(out.read_bytes())
    assert written[0] == written[1]


def test_shifted_test_views_score_the_clip_and_leave_the_blstm_features_as_mirrored(
    tmp_path, faces
):
    """shift_test: a face's scores average it, its mirror and both moved 4 of 64 pixels up,
    down, left and right (edges repeated); its features (the BLSTM's input) average the
    face and its mirror only, whatever the shift. The model file keeps the views: msff
    predict's path scores as the workflow did."""
    clips = records(FACE_CLIPS)
    model, frame_scores = tmp_path / "cnn.pt", tmp_path / "frames.tsv"
    finetune_cnn(
        "fer2013",
        clips,
        faces,
        model,
        tmp_path / "cnn.json",
        frame_scores,
        CLASSES,
        replace(SETTINGS, epochs=1),
        fc_width=32,
        crop=56,
        max_train_frames=4,
        weights=None,
        flip_test=True,
        shift_test=0.0625,
        head_start="zeroshot",
        device="cpu",
        out_features=tmp_path / "features.h5",
    )
    loaded = frame_cnn_load(model)
    views, net = loaded[0].model, loaded[0].model.model
    assert (views.flip, views.shift) == (True, 0.0625)
    x = next(face_batches(faces["c_sad"], 56, loaded[0].prepare, 64))
    assert x.shape[-1] == 64  # FER2013's input: the shift is 4 pixels

    def moved(x, dy, dx):  # by hand: rows / columns cut on one side, the edge repeated
        if dy:
            edge = x[..., :1, :] if dy > 0 else x[..., -1:, :]
            kept = x[..., :-dy, :] if dy > 0 else x[..., -dy:, :]
            parts = [edge.expand(*x.shape[:-2], abs(dy), x.shape[-1]), kept]
            x = torch.cat(parts if dy > 0 else parts[::-1], -2)
        if dx:
            edge = x[..., :1] if dx > 0 else x[..., -1:]
            kept = x[..., :-dx] if dx > 0 else x[..., -dx:]
            parts = [edge.expand(*x.shape[:-1], abs(dx)), kept]
            x = torch.cat(parts if dx > 0 else parts[::-1], -1)
        return x

    with torch.no_grad():
        mirrored = (net.features(x) + net.features(x.flip(-1))) / 2
        every = [moved(x, dy, dx) for dy, dx in ((0, 0), (4, 0), (-4, 0), (0, 4), (0, -4))]
        averaged = sum(net.features(v) + net.features(v.flip(-1)) for v in every) / 10
        features, scored = views.scored_features(x)
        torch.testing.assert_close(features, mirrored)
        torch.testing.assert_close(views.features(x), mirrored)
        torch.testing.assert_close(scored, averaged)
        # The shifted views count: they move the clip's scores.
        assert not torch.allclose(net.classify(scored), net.classify(mirrored), atol=1e-3)
        mean = torch.softmax(net.classify(averaged), 1).mean(0).numpy()

    table = scores.read(frame_scores, CLASSES)
    np.testing.assert_allclose(table.loc["c_sad", CLASSES].to_numpy(float), mean, atol=2e-3)
    passed = backbone_pass(frame_cnn_infer(loaded, faces["c_sad"]), tmp_path / "p.h5", False)
    np.testing.assert_allclose(passed.mean, mean, atol=2e-3)
    with h5py.File(tmp_path / "features.h5") as f:
        # (stored as float16, as every features file)
        np.testing.assert_allclose(f["c_sad"][: len(x)], mirrored.numpy(), rtol=2e-3, atol=1e-3)


def test_finetuning_the_last_module_leaves_the_frozen_ones_bit_identical(tmp_path, faces):
    """train_blocks=1: the last residual module learns with fc6-fc8; the rest stays FER2013's."""
    from msff.models.fer2013 import build

    pretrained = build(len(CLASSES), 32, None).model.state_dict()
    finetune_cnn(
        "fer2013",
        records(FACE_CLIPS),
        faces,
        tmp_path / "cnn.pt",
        tmp_path / "cnn.json",
        tmp_path / "frames.tsv",
        CLASSES,
        replace(SETTINGS, epochs=2, backbone_lr=1e-3),
        fc_width=32,
        crop=56,
        max_train_frames=8,
        weights=None,
        train_blocks=1,
        device="cpu",
    )
    tuned = torch.load(tmp_path / "cnn.pt", weights_only=True)["state_dict"]
    backbone = [k for k in pretrained if k.startswith("backbone.")]
    last = [k for k in backbone if k.startswith("backbone.blocks.3.")]
    assert last and len(last) < len(backbone)
    # Every parameter and buffer (batch-norm statistics too) before the last module: as loaded.
    for key in sorted(set(backbone) - set(last)):
        assert torch.equal(tuned[key], pretrained[key]), key
    changed = [k for k in last if not torch.equal(tuned[k], pretrained[k])]
    assert any(k.endswith(".weight") for k in changed), changed


def test_c3d_overfits_real_faces(tmp_path, faces):
    """C3D trained from scratch fits four clips; no face -> the uniform row."""
    clips = records(FACE_CLIPS, extra=[("c_noface", "sad")])
    out, provenance = tmp_path / "c3d.tsv", tmp_path / "c3d.json"
    train_c3d(
        clips,
        faces,
        out,
        tmp_path / "c3d.pt",
        provenance,
        CLASSES,
        FROM_SCRATCH,
        fc_width=512,  # a 64-wide fc6/fc7 with dropout 0.5 barely passes a signal
        width=0.125,
        frames=8,
        size=32,
        crop=56,
        stride=8,
        weights=None,
        batch_norm=True,
        device="cpu",
    )
    assert train_accuracy(out, clips) >= 0.9
    table = scores.read(out, CLASSES)
    assert table.loc["c_noface", "note"] == "no face found"
    np.testing.assert_allclose(table.loc["c_noface", CLASSES].to_numpy(float), 1 / 7, atol=1e-5)
    assert "trained from scratch" in json.loads(provenance.read_text())["weights"]["c3d"]


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech")
    out = {}
    for label, path in SPEECH_CLIPS.items():
        audio = folder / f"{label}.audio.h5"
        assert extract_audio(label, str(path), audio, 16000, -60) == ""
        out[f"c_{label}"] = str(folder / f"{label}.h5")
        assert (
            spectrograms(label, audio, out[f"c_{label}"], [1.0, 0.5], 300, 0.5, 25, 5, 48, 80) == ""
        )
    return out


@pytest.fixture(scope="module")
def speech_cnn(tmp_path_factory, speech):
    """VGG-19 from scratch on four clips, and its segment features of them."""
    folder = tmp_path_factory.mktemp("speech_cnn")
    clips = records(SPEECH_CLIPS)
    model, provenance = folder / "vgg19.pt", folder / "vgg19.json"
    finetune_audio_cnn(
        clips,
        speech,
        model,
        provenance,
        CLASSES,
        FROM_SCRATCH,
        fc_width=512,  # a 64-wide fc6/fc7 with dropout 0.5 barely passes a signal
        width=0.125,
        input_size=48,
        weights=None,
        gaussian_std=8.0,
        salt_pepper=0.01,
        batch_norm=True,
        device="cpu",
    )
    features = folder / "features.h5"
    audio_features(model, clips, speech, features, device="cpu")
    return clips, model, provenance, features


# Segment features of four clips that share their silent lead-in and tail: a harder fit
# than the face frames, which Adam finds within the budget.
SPEECH_BLSTM = dict(
    settings=TrainSettings(batch_size=8, optimizer="adam", lr=0.003, epochs=30, patience=30),
    hidden=32,
    window=8,
    stride=4,
    unseen_note="no audio",
    device="cpu",
)


def test_audio_cnn_then_blstm_overfit_real_speech(tmp_path, speech, speech_cnn):
    """VGG-19 from scratch, its segment features, then the BLSTM fit four clips."""
    clips, model, provenance, features = speech_cnn
    assert "trained from scratch" in json.loads(provenance.read_text())["weights"]["vgg19"]
    with h5py.File(features) as f:
        for c in clips:  # one fc7 vector per scale-1.0 segment
            with h5py.File(speech[c["clip"]]) as s:
                assert f[c["clip"]].shape == (s["images"].shape[1], 512)
    out = tmp_path / "blstm.tsv"
    train_blstm(
        features,
        clips,
        out,
        tmp_path / "blstm.pt",
        tmp_path / "blstm.json",
        CLASSES,
        **SPEECH_BLSTM,
    )
    assert train_accuracy(out, clips) >= 0.9

    # msff predict's streamed path: segment images read straight from the cache, a batch
    # at a time, are the test-time items of the training set's reader; the features and
    # the BLSTM's scores are those the workflow wrote.
    loaded, sequence = audio_cnn_load(model), blstm.load(tmp_path / "blstm.pt")
    written = scores.read(out, CLASSES)
    for clip in ("c_angry", "c_sad"):
        items = SpectrogramSegments([speech[clip]], [0], False, loaded[0].prepare)
        streamed = torch.cat(list(segment_batches(speech[clip], loaded[0].prepare, 5)))
        torch.testing.assert_close(streamed, torch.stack([x for x, _ in items]), rtol=0, atol=0)
        passed = backbone_pass(audio_cnn_infer(loaded, speech[clip]), tmp_path / "p.h5", False)
        with h5py.File(passed.features_h5) as f, h5py.File(features) as stored:
            np.testing.assert_array_equal(f["features"][()], stored[clip][()])
            got = blstm.infer(sequence, f["features"], batch_windows=2)
        np.testing.assert_allclose(got, written.loc[clip, CLASSES].to_numpy(float), atol=2e-3)


def test_blstm_ensemble_is_its_seeds_averaged(tmp_path, speech_cnn):
    """``members`` BLSTMs: the first is the single BLSTM of the same seed, bit for bit, the
    next one another seed's, and the clips' scores the mean of their probabilities."""
    clips, _, _, features = speech_cnn
    for name, members in (("one", 1), ("three", 3)):
        train_blstm(
            features,
            clips,
            tmp_path / f"{name}.tsv",
            tmp_path / f"{name}.pt",
            tmp_path / f"{name}.json",
            CLASSES,
            **SPEECH_BLSTM,
            members=members,
            checkpoint=tmp_path / "checkpoints" / f"{name}.pt",
        )
    single, _ = blstm.load(tmp_path / "one.pt")
    ensemble, meta = blstm.load(tmp_path / "three.pt")
    assert meta["members"] == 3 and len(ensemble.members) == 3
    first, second = (m.state_dict() for m in ensemble.members[:2])
    for key, value in single.state_dict().items():
        torch.testing.assert_close(first[key], value, rtol=0, atol=0)
    assert any(not torch.equal(first[k], second[k]) for k in first)  # another seed
    histories = json.loads((tmp_path / "three.json").read_text())["member_histories"]
    assert len(histories) == 3 and all(h["epochs"] for h in histories)
    assert not list((tmp_path / "checkpoints").iterdir())  # every member's is removed

    written = scores.read(tmp_path / "three.tsv", CLASSES)
    with h5py.File(features) as f:
        for clip in ("c_angry", "c_happy"):
            sequence = torch.from_numpy(f[clip][()].astype(np.float32))
            index = windows(len(sequence), 8, 4)
            batch = torch.stack([sequence[w] for w in index])
            with torch.no_grad():  # each member's mean over the clip's windows, averaged
                per_member = [torch.softmax(m(batch), 1).mean(0) for m in ensemble.members]
            expected = torch.stack(per_member).mean(0).numpy()
            np.testing.assert_allclose(
                written.loc[clip, CLASSES].to_numpy(float), expected, atol=2e-3
            )
            np.testing.assert_allclose(blstm.infer((ensemble, meta), f[clip]), expected, atol=2e-3)
