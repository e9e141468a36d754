"""Shared fixtures: the real recordings in ../shared/data and bad clips made from them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from msff import config, media

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

# One real clip of each kind the workflow must handle.
RAVDESS_AV = DATA / "ravdess_av" / "01-01-03-01-01-02-05.mp4"  # 1280x720, speech, happy
RAVDESS_SILENT = DATA / "ravdess_av" / "02-01-04-01-01-01-05.mp4"  # video-only take, silent track
CREMA_D = DATA / "crema_d" / "1001_DFA_ANG_XX.flv"  # 480x360, speech, angry
MEAD_FRONT = DATA / "mead_front" / "W009_front_happy_level3_001.mp4"  # 256x256 face crop, no audio
MEAD_DAMAGED = DATA / "mead_samples" / "sad.mp4"  # truncated last packet, still decodes
SPEECH_NEUTRAL = DATA / "ravdess_speech" / "Actor_01" / "03-01-01-01-01-01-01.flac"
SPEECH_ANGRY = DATA / "ravdess_speech" / "Actor_01" / "03-01-05-02-01-01-01.flac"
CKPLUS = DATA / "ckplus48"  # 3-frame folders of 48x48 grey face crops (read here, never copied)


def pytest_sessionstart(session):
    # The tests run on real recordings; without them they would prove nothing.
    if not DATA.is_dir():
        raise pytest.UsageError(f"{DATA}: the real test recordings are missing")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def repo_config():
    return config.load(REPO / "config.yaml")


def ffmpeg(*args: str) -> None:
    subprocess.run([media.ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="session")
def bad_clips(tmp_path_factory) -> dict[str, Path]:
    """Bad inputs made from real clips: each one a case the workflow must survive."""
    folder = tmp_path_factory.mktemp("bad")
    clips = {}
    # The first quarter of a real RAVDESS file: the header promises 3.2 s, 0.8 s decode.
    clips["truncated"] = folder / "truncated.mp4"
    clips["truncated"].write_bytes(RAVDESS_AV.read_bytes()[:800_000])
    clips["empty"] = folder / "empty.mp4"
    clips["empty"].write_bytes(b"")
    # Real footage without a face: the bottom strip of a RAVDESS take (shirt and shoulders).
    clips["no_face"] = folder / "no_face.mp4"
    ffmpeg(
        "-i",
        str(RAVDESS_AV),
        "-vf",
        "crop=1280:160:0:560",
        "-an",
        "-c:v",
        "libx264",
        "-crf",
        "30",
        str(clips["no_face"]),
    )
    clips["missing"] = folder / "does_not_exist.mp4"
    return clips


@pytest.fixture(scope="session")
def frame_folder(tmp_path_factory) -> Path:
    """A real clip as a folder of PNG frames named frame1 ... frame20 (natural order)."""
    folder = tmp_path_factory.mktemp("frame_folder") / "W009_happy"
    folder.mkdir()
    ffmpeg("-i", str(MEAD_FRONT), "-vf", "fps=10", "-frames:v", "20", str(folder / "frame%d.png"))
    return folder
