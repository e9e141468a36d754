"""Histograms of oriented gradients of aligned faces: the face branch's hand-crafted features.

HOG (Dalal & Triggs, CVPR 2005) as expression recognition has used it since before CNNs
(EmotiW's own baselines are descriptors of this kind + an SVM): the face is cut into
``cells x cells`` cells; each cell holds a histogram of its pixels' gradient orientations
(``bins`` unsigned bins over 0-180 degrees, weighted by gradient magnitude); histograms of
2 x 2 neighbouring cells are normalised together (L2, clipped at 0.2, normalised again:
"L2-Hys"). A face of any side gives ``(cells - 1)^2 * 4 * bins`` numbers (1,764 for 8 x 8
cells of 9 bins), so faces aligned at 128 or 256 pixels describe alike.

A clip's descriptor is the mean over its found faces (at most ``MAX_FACES`` of them). It
sees what a CNN trained on other faces may not (the wrinkles of one data set's posed
expressions), which is why it is worth fusing beside the CNNs (bench/README.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from msff import cache
from msff.datasets import found_rows

CELLS = 8
BINS = 9
CLIP = 0.2  # L2-Hys: block entries are clipped here, then renormalised
EPSILON = 1e-6
BATCH = 64  # faces read from a cache at once: memory does not grow with the clip
# Faces of a clip described, evenly spread over it: the mean of 32 is the mean of hundreds
# to within a face's worth, and a long clip at the paper's 256 px costs ~2 s, not minutes.
MAX_FACES = 32


def descriptors(faces: np.ndarray, cells: int = CELLS, bins: int = BINS) -> np.ndarray:
    """HOG of each face: (N, S, S, 3) or (N, S, S) pixels -> (N, (cells-1)^2 * 4 * bins).

    Colour is averaged to grey. ``S`` must be at least ``cells`` pixels; the last
    ``S mod cells`` rows and columns are left out of the cells.
    """
    faces = np.asarray(faces, np.float64)
    grey = faces.mean(-1) if faces.ndim == 4 else faces
    if grey.ndim != 3 or min(grey.shape[1:]) < cells:
        raise ValueError(f"faces of shape {faces.shape}: need (N, S, S[, 3]) with S >= {cells}")
    gx, gy = np.zeros_like(grey), np.zeros_like(grey)
    gx[:, :, 1:-1] = grey[:, :, 2:] - grey[:, :, :-2]  # centred differences, 0 at the border
    gy[:, 1:-1] = grey[:, 2:] - grey[:, :-2]
    magnitude = np.hypot(gx, gy)
    orientation = np.rad2deg(np.arctan2(gy, gx)) % 180
    bin_of = np.minimum((orientation / (180 / bins)).astype(np.int64), bins - 1)
    side = grey.shape[1] // cells
    n = len(grey)
    # Every pixel's (face, cell row, cell column, bin): one bincount fills every histogram.
    rows = np.minimum(np.arange(grey.shape[1]) // side, cells)  # cells: outside the grid
    columns = np.minimum(np.arange(grey.shape[2]) // side, cells)
    inside = (rows < cells)[:, None] & (columns < cells)[None, :]
    cell = rows[:, None] * cells + columns[None, :]
    index = (np.arange(n)[:, None, None] * cells * cells + cell) * bins + bin_of
    histograms = np.bincount(
        index[:, inside].ravel(), magnitude[:, inside].ravel(), n * cells * cells * bins
    ).reshape(n, cells, cells, bins)
    blocks = np.concatenate(
        [
            histograms[:, :-1, :-1],
            histograms[:, :-1, 1:],
            histograms[:, 1:, :-1],
            histograms[:, 1:, 1:],
        ],
        axis=-1,
    )  # (n, cells-1, cells-1, 4 * bins)
    blocks = blocks / np.sqrt((blocks**2).sum(-1, keepdims=True) + EPSILON)
    blocks = np.minimum(blocks, CLIP)
    blocks = blocks / np.sqrt((blocks**2).sum(-1, keepdims=True) + EPSILON)
    return blocks.reshape(n, -1)


def clip_descriptor(faces_h5: str | Path | None) -> np.ndarray | None:
    """The mean HOG of a clip's found faces; None when it has none (or no faces cache).

    At most ``MAX_FACES`` faces are described, evenly spread over the clip.
    """
    rows = found_rows(faces_h5) if faces_h5 else np.zeros(0, int)
    if not len(rows):
        return None
    rows = np.unique(
        rows[np.linspace(0, len(rows) - 1, min(len(rows), MAX_FACES)).round().astype(int)]
    )
    total = 0.0
    for start in range(0, len(rows), BATCH):
        total = total + descriptors(
            cache.read_face_rows(faces_h5, rows[start : start + BATCH])
        ).sum(0)
    return total / len(rows)
