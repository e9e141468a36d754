"""Every hostile input, made from real recordings, ends with a cache per stage; none raises.

The per-clip stages (extract_frames -> align_faces, extract_audio -> spectrograms and
opensmile) run on each case; each stage writes its cache, holding data or an error that
names the clip. (A full workflow run over the same files belongs to test_workflow.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from msff import cache
from msff.stages.audio import opensmile, spectrograms
from msff.stages.faces import align_faces
from msff.stages.media import extract_audio, extract_frames

from .conftest import MEAD_FRONT, RAVDESS_AV, SPEECH_NEUTRAL, ffmpeg
from .test_robust import FACES, giant_png

# case: (frames decode, a face is found (None: either), the audio is heard)
EXPECT = {
    "empty": (False, False, False),
    "truncated": (False, False, False),
    "text_as_mp4": (False, False, False),
    "wav_as_mp4": (False, False, True),
    "no_audio_stream": (True, True, False),
    "audio_only": (False, False, True),
    "no_face": (True, False, False),
    "two_faces": (True, True, True),
    "rotation_tag": (True, True, True),
    "greyscale": (True, True, True),
    "single_frame": (True, True, False),
    "tiny_64x36": (True, False, True),
    "hostile_name": (True, True, True),
    "random_middle": (True, None, None),
    "bad_frame_folder": (False, False, False),
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, bad_clips, frame_folder) -> dict[str, Path]:
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


def ended(path: Path, case: str) -> str:
    """The cache's error, after checking the cache is there and names the clip."""
    meta = cache.attrs(path)
    assert meta["clip"] == case
    assert meta["error"] == "" or meta["error"].startswith(f"clip {case}: ")
    return meta["error"]


@pytest.mark.parametrize("case", list(EXPECT))
def test_every_stage_ends_with_a_cache(tmp_path, hostile, case):
    source = str(hostile[case])
    frames, faces = tmp_path / "frames.h5", tmp_path / "faces.h5"
    extract_frames(case, source, frames, fps=5, max_side=320)
    align_faces(case, frames, faces, **{**FACES, "detect_max_side": 320})
    audio, spectro, smile = tmp_path / "audio.h5", tmp_path / "spectro.h5", tmp_path / "smile.h5"
    extract_audio(case, source, audio, 16000, -60)
    spectrograms(case, audio, spectro, [1.0], 300, 0.5, 25, 5, 32, 80)
    opensmile(case, audio, smile)
    errors = {p.stem: ended(p, case) for p in (frames, faces, audio, spectro, smile)}
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    decodes, face, heard = EXPECT[case]
    assert (errors["frames"] == "") == decodes, errors
    assert bool(errors["faces"]) == bool(errors["frames"]), errors
    if face is not None:
        found = 0 if errors["faces"] else cache.attrs(faces)["n_found"]
        assert (found > 0) == face, (case, found)
    if heard is not None:
        assert (errors["audio"] == errors["spectro"] == errors["smile"] == "") == heard, errors
