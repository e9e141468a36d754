"""Metrics, tables and confusion matrices of scores files, computed on all clips.

Accuracy is always over every clip of the split, whether or not a face or a voice was
found (a clip a model cannot see scores uniform, i.e. it counts as a guess); face
coverage is reported beside it, never used to filter it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score, recall_score


def metrics(labels: Sequence[int], predicted: Sequence[int], classes: Sequence[str]) -> dict:
    """Accuracy, unweighted average recall (UAR), macro-F1 and per-class recall.

    Classes absent from ``labels`` are left out of UAR and macro-F1 (their recall is
    undefined) and reported as NaN.
    """
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    present = np.unique(labels)
    recall = recall_score(
        labels, predicted, labels=range(len(classes)), average=None, zero_division=0
    )
    out = {
        "n_clips": int(len(labels)),
        "accuracy": float((labels == predicted).mean()) if len(labels) else float("nan"),
        "uar": float(recall[present].mean()) if len(present) else float("nan"),
        "macro_f1": float(
            f1_score(labels, predicted, labels=present, average="macro", zero_division=0)
        )
        if len(present)
        else float("nan"),
    }
    for i, name in enumerate(classes):
        out[f"recall_{name}"] = float(recall[i]) if i in present else float("nan")
    return out


def confusion(
    labels: Sequence[int], predicted: Sequence[int], classes: Sequence[str]
) -> pd.DataFrame:
    """Confusion matrix: rows are true classes, columns predicted; it sums to the clips."""
    matrix = confusion_matrix(labels, predicted, labels=range(len(classes)))
    return pd.DataFrame(matrix, index=list(classes), columns=list(classes))


def confusion_png(table: pd.DataFrame, path: str | Path, title: str) -> None:
    """Draw a confusion matrix as a PNG heat map with counts (Pillow only)."""
    from PIL import Image, ImageDraw, ImageFont

    classes = list(table.index)
    n = len(classes)
    cell, left, top = 56, 90, 60
    image = Image.new("RGB", (left + n * cell + 10, top + n * cell + 40), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.text((10, 8), title, fill="black", font=font)
    draw.text((left, top - 30), "predicted", fill="black", font=font)
    values = table.to_numpy(float)
    row_sums = np.maximum(values.sum(1, keepdims=True), 1)
    shares = values / row_sums  # shade by the share of each true class
    for j, name in enumerate(classes):
        draw.text((left + j * cell + 4, top - 14), name[:8], fill="black", font=font)
    for i, name in enumerate(classes):
        draw.text((8, top + i * cell + cell // 2 - 6), name[:10], fill="black", font=font)
        for j in range(n):
            shade = int(255 - 200 * shares[i, j])
            box = (
                left + j * cell,
                top + i * cell,
                left + (j + 1) * cell - 1,
                top + (i + 1) * cell - 1,
            )
            draw.rectangle(box, fill=(shade, shade, 255), outline="grey")
            colour = "white" if shares[i, j] > 0.6 else "black"
            draw.text(
                (box[0] + cell // 2 - 8, box[1] + cell // 2 - 6),
                str(int(values[i, j])),
                fill=colour,
                font=font,
            )
    draw.text((8, top + n * cell + 12), "rows: true class", fill="black", font=font)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
