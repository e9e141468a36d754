"""Bad inputs: each gives an error naming the clip and the problem, and loses nothing."""

import re

import h5py
import numpy as np
import pytest

from msff import cache
from msff.stages.audio import opensmile, spectrograms
from msff.stages.faces import align_faces
from msff.stages.media import extract_audio, extract_frames

from .conftest import MEAD_FRONT, RAVDESS_AV

FACES = dict(
    size=64,
    detect_max_side=480,
    min_face_size=20,
    min_prob=0.9,
    track_min_iou=0.3,
    batch_size=8,
    device="cpu",
)


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "does_not_exist.mp4: no such file"),
        ("empty", "empty.mp4: empty file \\(0 bytes\\)"),
        ("truncated", "truncated.mp4: truncated or damaged"),
    ],
)
def test_bad_video_is_recorded_not_raised(tmp_path, bad_clips, case, message, caplog):
    out = tmp_path / "frames.h5"
    error = extract_frames(case, str(bad_clips[case]), out, fps=10, max_side=320)
    assert error.startswith(f"clip {case}: ")
    assert f"clip {case}: " in caplog.text
    meta = cache.attrs(out)
    assert meta["error"] == error and meta["clip"] == case
    assert re.search(message, error)
    with h5py.File(out) as f:
        assert "frames" not in f  # no partial data beside the error
    assert leftovers(tmp_path) == []
    # The next stage passes the error on instead of failing.
    faces_out = tmp_path / "faces.h5"
    assert "extract_frames failed" in align_faces(case, out, faces_out, **FACES)
    assert "extract_frames failed" in cache.attrs(faces_out)["error"]


def test_video_without_audio_stream(tmp_path):
    out = tmp_path / "audio.h5"
    error = extract_audio("mead", str(MEAD_FRONT), out, 16000, -60)
    assert error == f"clip mead: {MEAD_FRONT}: no audio stream"
    spectro = tmp_path / "spectrograms.h5"
    assert "extract_audio failed" in spectrograms(
        "mead", out, spectro, [1.0], 300, 0.5, 25, 5, 32, 80
    )
    smile = tmp_path / "opensmile.h5"
    assert "extract_audio failed" in opensmile("mead", out, smile)
    for path in (spectro, smile):
        assert cache.attrs(path)["error"] == (
            f"clip mead: extract_audio failed: {MEAD_FRONT}: no audio stream"
        )


def test_clip_with_no_face_keeps_every_frame_row(tmp_path, bad_clips):
    frames = tmp_path / "frames.h5"
    assert extract_frames("noface", str(bad_clips["no_face"]), frames, 10, 640) == ""
    out = tmp_path / "faces.h5"
    assert align_faces("noface", frames, out, **FACES) == ""
    data = cache.read_faces(out)
    n = data["attrs"]["n_frames"]
    assert n > 25 and data["attrs"]["n_found"] == 0
    assert data["attrs"]["note"] == f"no face found in {n} frames"
    assert len(data["found"]) == n and not data["found"].any()
    assert np.isnan(data["prob"]).all() and data["faces"].shape == (n, 64, 64, 3)


def test_unexpected_failure_leaves_no_file(tmp_path):
    out = tmp_path / "x.h5"
    with pytest.raises(RuntimeError), cache.atomic_h5(out, "x") as f:
        f.create_dataset("partial", data=np.arange(10))
        raise RuntimeError("disk full")
    assert not out.exists() and leftovers(tmp_path) == []


def test_rewrite_replaces_the_old_file_only_on_success(tmp_path):
    out = tmp_path / "frames.h5"
    assert extract_frames("a", str(RAVDESS_AV), out, 5, 160) == ""
    good = cache.attrs(out)
    with pytest.raises(RuntimeError), cache.atomic_h5(out, "a"):
        raise RuntimeError("killed")
    assert cache.attrs(out) == good
