"""The HDF5 layouts of every per-clip cache, in one place, written atomically.

Every cache file carries the attributes ``clip``, ``error`` (empty when the stage
succeeded) and ``note`` (what a reader should know: no audio stream, silent track,
frames without a face); one written by a workflow job also carries ``fingerprint``,
what it was made from (``msff.shards``). A stage that fails on a bad clip still writes
its file, with ``error`` set and empty datasets, so the run goes on and the qc table can
report it; a half-written file is never left behind.

Layouts (N frames, S aligned-face side, K segments, R rate scales):

========== =========================================================================
frames     ``frames`` (N, H, W, 3) uint8 RGB; attrs ``fps``, ``source_fps``,
           ``source_width``, ``source_height``
faces      ``faces`` (N, S, S, 3) uint8 (zeros where no face), ``found`` (N,) bool,
           ``frame_index`` (N,) int32, ``box`` (N, 4) float32 x1 y1 x2 y2,
           ``landmarks`` (N, 5, 2) float32 (eyes, nose, mouth corners, in frame
           pixels), ``prob`` (N,) float32 (NaN where no face or not detected),
           ``detected`` (N,) bool (MTCNN ran on the frame; the landmarks of a found
           face on a frame not detected are interpolated); attrs ``fps``,
           ``template`` (5, 2), ``track_resets``, ``n_frames``, ``n_found``,
           ``n_detected``, ``detect_every``; ``face_input`` = precropped when the frames
           were face crops (no detection: ``found`` all true, ``detected`` all false)
audio      ``waveform`` (T,) float32 mono; attrs ``sample_rate``, ``seconds``,
           ``loudest_dbfs`` (RMS of the loudest 100 ms), ``silent``
spectrogram ``images`` (R, K, size, size) uint8 (0 = top_db below the clip's peak,
           255 = the peak; low frequencies in the last row), ``scales`` (R,),
           ``segment_start_s`` (K,), ``segment_peak_db`` (R, K) float32 (each image's
           loudest pixel in dB under the clip's peak, -top_db when black); attrs
           ``segment_ms``, ``overlap``, ``silent``, ``spectrogram`` (stft or logmel),
           ``top_db``, ``window_ms``, ``hop_ms``; logmel also ``n_mels``, ``fmin`` and
           ``fmax`` when config sets one (else the scale's Nyquist frequency)
opensmile  ``features`` (D,) float32, ``feature_names`` (D,) str; attrs ``feature_set``,
           ``functional_windows`` (1, or the windows a long ComParE clip was averaged over)
========== =========================================================================

One file per model, not per clip:

========== =========================================================================
features   one dataset per clip, named by its id: (n_i, D) float16 fc7
           features of its found faces (or heard segments), in frame order; (0, D)
           for a clip the CNN cannot see; attrs ``backbone``, ``fc_width``,
           ``weights`` (the report line of the CNN's weights), ``prior_classes``:
           D = fc_width + prior_classes, the last columns the backbone's own class
           log-probabilities when its head starts from them (0: none)
========== =========================================================================
"""

from __future__ import annotations

import contextvars
import glob
import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

import msff

# Stamped on every cache written while it is set: ``msff.shards.run_shard`` sets it to the
# fingerprint of the clip's cache it works on (the stage functions know nothing of shards).
FINGERPRINT: contextvars.ContextVar[str] = contextvars.ContextVar("fingerprint", default="")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporary files of ``path`` left by writers that were killed.

    A writer killed by a signal (SIGKILL, out of memory, a cluster's time limit) leaves
    its ``.{name}.{host}.{pid}.tmp``. Those written on this host by a process that is no
    longer alive are removed; another host's are left alone (its pids mean nothing here).
    Returns the removed paths.
    """
    path = Path(path)
    prefix, host = f".{path.name}.", socket.gethostname()
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        owner = tmp.name[len(prefix) : -len(".tmp")]
        where, _, pid = owner.rpartition(".")
        if not pid.isdigit() or where not in ("", host) or _alive(int(pid)):
            continue
        try:
            tmp.unlink()
        except FileNotFoundError:
            continue
        removed.append(tmp)
    return removed


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; renamed to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left as it was. Every
    output of msff (caches, scores, tables, models) is written through this. The
    temporary file is ``.{name}.{host}.{pid}.tmp``; those of earlier writers of ``path``
    that were killed are removed first (``remove_stale_temporaries``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically (see ``atomic_path``)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


@contextmanager
def atomic_h5(path: str | Path, clip: str) -> Iterator[h5py.File]:
    """Open ``path`` for writing through a temporary file renamed into place on success.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["clip"] = clip
        f.attrs["error"] = ""
        f.attrs["note"] = ""
        f.attrs["msff_version"] = msff.__version__
        if FINGERPRINT.get():
            f.attrs["fingerprint"] = FINGERPRINT.get()
        yield f


def write_error(path: str | Path, clip: str, error: str) -> None:
    """Write a cache file that records why this stage could not process the clip."""
    with atomic_h5(path, clip) as f:
        f.attrs["error"] = error


def attrs(path: str | Path) -> dict:
    """All attributes of a cache file, strings decoded."""
    with h5py.File(path, "r") as f:
        return {k: _plain(v) for k, v in f.attrs.items()}


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def frame_chunks(path: str | Path, chunk: int = 32) -> Iterator[np.ndarray]:
    """Read the ``frames`` of a frames cache in chunks, never all at once."""
    with h5py.File(path, "r") as f:
        frames = f["frames"]
        for start in range(0, len(frames), chunk):
            yield frames[start : start + chunk]


class FrameWriter:
    """Append frames chunk by chunk to an open cache file (resizable, one HDF5 chunk a frame).

    Not compressed: the frames cache is temporary (read once by align_faces), and LZF made
    extract_frames 1.72x a bare ffmpeg decode against 1.24x without (bench/stages.py), for
    3.7x the bytes while it exists (align_faces has the rule priority that deletes it soon).
    """

    def __init__(self, f: h5py.File, height: int, width: int):
        self.dataset = f.create_dataset(
            "frames",
            shape=(0, height, width, 3),
            maxshape=(None, height, width, 3),
            dtype=np.uint8,
            chunks=(1, height, width, 3),
        )

    def append(self, frames: np.ndarray) -> None:
        """Add ``(n, H, W, 3)`` frames at the end."""
        n = len(self.dataset)
        self.dataset.resize(n + len(frames), axis=0)
        self.dataset[n:] = frames


class FaceWriter:
    """Append aligned faces and their detections chunk by chunk."""

    def __init__(self, f: h5py.File, size: int):
        def grow(name, shape, dtype, rows_per_chunk=256, **kw):
            return f.create_dataset(
                name,
                shape=(0, *shape),
                maxshape=(None, *shape),
                dtype=dtype,
                chunks=(rows_per_chunk, *shape),
                **kw,
            )

        self.datasets = {
            # One face per HDF5 chunk: a training loader reads single faces at random. LZF,
            # not gzip: measured (bench/README.md) 1.7x the write and 1.5x the random-read
            # speed of gzip level 1 for 10 % more bytes; uncompressed is 1.6x the bytes.
            "faces": grow("faces", (size, size, 3), np.uint8, 1, compression="lzf"),
            "found": grow("found", (), bool),
            "detected": grow("detected", (), bool),
            "frame_index": grow("frame_index", (), np.int32),
            "box": grow("box", (4,), np.float32),
            "landmarks": grow("landmarks", (5, 2), np.float32),
            "prob": grow("prob", (), np.float32),
        }

    def append(self, **arrays: np.ndarray) -> None:
        """Add one chunk: the same number of rows for every dataset, by name."""
        for name, data in arrays.items():
            ds = self.datasets[name]
            n = len(ds)
            ds.resize(n + len(data), axis=0)
            ds[n:] = data


def read_face_rows(path: str | Path, rows: np.ndarray) -> np.ndarray:
    """The aligned faces of some rows of a faces cache (increasing row indices)."""
    with h5py.File(path, "r") as f:
        return f["faces"][np.asarray(rows)]


def read_faces(path: str | Path) -> dict:
    """Every dataset and attribute of a faces cache, as arrays (loads the faces)."""
    with h5py.File(path, "r") as f:
        out = {k: f[k][()] for k in f}
        out["attrs"] = {k: _plain(v) for k, v in f.attrs.items()}
    return out


def write_features(
    path: str | Path, attrs: dict, per_clip: Iterable[tuple[str, np.ndarray]]
) -> None:
    """Write a features file (layout above) from ``(clip, (n, D) array)`` pairs, atomically.

    Stored as float16: fc7 activations lose nothing a BLSTM can use, at half the bytes.
    """
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(attrs)
        for clip, features in per_clip:
            f.create_dataset(
                clip, data=features.astype(np.float16), compression="gzip", compression_opts=1
            )


def read_features(path: str | Path, clips: Sequence[str]) -> tuple[list[np.ndarray], dict]:
    """The float32 features of ``clips`` (in that order) and the file's attributes."""
    with h5py.File(path, "r") as f:
        return [f[c][()].astype(np.float32) for c in clips], {
            k: _plain(v) for k, v in f.attrs.items()
        }
