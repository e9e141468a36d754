"""No clip sinks a run (issue 17): hostile inputs made from real recordings, one by one.

Each case is a real clip made hostile with ffmpeg (scaled to 64x36, cut to one frame,
rotated and tagged, renamed) or a real frame folder with a bad image in it; each ends
with a cache (data or an error naming the clip), never with an exception.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import msff.audio
from msff import cache, datasets, media, scores, sheet
from msff.errors import BadClipError, ConfigError
from msff.faces import FaceDetector
from msff.heads.svm import _features
from msff.stages import recording_bad_clips
from msff.stages.audio import opensmile
from msff.stages.faces import align_faces
from msff.stages.media import extract_audio, extract_frames

from .conftest import (
    CREMA_D,
    MEAD_DAMAGED,
    MEAD_FRONT,
    RAVDESS_AV,
    REPO,
    SPEECH_NEUTRAL,
    ffmpeg,
    giant_png,
)

# align_faces as the repo's cpu preset runs it (min_face_size 40, detection at 480).
FACES = dict(
    size=64,
    detect_max_side=480,
    min_face_size=40,
    min_prob=0.9,
    track_min_iou=0.3,
    batch_size=8,
    device="cpu",
)


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


# --- 1. any per-clip failure is recorded for that clip --------------------------------


def test_decompression_bomb_in_a_frame_folder_is_recorded_with_its_type(tmp_path, frame_folder):
    from PIL import Image

    folder = tmp_path / "bomb"
    shutil.copytree(frame_folder, folder)
    giant_png(folder / "frame21.png")  # after the 20 real frames
    assert 20000 * 20000 > 2 * Image.MAX_IMAGE_PIXELS  # Pillow refuses, not just warns
    assert (folder / "frame21.png").stat().st_size < 100_000
    out = tmp_path / "frames.h5"
    error = extract_frames("bomb", str(folder), out, fps=None, max_side=320)
    assert error.startswith("clip bomb: extract_frames: DecompressionBombError: ")
    assert "400000000 pixels" in error
    assert cache.attrs(out)["error"] == error
    with h5py.File(out) as f:
        assert "frames" not in f
    assert leftovers(tmp_path) == []
    faces = tmp_path / "faces.h5"
    assert "extract_frames failed" in align_faces("bomb", out, faces, **FACES)


def test_unreadable_image_in_a_frame_folder_names_the_file(tmp_path, frame_folder):
    folder = tmp_path / "broken"
    shutil.copytree(frame_folder, folder)
    real = (folder / "frame7.png").read_bytes()
    (folder / "frame7.png").write_bytes(real[: len(real) // 3])  # truncated PNG
    out = tmp_path / "frames.h5"
    error = extract_frames("broken", str(folder), out, fps=None, max_side=320)
    assert error.startswith("clip broken: ") and "frame7.png: not a readable image" in error
    assert cache.attrs(out)["error"] == error


def test_corrupt_upstream_cache_is_recorded_not_raised(tmp_path):
    # A frames cache overwritten by garbage (a disk fault): h5py raises OSError.
    frames = tmp_path / "frames.h5"
    frames.write_bytes(RAVDESS_AV.read_bytes()[:4096])
    out = tmp_path / "faces.h5"
    error = align_faces("garbled", frames, out, **FACES)
    assert error.startswith("clip garbled: align_faces: OSError: ")
    assert cache.attrs(out)["error"] == error


def test_interrupt_still_stops_the_run(tmp_path):
    def work():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        recording_bad_clips("c", tmp_path / "x.h5", work)
    assert not (tmp_path / "x.h5").exists()


# --- 2. a 64x36 video ---------------------------------------------------------------


def test_64x36_video_has_no_face_and_no_error(tmp_path):
    tiny = tmp_path / "tiny.mp4"
    ffmpeg("-i", str(RAVDESS_AV), "-vf", "scale=64:36", "-an", "-c:v", "libx264", str(tiny))
    frames = tmp_path / "frames.h5"
    assert extract_frames("tiny", str(tiny), frames, fps=10, max_side=640) == ""
    with h5py.File(frames) as f:
        assert f["frames"].shape[1:] == (36, 64, 3)
        first = f["frames"][:4]
    detections = FaceDetector(40, 480, "cpu").detect(first)
    assert [d.boxes.shape for d in detections] == [(0, 4)] * 4
    assert [d.landmarks.shape for d in detections] == [(0, 5, 2)] * 4
    out = tmp_path / "faces.h5"
    assert align_faces("tiny", frames, out, **FACES) == ""
    meta = cache.attrs(out)
    assert meta["n_found"] == 0 and meta["n_frames"] > 25
    assert meta["note"] == f"no face found in {meta['n_frames']} frames"


def test_a_damaged_video_keeps_its_note_in_the_faces_it_gave(tmp_path):
    # The frames cache is deleted once its faces are aligned: its note must go on.
    frames, out = tmp_path / "frames.h5", tmp_path / "faces.h5"
    assert extract_frames("sad", str(MEAD_DAMAGED), frames, fps=5, max_side=320) == ""
    damaged = cache.attrs(frames)["note"]
    assert damaged.startswith("damaged file:")
    assert align_faces("sad", frames, out, **FACES) == ""
    meta = cache.attrs(out)
    assert meta["n_found"] > 0 and meta["note"] == damaged


# --- 3. a single-frame video --------------------------------------------------------


def test_single_frame_video_gives_its_frame(tmp_path):
    one = tmp_path / "one.mp4"
    ffmpeg("-i", str(RAVDESS_AV), "-frames:v", "1", "-an", "-c:v", "libx264", str(one))
    stream = media.frames(one, fps=10)
    chunks = list(stream)
    assert sum(len(c) for c in chunks) == 1
    assert chunks[0].shape == (1, 720, 1280, 3) and chunks[0].std() > 20
    assert "source rate" in stream.note
    out = tmp_path / "frames.h5"
    assert extract_frames("one", str(one), out, fps=10, max_side=320) == ""
    with h5py.File(out) as f:
        assert f["frames"].shape == (1, 180, 320, 3)


# --- 4. rotation metadata -----------------------------------------------------------


def test_rotated_phone_clip_decodes_upright(tmp_path):
    # As a phone writes it: the pixels stored sideways, a display matrix that turns them
    # back. ffmpeg's display_rotation is counter-clockwise; transpose=1 turns clockwise.
    sideways = tmp_path / "sideways.mp4"
    ffmpeg("-i", str(RAVDESS_AV), "-vf", "transpose=1", "-an", "-c:v", "libx264", str(sideways))
    phone = tmp_path / "phone.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(sideways), "-c", "copy", str(phone))
    assert media.probe(sideways).video.width == 720
    shown = media.probe(phone).video
    assert (shown.width, shown.height) == (1280, 720)  # as displayed
    tagged = np.concatenate(list(media.frames(phone, fps=10, max_side=320)))
    plain = np.concatenate(list(media.frames(RAVDESS_AV, fps=10, max_side=320)))
    assert tagged.shape[1:] == plain.shape[1:] == (180, 320, 3)
    n = min(len(tagged), len(plain))
    # Upright and undistorted: the same pixels as the untagged clip, up to the re-encoding.
    assert np.abs(tagged[:n].astype(int) - plain[:n]).mean() < 6
    coverage = {}
    for name, clip in (("phone", phone), ("plain", RAVDESS_AV)):
        frames, faces = tmp_path / f"{name}.frames.h5", tmp_path / f"{name}.faces.h5"
        assert extract_frames(name, str(clip), frames, fps=10, max_side=640) == ""
        assert align_faces(name, frames, faces, **FACES) == ""
        meta = cache.attrs(faces)
        coverage[name] = meta["n_found"] / meta["n_frames"]
    assert coverage["plain"] > 0.9 and abs(coverage["phone"] - coverage["plain"]) < 0.05


def test_rotation_tag_alone_is_obeyed(tmp_path):
    # An upright clip tagged with a rotation is displayed sideways: frames follow the tag.
    tagged = tmp_path / "tagged.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(RAVDESS_AV), "-c", "copy", str(tagged))
    shown = media.probe(tagged).video
    assert (shown.width, shown.height) == (720, 1280)
    first = next(iter(media.frames(tagged, fps=10, max_side=320)))
    assert first.shape[1:] == (320, 180, 3)
    upright = next(iter(media.frames(RAVDESS_AV, fps=10, max_side=320)))
    turned = np.rot90(upright[0], k=1)  # counter-clockwise, as the tag says
    assert np.abs(first[0].astype(int) - turned).mean() < 6


# --- 5. ffmpeg time limits and a probe metadata cannot fool -------------------------


def test_probe_is_not_fooled_by_metadata(tmp_path):
    tagged = tmp_path / "tagged.mkv"
    ffmpeg(
        "-i",
        str(RAVDESS_AV),
        "-c",
        "copy",
        "-metadata",
        "title=Duration: 99:00:00.00, start: 0",
        "-metadata",
        "comment=x\n  Stream #0:7: Video: h264, 64x64, 5 fps\n      rotate          : 90",
        "-metadata:s:v",
        "note=Display Matrix: rotation of 90.00 degrees",
        "-metadata:s:v",
        "Stream #0:0: Video: h264=16x16, 1 fps",
        str(tagged),
    )
    got, want = media.probe(tagged), media.probe(RAVDESS_AV)
    assert got.video == want.video and got.audio == want.audio
    assert abs(got.duration - want.duration) < 0.1


def test_probe_time_limit(monkeypatch):
    monkeypatch.setattr(media, "PROBE_TIMEOUT_S", 0.001)
    with pytest.raises(BadClipError, match="could not read its header in 0.001 s"):
        media.probe(RAVDESS_AV)


def test_audio_decode_time_limit(monkeypatch):
    info = media.probe(RAVDESS_AV)
    monkeypatch.setattr(media, "DECODE_TIMEOUT_S", 0.001)
    monkeypatch.setattr(media, "DECODE_S_PER_S", 0.0)
    with pytest.raises(BadClipError, match="audio decoding took over 0.001 s"):
        media.audio(RAVDESS_AV, info=info)


def test_frame_stream_watchdog(monkeypatch):
    info = media.probe(RAVDESS_AV)
    monkeypatch.setattr(media, "STALL_TIMEOUT_S", 0.001)
    with pytest.raises(BadClipError, match="ffmpeg sent no frame for 0.001 s"):
        list(media.frames(RAVDESS_AV, info=info))


# --- 6. a hostile file name in the sheet --------------------------------------------


def test_hash_space_ampersand_and_accents_in_a_clip_path(tmp_path):
    folder = tmp_path / "take #2 & co"
    folder.mkdir()
    clip = folder / "1001 DFA #1 & ANG é.flv"
    shutil.copy(CREMA_D, clip)
    path = tmp_path / "clips.tsv"
    rows = [sheet.Clip("crema_hash", str(clip), "angry", "1001", "train")]
    sheet.write(rows, path)
    text = path.read_text(encoding="utf-8")
    path.write_text("# a comment line\n" + text, encoding="utf-8")
    read = sheet.read(path)
    assert list(read.index) == ["crema_hash"]
    assert read.loc["crema_hash", "path"] == str(clip.resolve())
    assert read.loc["crema_hash", "speaker"] == "1001"
    out = tmp_path / "audio.h5"
    assert extract_audio("crema_hash", read.loc["crema_hash", "path"], out, 16000, -60) == ""
    assert abs(cache.attrs(out)["seconds"] - 2.235) < 0.1


# --- 7. non-finite values -----------------------------------------------------------


def test_scores_with_nan_are_refused_naming_file_and_clip(tmp_path):
    path = tmp_path / "scores.tsv"
    rows = np.array([[0.5, 0.5], [np.nan, 1.0]])
    with pytest.raises(ValueError, match=r"scores.tsv: clip 'b': score row holds NaN"):
        scores.write(path, ["a", "b"], ["test", "test"], rows, ["happy", "sad"])
    assert not path.exists()
    path.write_text("clip\tsplit\thappy\tsad\na\ttest\t0.5\t0.5\nb\ttest\tinf\t0\n")
    with pytest.raises(ConfigError, match=r"scores.tsv: row of clip 'b' holds NaN or infinity"):
        scores.read(path, ["happy", "sad"])


def test_non_finite_opensmile_features_make_the_clip_unheard(tmp_path, monkeypatch):
    audio_h5 = tmp_path / "audio.h5"
    assert extract_audio("speech", str(SPEECH_NEUTRAL), audio_h5, 16000, -60) == ""
    real = msff.audio.opensmile_functionals

    def with_nan(waveform, sample_rate, feature_set):  # the real features, one made NaN
        values, names = real(waveform, sample_rate, feature_set)
        values = values.copy()
        values[7] = np.nan
        return values, names

    monkeypatch.setattr(msff.audio, "opensmile_functionals", with_nan)
    out = tmp_path / "opensmile.h5"
    error = opensmile("speech", audio_h5, out)
    assert error.startswith("clip speech: ") and "non-finite openSMILE features" in error
    assert "1 of 384" in error and cache.attrs(out)["error"] == error
    assert _features(str(out))[0] is None  # the SVM stage scores it as unheard


# --- 8. open file handles of the training data sets ---------------------------------


def test_face_dataset_keeps_a_bounded_number_of_files_open(tmp_path):
    frames, faces = tmp_path / "frames.h5", tmp_path / "faces.h5"
    assert extract_frames("w009", str(MEAD_FRONT), frames, fps=2, max_side=256) == ""
    assert align_faces("w009", frames, faces, **{**FACES, "size": 48}) == ""
    copies = []
    for i in range(220):
        copies.append(tmp_path / f"faces{i}.h5")
        shutil.copy(faces, copies[-1])
    reference = cache.read_faces(faces)["faces"]
    data = datasets.FaceFrames(
        copies, [0] * len(copies), 48, lambda x: torch.from_numpy(x), augment=False
    )
    before = len(os.listdir("/proc/self/fd"))
    peak = 0
    for i in range(len(data)):
        face, _ = data[i]
        peak = max(peak, len(os.listdir("/proc/self/fd")) - before)
        _, row = data.items[i]
        assert np.array_equal(face.numpy(), reference[row])
    assert len(data.items) > 220 and len(set(data.owner)) == 220
    assert 0 < peak <= datasets.MAX_OPEN_FILES
    data.open.close()
    assert len(os.listdir("/proc/self/fd")) <= before


# --- 9. temporary files of killed writers -------------------------------------------


WRITER = """
import sys
from msff import cache
with cache.atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half")
    print(tmp, flush=True)
    sys.stdin.read()
"""


def writer(target: Path) -> tuple[subprocess.Popen, Path]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    return proc, Path(proc.stdout.readline().strip())


def test_temporary_file_of_a_killed_job_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "scores.tsv"
    killed, orphan = writer(target)
    live, busy = writer(target)
    assert orphan.read_text() == "half" and busy.exists()
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert orphan.exists()  # SIGKILL leaves it behind
    cache.write_text(target, "done")
    assert target.read_text() == "done"
    assert not orphan.exists()
    assert leftovers(tmp_path) == [busy.name]  # a live writer's file is its own
    live.communicate("")
    assert live.returncode == 0 and leftovers(tmp_path) == []
    assert target.read_text() == "half"  # the live writer finished its write
