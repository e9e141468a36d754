"""The face branch on MEAD: train on one actor, test on the other, clip by clip (issue 16).

MEAD's two front-view actors (``mead_front``: M030 and W009, one clip per emotion) take
turns: one trains, the other is the unseen test actor; the four ``mead_samples`` actors
(F1, M1, F2, M2) validate (early stopping, fusion weights). Each direction is one
``snakemake`` run of the workflow itself, in its own folder under ``--work``, on a sheet
``msff build-sheet`` writes, with the preset as committed and an overlay that turns the
audio models off (the front clips have no sound) and C3D off (it stays at one class on
MEAD, bench/README.md), FER2013 zero-shot on, and fuses the frame CNN, its BLSTM, HOG +
SVM and the zero-shot classifier by the preset's rule. Contempt is dropped (``labels.map``).

Prints, per direction, every test clip's label and each model's prediction, the counts,
and whether the fusion gets every clip the zero-shot backbone gets (issue 16: "at least
matches the zero-shot backbone, clip for clip"). Rerun from the repository root::

    python bench/mead.py [--data ../shared/data] [--work /tmp/msff-mead] [--cores 2]
        [--overlay extra.yaml ...]

``--overlay`` adds config files after the bench's own (e.g. a preset value to compare).
A rerun with the same ``--work`` reruns only what changed (Snakemake).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from msff import config, scores
from msff import sheet as msff_sheet

REPO = Path(__file__).resolve().parents[1]
VALIDATION = ("F1", "M1", "F2", "M2")  # the mead_samples actors
DIRECTIONS = {"test W009": ("M030", "W009"), "test M030": ("W009", "M030")}
MODELS = ("fer2013_frames", "fer2013_blstm", "hog_svm", "fer2013_zeroshot", "fusion")


def run_direction(name: str, train: str, test: str, args) -> dict:
    """Build the sheet, run the workflow, and return its test clips' labels and predictions."""
    folder = args.work / name.replace(" ", "_")
    folder.mkdir(parents=True, exist_ok=True)
    sheet = folder / "clips.tsv"
    assign = [f"{train}=train", f"{test}=test", *(f"{a}=val" for a in VALIDATION)]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "msff",
            "build-sheet",
            str(args.data / "mead_front"),
            str(args.data / "mead_samples"),
            "--out",
            str(sheet),
            *(x for a in assign for x in ("--assign", a)),
        ],
        check=True,
    )
    overlay = folder / "overlay.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "samples": str(sheet),
                "models": {
                    "face_backbones": ["fer2013"],
                    "zeroshot": True,
                    "c3d": False,
                    "audio_cnn": False,
                    "opensmile_svm": False,
                },
                "fusion": {"models": [*MODELS[:-1]]},
            }
        )
    )
    started = time.perf_counter()
    subprocess.run(
        [
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(folder),
            "--cores",
            str(args.cores),
            "--configfile",
            str(REPO / "config.yaml"),
            str(overlay),
            *map(str, args.overlay),
            "--quiet",
            "rules",
        ],
        check=True,
    )
    seconds = time.perf_counter() - started
    cfg = config.load(REPO / "config.yaml")
    classes = cfg["labels"]["classes"]
    rows = {}
    for model in MODELS:
        table = scores.read(folder / "results" / "scores" / f"{model}.tsv", classes)
        rows[model] = table[table["split"] == "test"]
    clips = list(rows["fusion"].index)
    labels = msff_sheet.classify(msff_sheet.read(sheet), cfg["labels"])["class"]
    weights = json.loads((folder / "results" / "fusion" / "weights.json").read_text())
    return {
        "clips": clips,
        "labels": [labels[c] for c in clips],
        "predicted": {
            m: list(np.array(classes)[rows[m].loc[clips, classes].to_numpy().argmax(1)])
            for m in MODELS
        },
        "weights": weights["weights"],
        "seconds": seconds,
    }


def report(name: str, got: dict) -> None:
    """One line per test clip, the counts, and the clip-for-clip check."""
    print(f"\n{name}: test clips of the unseen actor (weights {json.dumps(got['weights'])})")
    header = ["clip", "label", *MODELS]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for i, (clip, label) in enumerate(zip(got["clips"], got["labels"], strict=True)):
        cells = []
        for m in MODELS:
            guess = got["predicted"][m][i]
            cells.append(f"**{guess}**" if guess == label else guess)
        print(f"| {clip} | {label} | " + " | ".join(cells) + " |")
    right = {
        m: {
            c
            for c, p, t in zip(got["clips"], got["predicted"][m], got["labels"], strict=True)
            if p == t
        }
        for m in MODELS
    }
    counts = " | ".join(str(len(right[m])) for m in MODELS)
    print(f"| correct of {len(got['clips'])} | | {counts} |")
    lost = sorted(right["fer2013_zeroshot"] - right["fusion"])
    print(
        "fusion gets every clip zero-shot gets: "
        + ("yes" if not lost else f"no (loses {', '.join(lost)})")
        + f"; {got['seconds'] / 60:.1f} min"
    )


def main() -> None:
    """Both directions, one after the other."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("/tmp/msff-mead"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--overlay", type=Path, nargs="*", default=[])
    args = parser.parse_args()
    args.data, args.work = args.data.resolve(), args.work.resolve()
    print(f"cpu cores {os.cpu_count()}, preset {config.load(REPO / 'config.yaml')['preset']}")
    for name, (train, test) in DIRECTIONS.items():
        report(name, run_direction(name, train, test, args))


if __name__ == "__main__":
    main()
