"""The report's figures: training curves, per-class recall, fusion weights, a qc overview.

Each function reads what the workflow wrote (provenance JSON of ``msff.train``, Table 1 of
``evaluate``, ``results/fusion/weights.json``, ``results/qc.tsv``) and writes one PNG
atomically and returns the matplotlib Figure. matplotlib is used through its object API
(no pyplot state, no display).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from msff import cache


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _save(figure, path: str | Path) -> None:
    with cache.atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


def training_curves(provenance: Mapping[str, str | Path], out: str | Path):
    """Loss and accuracy per epoch (train and val) of every trained model, best epoch marked.

    ``provenance`` maps a model's name to the JSON ``msff.train.write_provenance`` wrote.
    """
    from matplotlib.ticker import MaxNLocator

    figure = _figure(10, 2.6 * max(len(provenance), 1))
    axes = figure.subplots(max(len(provenance), 1), 2, squeeze=False)
    for row, (name, path) in zip(axes, provenance.items(), strict=False):
        history = json.loads(Path(path).read_text())["history"]
        epochs = history["epochs"]
        x = [e["epoch"] for e in epochs]
        best = history["best_epoch"]
        for ax, metric, label in ((row[0], "loss", "loss"), (row[1], "acc", "accuracy")):
            for split, style in (("train", "-o"), ("val", "-s")):
                key = f"{split}_{metric}"
                if epochs and key in epochs[0]:
                    ax.plot(x, [e[key] for e in epochs], style, markersize=3, label=split)
            if best:
                ax.axvline(best, color="grey", linestyle="--", linewidth=1, label=f"best ({best})")
            ax.set_title(
                f"{name}: {label}" + (", stopped early" if history["stopped_early"] else "")
            )
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.5
            ax.legend(fontsize="small")
            if metric == "acc":
                ax.set_ylim(-0.02, 1.02)
    if not provenance:
        axes[0][0].set_title("no trained model")
    _save(figure, out)
    return figure


def class_recall(table1: str | Path, out: str | Path):
    """Per-class recall of every model and the fusion side by side, on val and on test.

    A class with no clip in a split has no recall there and is left off that panel.
    """
    table = pd.read_csv(table1, sep="\t")
    recall_columns = [c for c in table.columns if c.startswith("recall_")]
    splits = [s for s in ("val", "test") if (table.split == s).any()] or ["train"]
    figure = _figure(11, 3.2 * len(splits))
    axes = figure.subplots(len(splits), 1, squeeze=False)[:, 0]
    for ax, split in zip(axes, splits, strict=True):
        rows = table[table.split == split]
        present = [c for c in recall_columns if rows[c].notna().any()]
        width = 0.8 / max(len(rows), 1)
        for k, row in enumerate(rows.itertuples(index=False)):
            ax.bar(
                np.arange(len(present)) + (k - (len(rows) - 1) / 2) * width,
                [getattr(row, c) for c in present],
                width,
                label=f"{row.model} (UAR {row.uar:.2f})",
                hatch="//" if row.model == "fusion" else None,
            )
        ax.set_xticks(np.arange(len(present)), [c.removeprefix("recall_") for c in present])
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("recall")
        ax.set_title(f"per-class recall, {split} ({len(rows)} models)")
        ax.legend(fontsize="small", ncols=2)
    _save(figure, out)
    return figure


def fusion_weights(weights_json: str | Path, out: str | Path):
    """The fusion weights, beside each model's own val accuracy.

    The title says which clips the weights were searched on (``searched_on`` of the
    weights file: validation, or out-of-fold scores of train + val).
    """
    record = json.loads(Path(weights_json).read_text())
    names = list(record["weights"])
    figure = _figure(10, 3.2)
    left, right = figure.subplots(1, 2)
    left.barh(names, [record["weights"][n] for n in names])
    left.set_xlim(0, 1)
    searched = record.get("searched_on", "val")
    n_searched = record.get("n_search_clips", record.get("n_val_clips", "?"))
    left.set_title(
        f"fusion weights, searched on {n_searched} {searched} clips "
        f"(val accuracy {record['val_accuracy']:.3f})",
        fontsize="medium",
    )
    left.invert_yaxis()
    single = record.get("val_accuracy_per_model", {})
    right.barh(names, [single.get(n, float("nan")) for n in names], color="tab:orange")
    right.axvline(record["val_accuracy"], color="grey", linestyle="--", label="fusion")
    right.set_xlim(0, 1)
    right.set_title(f"val accuracy of each model ({record.get('n_val_clips', '?')} clips)")
    right.invert_yaxis()
    right.legend(fontsize="small")
    _save(figure, out)
    return figure


def qc_overview(qc_tsv: str | Path, out: str | Path):
    """Face coverage over the clips with video, and the clips with errors or excluded."""
    table = pd.read_csv(qc_tsv, sep="\t", dtype={"clip": str}, keep_default_na=False)
    coverage = pd.to_numeric(table.face_coverage_pct, errors="coerce")
    video = table[coverage.notna()]
    figure = _figure(11, 3.6)
    left, right = figure.subplots(1, 2, width_ratios=[1, 1.3])
    if len(video):
        left.hist(coverage.dropna(), bins=np.linspace(0, 100, 11), edgecolor="black")
    else:
        left.text(0.5, 0.5, "no clip with video", ha="center", transform=left.transAxes)
    left.set_xlabel("face coverage % (frames with the tracked face)")
    left.set_ylabel("clips")
    left.set_title(f"face coverage, {len(video)} clips with video")
    counts = table.status.value_counts()
    right.axis("off")
    lines = [", ".join(f"{counts[s]} {s}" for s in counts.index)]
    bad = table[table.status.isin(["error", "excluded"])]
    lines += [_cut(f"{r.clip}: {r.status}: {r.error}", 90) for r in bad.itertuples()][:20]
    if len(bad) > 20:
        lines.append(f"... and {len(bad) - 20} more (results/qc.tsv)")
    right.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize="small")
    right.set_title(f"{len(table)} clips: errors and exclusions")
    _save(figure, out)
    return figure
