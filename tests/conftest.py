"""Shared fixtures: the real recordings in ../shared/data and bad clips made from them."""

from __future__ import annotations

import shutil
import subprocess
import zlib
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


def giant_png(path: Path, side: int = 20000) -> None:
    """A one-colour ``side`` x ``side`` 1-bit PNG, written row by row (a few kB on disk)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = side.to_bytes(4, "big") * 2 + bytes([1, 0, 0, 0, 0])  # 1 bit, grey
    packer = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then black pixels
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="session")
def hostile_clips(tmp_path_factory, bad_clips, frame_folder) -> dict[str, Path]:
    """Every hostile input of issue 17, made from real clips: case -> file or frame folder."""
    folder = tmp_path_factory.mktemp("hostile")
    one_second = ["-t", "1", "-c:v", "libx264", "-crf", "30", "-preset", "veryfast"]
    clips = {"empty": bad_clips["empty"], "truncated": bad_clips["truncated"]}
    clips["text_as_mp4"] = folder / "text.mp4"
    clips["text_as_mp4"].write_text("this is a text file, not a video\n" * 200)
    clips["wav_as_mp4"] = folder / "speech.mp4"
    ffmpeg("-i", str(SPEECH_NEUTRAL), "-f", "wav", str(clips["wav_as_mp4"]))
    clips["no_audio_stream"] = MEAD_FRONT
    clips["audio_only"] = SPEECH_NEUTRAL
    clips["no_face"] = bad_clips["no_face"]
    clips["two_faces"] = folder / "two_faces.mp4"
    ffmpeg(
        *("-i", str(RAVDESS_AV), "-i", str(RAVDESS_AV.with_name("01-01-04-01-01-01-05.mp4"))),
        *("-filter_complex", "[0:v][1:v]hstack=inputs=2,scale=1280:-2[v]", "-map", "[v]"),
        *("-map", "0:a", *one_second, str(clips["two_faces"])),
    )
    sideways = folder / "sideways.mp4"
    ffmpeg("-i", str(RAVDESS_AV), "-vf", "transpose=1", *one_second, str(sideways))
    clips["rotation_tag"] = folder / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(sideways), "-c", "copy", str(clips["rotation_tag"]))
    clips["greyscale"] = folder / "grey.mp4"
    ffmpeg("-i", str(RAVDESS_AV), "-vf", "format=gray", *one_second, str(clips["greyscale"]))
    clips["single_frame"] = folder / "one.mp4"
    ffmpeg(
        "-i",
        str(RAVDESS_AV),
        "-frames:v",
        "1",
        "-an",
        "-c:v",
        "libx264",
        str(clips["single_frame"]),
    )
    clips["tiny_64x36"] = folder / "tiny.mp4"
    ffmpeg("-i", str(RAVDESS_AV), "-vf", "scale=64:36", *one_second, str(clips["tiny_64x36"]))
    odd = folder / "take #2 & co"
    odd.mkdir()
    clips["hostile_name"] = odd / "happy 'é' #1 & (copy).mp4"
    ffmpeg("-i", str(RAVDESS_AV), *one_second, str(clips["hostile_name"]))
    data = bytearray(RAVDESS_AV.read_bytes())
    third = len(data) // 3
    data[third : 2 * third] = np.random.default_rng(0).bytes(third)
    clips["random_middle"] = folder / "random_middle.mp4"
    clips["random_middle"].write_bytes(bytes(data))
    clips["bad_frame_folder"] = folder / "frames"
    shutil.copytree(frame_folder, clips["bad_frame_folder"])
    png = (clips["bad_frame_folder"] / "frame5.png").read_bytes()
    (clips["bad_frame_folder"] / "frame5.png").write_bytes(png[: len(png) // 3])
    giant_png(clips["bad_frame_folder"] / "frame9.png")
    return clips
