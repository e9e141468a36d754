import hashlib
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from msff import media
from msff.errors import BadClipError
from msff.stages.media import extract_frames

from .conftest import CREMA_D, MEAD_DAMAGED, MEAD_FRONT, RAVDESS_AV, SPEECH_NEUTRAL, ffmpeg


def test_ffmpeg_binary_is_found_without_a_system_package():
    exe = media.ffmpeg_exe()
    assert Path(exe).is_file() and os.access(exe, os.X_OK)


def test_configured_ffmpeg_that_does_not_exist():
    with pytest.raises(FileNotFoundError, match="ffmpeg='/no/ffmpeg'"):
        media.ffmpeg_exe("/no/ffmpeg")


@pytest.mark.parametrize(
    "path, video, audio",
    [
        (RAVDESS_AV, (1280, 720, 29.97), (48000, 2)),
        (CREMA_D, (480, 360, 29.97), (44100, 1)),
        (MEAD_FRONT, (256, 256, 25.0), None),
        (SPEECH_NEUTRAL, None, (16000, 1)),
    ],
)
def test_probe_real_clips(path, video, audio):
    info = media.probe(path)
    got_video = info.video and (info.video.width, info.video.height, info.video.fps)
    got_audio = info.audio and (info.audio.sample_rate, info.audio.channels)
    assert (got_video or None) == video
    assert (got_audio or None) == audio
    assert 1.5 < info.duration < 4.5


def test_frames_stream_in_chunks_at_the_asked_rate_and_size():
    stream = media.frames(RAVDESS_AV, fps=10, max_side=320, chunk=8)
    chunks = list(stream)
    assert all(c.shape[1:] == (180, 320, 3) and c.dtype == np.uint8 for c in chunks)
    assert max(len(c) for c in chunks) == 8
    n = sum(len(c) for c in chunks)
    assert abs(n - 10 * media.probe(RAVDESS_AV).duration) <= 2
    assert chunks[0].std() > 20  # real footage, not a blank frame


def test_frames_at_source_rate_and_size():
    n = sum(len(c) for c in media.frames(CREMA_D))
    assert abs(n - 29.97 * 2.235) <= 3


def test_audio_is_16k_mono_float():
    waveform = media.audio(CREMA_D, 16000)
    assert waveform.dtype == np.float32 and waveform.ndim == 1
    assert abs(len(waveform) / 16000 - 2.235) < 0.1
    assert 0.05 < np.abs(waveform).max() <= 1.0


def test_damaged_clip_decodes_with_a_note():
    stream = media.frames(MEAD_DAMAGED, fps=10)
    n = sum(len(c) for c in stream)
    assert n > 40
    assert stream.note.startswith("damaged file:") and "6.28 s declared" in stream.note


def test_loudest_level_tells_quiet_speech_from_a_silent_track():
    quiet_sad = media.audio(RAVDESS_AV.with_name("01-01-04-01-01-01-05.mp4"))
    silent = media.audio(RAVDESS_AV.with_name("02-01-04-01-01-01-05.mp4"))
    assert media.loudest_dbfs(quiet_sad, 16000) > -60
    assert media.loudest_dbfs(silent, 16000) < -60
    assert media.loudest_dbfs(np.zeros(0, np.float32), 16000) == float("-inf")


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "no such file"),
        ("empty", "empty file \\(0 bytes\\)"),
        ("truncated", "truncated or damaged: 0.\\d\\d s of video decoded, 3.24 s declared"),
    ],
)
def test_bad_video_names_the_file_and_the_problem(bad_clips, case, message):
    path = bad_clips[case]
    with pytest.raises(BadClipError, match=f"{path.name}: {message}"):
        list(media.frames(path))


def test_no_audio_stream_is_named():
    with pytest.raises(BadClipError, match=f"{MEAD_FRONT.name}: no audio stream"):
        media.audio(MEAD_FRONT)


def test_no_video_stream_is_named():
    with pytest.raises(BadClipError, match=f"{SPEECH_NEUTRAL.name}: no video stream"):
        media.frames(SPEECH_NEUTRAL)


def test_not_a_media_file(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is text, not a video\n" * 100)
    with pytest.raises(BadClipError, match="notes.mp4: not a readable media file"):
        media.probe(path)


# --- the paper preset's decode: source size, but bounded (issue 17) ------------------


def test_paper_preset_decodes_4k_at_its_size_and_caps_8k(repo_config):
    frames = repo_config["presets"]["paper"]["frames"]
    assert frames["max_side"] is None and frames["max_pixels"] == 3840 * 2160
    assert media.output_size(3840, 2160, None, frames["max_pixels"]) == (3840, 2160)
    assert media.output_size(720, 576, None, frames["max_pixels"]) == (720, 576)  # AFEW
    assert media.output_size(7680, 4320, None, frames["max_pixels"]) == (3840, 2160)
    w, h = media.output_size(20000, 20000, None, frames["max_pixels"])  # a corrupt header
    assert w == h and w * h <= frames["max_pixels"] and w > 2800
    assert media.output_size(1280, 720, 640, frames["max_pixels"]) == (640, 360)


def test_an_8k_clip_decodes_capped_in_chunks_of_bounded_bytes(tmp_path, repo_config):
    big = tmp_path / "8k.mp4"
    ffmpeg(
        *("-i", str(RAVDESS_AV), "-t", "0.5", "-vf", "scale=7680:4320", "-an"),
        *("-c:v", "libx264", "-preset", "ultrafast", str(big)),
    )
    assert (media.probe(big).video.width, media.probe(big).video.height) == (7680, 4320)
    paper = repo_config["presets"]["paper"]["frames"]
    stream = media.frames(big, **paper)
    assert (stream.width, stream.height) == (3840, 2160)
    frame_bytes = 3840 * 2160 * 3
    assert stream.chunk == media.CHUNK_BYTES // frame_bytes < 32
    sizes, chunked = [], hashlib.sha256()
    for c in stream:
        sizes.append(c.nbytes)
        chunked.update(c.tobytes())
    assert max(sizes) <= media.CHUNK_BYTES and len(sizes) > 1
    assert sum(sizes) == 15 * frame_bytes  # every frame of 0.5 s at 29.97 fps
    # The same pixels as a decode frame by frame: chunking changes memory, not frames.
    single = hashlib.sha256()
    for c in media.frames(big, **paper, chunk=1):
        single.update(c.tobytes())
    assert chunked.digest() == single.digest()
    out = tmp_path / "frames.h5"
    assert extract_frames("big", str(big), out, **paper) == ""
    with h5py.File(out) as f:
        assert f["frames"].shape == (15, 2160, 3840, 3)
        assert f.attrs["source_width"] == 7680
