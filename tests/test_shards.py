"""msff.shards: a per-clip stage over a shard of real clips, skipping what is up to date."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import pandas as pd
import pytest

from msff import cache, shards
from msff.stages.media import extract_audio

from .conftest import DATA, REPO

SPEECH = sorted((DATA / "ravdess_speech" / "Actor_01").glob("*.flac"))[:3]
SETTINGS = dict(sample_rate=16000, silence_dbfs=-60.0, ffmpeg=None)
CODE = [REPO / "msff" / "stages" / "media.py", REPO / "msff" / "shards.py"]


def jobs(folder: Path, sources: list[Path]) -> list[dict]:
    return [
        dict(
            clip=f"clip{i}",
            source=str(source),
            inputs=[str(source)],
            out=str(folder / "audio" / f"clip{i}.h5"),
            log=str(folder / "logs" / f"clip{i}.log"),
        )
        for i, source in enumerate(sources)
    ]


def decode(clip: dict) -> str:
    return extract_audio(clip["clip"], clip["source"], clip["out"], **SETTINGS)


def run(folder, clips, settings=SETTINGS, code=CODE):
    return shards.run_shard(clips, decode, folder / "manifest.tsv", settings, code)


def mtimes(paths) -> list[int]:
    return [Path(p).stat().st_mtime_ns for p in paths]


def test_shard_of_is_a_fixed_hash_of_the_id():
    # sha256 of the id, not Python's salted hash(): the same shard on every machine and run.
    assert shards.shard_of("a", 16) == int.from_bytes(bytes.fromhex("ca978112ca1bbdca"), "big") % 16
    grouped = shards.shard_clips([f"c{i}" for i in range(100)], 4)
    assert sorted(c for clips in grouped.values() for c in clips) == sorted(
        f"c{i}" for i in range(100)
    )
    assert all(len(clips) > 10 for clips in grouped.values())  # spread, not one shard


def test_a_rerun_does_only_the_clips_whose_inputs_settings_or_code_changed(tmp_path):
    clips = jobs(tmp_path, SPEECH)
    table = run(tmp_path, clips)
    assert list(table["clip"]) == ["clip0", "clip1", "clip2"] and (table["error"] == "").all()
    outs, logs = [c["out"] for c in clips], [c["log"] for c in clips]
    for clip in clips:
        with h5py.File(clip["out"]) as f:
            assert (
                f.attrs["fingerprint"] == table.set_index("clip").loc[clip["clip"], "fingerprint"]
            )
            assert len(f["waveform"]) > 16000
        assert Path(clip["log"]).exists()
    first = mtimes(outs + logs)
    manifest = (tmp_path / "manifest.tsv").read_text()

    # Nothing changed: nothing done, the same manifest.
    run(tmp_path, clips)
    assert mtimes(outs + logs) == first
    assert (tmp_path / "manifest.tsv").read_text() == manifest

    # One source file changed (a copy with a new time): that clip alone is redone.
    copy = tmp_path / "copy.flac"
    copy.write_bytes(SPEECH[1].read_bytes())
    clips[1] |= dict(source=str(copy), inputs=[str(copy)])
    run(tmp_path, clips)
    now = mtimes(outs + logs)
    assert [a != b for a, b in zip(first, now, strict=True)] == [False, True, False] * 2
    os.utime(copy, ns=(0, 0))
    run(tmp_path, clips)
    assert mtimes(outs)[1] != now[1] and mtimes(outs)[::2] == first[:3:2]

    # A setting of the stage, or its code: every clip redone.
    before = mtimes(outs)
    run(tmp_path, clips, settings=dict(SETTINGS, silence_dbfs=-50.0))
    assert all(a != b for a, b in zip(before, mtimes(outs), strict=True))
    before = mtimes(outs)
    code = tmp_path / "edited.py"
    code.write_text(CODE[0].read_text() + "\n# an edit\n")
    run(tmp_path, clips, settings=dict(SETTINGS, silence_dbfs=-50.0), code=[code, CODE[1]])
    assert all(a != b for a, b in zip(before, mtimes(outs), strict=True))
    # Touched but not changed: the digest is of the contents, nothing redone.
    before = mtimes(outs)
    os.utime(code)
    run(tmp_path, clips, settings=dict(SETTINGS, silence_dbfs=-50.0), code=[code, CODE[1]])
    assert mtimes(outs) == before


def test_a_bad_clip_is_recorded_alone_and_not_retried_until_its_file_changes(tmp_path):
    missing = tmp_path / "gone.flac"
    clips = jobs(tmp_path, [SPEECH[0], missing, SPEECH[2]])
    table = run(tmp_path, clips).set_index("clip")
    assert table.loc["clip1", "error"].startswith("clip clip1: ")
    assert str(missing) in table.loc["clip1", "error"]
    assert (table.loc[["clip0", "clip2"], "error"] == "").all()
    assert cache.attrs(clips[1]["out"])["error"] == table.loc["clip1", "error"]
    assert table.loc["clip1", "error"] in Path(clips[1]["log"]).read_text()
    before = mtimes(c["out"] for c in clips)
    run(tmp_path, clips)
    assert mtimes(c["out"] for c in clips) == before
    # The file appears: the clip is done again, and is fine.
    missing.write_bytes(SPEECH[1].read_bytes())
    table = run(tmp_path, clips).set_index("clip")
    assert (table["error"] == "").all()
    saved = pd.read_csv(tmp_path / "manifest.tsv", sep="\t", keep_default_na=False)
    assert list(saved.columns) == ["clip", "fingerprint", "error"] and len(saved) == 3


KILLER = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from msff import shards
from tests.test_shards import decode, jobs, SETTINGS, CODE, SPEECH

def work(clip):
    if clip["clip"] == "clip1":  # dies as the kernel's out-of-memory killer would kill it
        os.kill(os.getpid(), signal.SIGKILL)
    return decode(clip)

folder = Path({folder!r})
shards.run_shard(jobs(folder, SPEECH), work, folder / "manifest.tsv", SETTINGS, CODE)
"""


def test_a_clip_that_kills_the_process_twice_is_recorded_as_bad(tmp_path):
    script = KILLER.format(repo=str(REPO), folder=str(tmp_path))
    for attempt in (1, 2):
        proc = subprocess.run([sys.executable, "-c", script], cwd=REPO)
        assert proc.returncode == -9, attempt
        assert not (tmp_path / "manifest.tsv").exists()
        assert (tmp_path / ".manifest.tsv.working").read_text() == f"clip1\t{attempt}\n"
    # The first death is a clip to do again (a run the user killed); after the second in
    # a row the clip is recorded as bad and the shard goes on.
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO)
    assert proc.returncode == 0
    table = pd.read_csv(tmp_path / "manifest.tsv", sep="\t", keep_default_na=False)
    assert list(table["error"] == "") == [True, False, True]
    assert "the process died while working on it, 2 times in a row" in table["error"][1]
    assert cache.attrs(tmp_path / "audio" / "clip1.h5")["error"] == table["error"][1]
    assert not (tmp_path / ".manifest.tsv.working").exists()


@pytest.mark.parametrize("kind", ["folder", "missing"])
def test_input_digest_of_a_frame_folder_and_of_a_missing_file(tmp_path, kind):
    if kind == "missing":
        assert shards.input_digest(tmp_path / "nothing.mp4") == "missing"
        return
    folder = tmp_path / "seq"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes(b"x")
    before = shards.input_digest(folder)
    (folder / "b.png").write_bytes(b"xy")  # a frame replaced: a different folder
    assert shards.input_digest(folder) != before
