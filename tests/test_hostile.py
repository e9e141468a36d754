"""Every hostile input, made from real recordings, ends with a cache per stage; none raises.

The per-clip stages (extract_frames -> align_faces, extract_audio -> spectrograms and
opensmile) run on each case; each stage writes its cache, holding data or an error that
names the clip. The cases are conftest's ``hostile_clips``; test_workflow runs them all
through one Snakemake run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from msff import cache
from msff.stages.audio import opensmile, spectrograms
from msff.stages.faces import align_faces
from msff.stages.media import extract_audio, extract_frames

from .test_robust import FACES

# case: (frames decode, a face is found, the audio is heard)
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
    # The middle third of the file is noise: ffmpeg skips the packets it cannot decode, and
    # what is left still holds faces and 2.2 of 3.2 s of speech (noted as damaged).
    "random_middle": (True, True, True),
    "bad_frame_folder": (False, False, False),
}


def ended(path: Path, case: str) -> str:
    """The cache's error, after checking the cache is there and names the clip."""
    meta = cache.attrs(path)
    assert meta["clip"] == case
    assert meta["error"] == "" or meta["error"].startswith(f"clip {case}: ")
    return meta["error"]


@pytest.mark.parametrize("case", list(EXPECT))
def test_every_stage_ends_with_a_cache(tmp_path, hostile_clips, case):
    source = str(hostile_clips[case])
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
    found = 0 if errors["faces"] else cache.attrs(faces)["n_found"]
    assert (found > 0) == face, (case, found)
    assert (errors["audio"] == errors["spectro"] == errors["smile"] == "") == heard, errors
