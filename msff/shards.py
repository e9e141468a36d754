"""Per-clip stages run over shards of clips: one process per shard of clips, not per clip.

A Snakemake job per clip and stage costs about a second of Python start-up, and up to ten
of importing torch, against milliseconds to half a second of work on a short clip
(bench/README.md, "Preprocessing through the DAG"). So each per-clip stage runs as one job
per shard: a fixed set of clips, chosen by a hash of the clip id (``shard_of``), so adding
a clip changes one shard and leaves the others as they were.

Per-clip incrementality lives inside the job. Every cache is stamped with a fingerprint
of what made it: the stage's settings, the digest of its code, and its input (the source
file's size and modification time, or the upstream cache's own fingerprint). A job skips
each clip whose cache already carries the fingerprint it would get, so the rerun of a
shard after one clip joined it does that clip's work only, and an edit to the spectrogram
code redoes every clip's spectrograms but not their audio. A clip keeps its own cache and
its own log (``logs/<stage>/<clip>.log``, rewritten only when the clip is worked on);
the shard's manifest (clip, fingerprint, error) is the job's Snakemake output.

A bad clip is recorded alone, as before: the stage functions turn any exception into an
error cache (``msff.stages.recording_bad_clips``). A clip that kills the process itself
(the kernel's out-of-memory killer, a crash in native code) is named in the shard's
marker file while it is worked on: after two attempts died on it in a row, the next
records it as bad and goes on. One death is not enough, so a run the user killed and
restarts does the clip again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd

from msff import cache
from msff.logs import FORMAT

log = logging.getLogger("msff")


def shard_of(clip: str, shards: int) -> int:
    """The shard of ``clip`` among ``shards``: a hash of its id, the same on every machine."""
    digest = hashlib.sha256(clip.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def shard_clips(clips: Iterable[str], shards: int) -> dict[int, list[str]]:
    """Shard -> its clips (sheet order), for the shards that hold any."""
    by_shard: dict[int, list[str]] = {}
    for clip in clips:
        by_shard.setdefault(shard_of(clip, shards), []).append(clip)
    return dict(sorted(by_shard.items()))


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def code_digest(files: Sequence[str | Path]) -> str:
    """Digest of the contents of ``files``: a touched but unchanged file changes nothing."""
    sha = hashlib.sha256()
    for path in sorted(map(str, files)):
        sha.update(path.encode() + b"\0" + Path(path).read_bytes() + b"\0")
    return sha.hexdigest()


def input_digest(path: str | Path) -> str:
    """What a clip's cache is made from: an upstream cache's fingerprint, else the file's stat.

    A source file: its size and modification time; a frame folder: those of each entry;
    a missing path: "missing" (its error cache is redone once the file appears).
    """
    path = Path(path)
    if not path.exists():
        return "missing"
    if path.is_dir():
        return _digest([(p.name, *_stat(p)) for p in sorted(path.iterdir())])
    if path.suffix == ".h5":
        stamped = _stamp(path)
        if stamped:
            return stamped
    return _digest(str(path), *_stat(path))


def _stat(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _stamp(path: str | Path) -> str:
    """The fingerprint a cache carries; "" when it has none or cannot be read."""
    return str(_attrs(path).get("fingerprint", ""))


def _attrs(path: str | Path) -> dict:
    """A cache's attributes; {} when it is missing or cannot be read (then it is redone)."""
    try:
        return cache.attrs(path)
    except (OSError, KeyError):
        return {}


def fingerprint(settings: dict, code: str, clip: dict) -> str:
    """The fingerprint of a clip's cache: settings, code digest, the clip's job and inputs.

    The clip's job (its id, source path, per-clip settings such as ``face_input``) counts
    as a whole, except where its log goes.
    """
    job = {k: v for k, v in clip.items() if k != "log"}
    return _digest(settings, code, job, [input_digest(p) for p in clip["inputs"]])


class _ClipLog:
    """The clip's own log file, fed by the ``msff`` logger while the clip is worked on."""

    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(path, mode="w")
        self.handler.setFormatter(logging.Formatter(FORMAT))

    def __enter__(self):
        log.addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        log.removeHandler(self.handler)
        self.handler.close()


def run_shard(
    clips: Sequence[dict],
    work: Callable[[dict], str],
    manifest: str | Path,
    settings: dict,
    code: Sequence[str | Path],
) -> pd.DataFrame:
    """Run ``work`` on each clip of a shard whose cache is not up to date; write the manifest.

    Each clip is a dict with at least ``clip``, ``inputs`` (the files its cache is made
    from), ``out`` (its cache) and ``log`` (its log); ``work(clip)`` writes ``out`` and
    returns the clip's error or "". Returns the manifest: clip, fingerprint, error, in
    the order of ``clips``.
    """
    code_hash = code_digest(code)
    marker = Path(manifest).with_name(f".{Path(manifest).name}.working")
    died_on, deaths = _read_marker(marker)
    rows, done = [], 0
    for clip in clips:
        stamp = fingerprint(settings, code_hash, clip)
        done_before = _attrs(clip["out"])  # one read: the fingerprint and the error
        if done_before.get("fingerprint") == stamp:
            error = str(done_before.get("error", ""))
        else:
            tries = deaths if clip["clip"] == died_on else 0
            token = cache.FINGERPRINT.set(stamp)
            try:
                with _ClipLog(clip["log"]):
                    if tries >= 2:
                        error = (
                            f"clip {clip['clip']}: the process died while working on it, "
                            f"{tries} times in a row (killed, or out of memory)"
                        )
                        log.error(error)
                        cache.write_error(clip["out"], clip["clip"], error)
                    else:
                        cache.write_text(marker, f"{clip['clip']}\t{tries + 1}\n")
                        error = work(clip)
            finally:
                cache.FINGERPRINT.reset(token)
            done += 1
        rows.append(dict(clip=clip["clip"], fingerprint=stamp, error=error))
    table = pd.DataFrame(rows, columns=["clip", "fingerprint", "error"])
    with cache.atomic_path(manifest) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    marker.unlink(missing_ok=True)
    log.info(
        "shard of %d clips: %d worked on, %d up to date; %d with an error",
        len(table),
        done,
        len(table) - done,
        int((table["error"] != "").sum()),
    )
    return table


def _read_marker(marker: Path) -> tuple[str, int]:
    """The clip an earlier attempt died on, and how many attempts in a row did."""
    try:
        clip, deaths = marker.read_text().rstrip("\n").rsplit("\t", 1)
        return clip, int(deaths)
    except (FileNotFoundError, ValueError):
        return "", 0
