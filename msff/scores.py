"""The scores file: the one interface between every model and fusion / evaluation.

A TSV with one row per clip: ``clip``, ``split``, then one column per class (in the
config's class order) holding that clip's class probabilities; every row sums to 1.
A model that cannot see a clip (no face, no audio) writes the uniform row and says so
in the optional ``note`` column, so fusion and evaluation always cover every clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from msff import cache
from msff.errors import ConfigError

TOLERANCE = 1e-4


def uniform(n: int, n_classes: int) -> np.ndarray:
    """The score rows of clips a model cannot see: every class equally likely."""
    return np.full((n, n_classes), 1.0 / n_classes)


def write(
    path: str | Path,
    clips: Sequence[str],
    splits: Sequence[str],
    scores: np.ndarray,
    classes: Sequence[str],
    notes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Write a scores file atomically; raise ValueError for rows that are not probabilities.

    A NaN or infinite row is rejected too, naming the file and the clip.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(clips), len(classes)):
        raise ValueError(f"scores shape {scores.shape} != ({len(clips)}, {len(classes)})")
    finite = np.isfinite(scores).all(1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{path}: clip {clips[i]!r}: score row holds NaN or infinity")
    if (scores < -TOLERANCE).any() or np.abs(scores.sum(1) - 1).max(initial=0) > TOLERANCE:
        raise ValueError(f"{path}: score rows must be probabilities summing to 1")
    table = pd.DataFrame(scores, columns=list(classes))
    table.insert(0, "split", list(splits))
    table.insert(0, "clip", list(clips))
    if notes is not None:
        table["note"] = list(notes)
    cache.write_text(path, table.to_csv(sep="\t", index=False, float_format="%.6g"))
    return table


def read(path: str | Path, classes: Sequence[str]) -> pd.DataFrame:
    """Read a scores file, indexed by clip; check its class columns and its rows.

    Raises ConfigError naming the file and the clip for a row that holds NaN or infinity
    or does not sum to 1.
    """
    path = Path(path)
    table = pd.read_csv(path, sep="\t", dtype={"clip": str, "split": str}, keep_default_na=False)
    missing = [c for c in ["clip", "split", *classes] if c not in table.columns]
    if missing:
        raise ConfigError(f"{path}: missing columns {missing}")
    names = table["clip"].to_numpy()
    values = table[list(classes)].to_numpy(float)
    finite = np.isfinite(values).all(1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise ConfigError(f"{path}: row of clip {names[i]!r} holds NaN or infinity")
    sums = values.sum(1)
    bad = np.flatnonzero(np.abs(sums - 1) > 1e-3)
    if len(bad):
        raise ConfigError(f"{path}: row of clip {names[bad[0]]!r} sums to {sums[bad[0]]:.4f}")
    return table.set_index("clip", drop=False)
