"""Zero-shot FER2013 backbone on the MEAD face videos: per-clip predictions against labels.

The clips go through the workflow's own stages (extract_frames, align_faces at the cpu
preset's sizes), then the pretrained mini-Xception scores every aligned face and a clip's
prediction is the mean of its frame scores. MEAD is too small to train on here; this shows
that the pretrained backbone sees expressions. Rerun:

    python bench/fer2013_mead.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from msff import cache, config
from msff.models.mini_xception import FER2013_CLASSES, load_fer2013, preprocess
from msff.stages.faces import align_faces
from msff.stages.media import extract_frames

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    """Run the stages on every MEAD clip and print one line per clip."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    cfg = config.load(REPO / "config.yaml")
    preset = cfg["presets"]["cpu"]
    labels = cfg["labels"]
    model = load_fer2013()
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for subset in ("mead_front", "mead_samples"):
            with open(args.data / subset / "labels.csv", newline="") as f:
                for item in csv.DictReader(f):
                    clip = Path(item["path"]).stem
                    frames, faces = Path(tmp) / f"{clip}.frames.h5", Path(tmp) / f"{clip}.h5"
                    extract_frames(
                        clip, str(args.data / subset / item["path"]), frames, **preset["frames"]
                    )
                    align_faces(clip, frames, faces, **preset["faces"])
                    data = cache.read_faces(faces)
                    found = data["faces"][data["found"]]
                    with torch.no_grad():
                        probs = torch.softmax(model(preprocess(found)), 1).mean(0).numpy()
                    truth = config.class_of(item["label"], labels)
                    rows.append(
                        (
                            subset,
                            clip,
                            item["label"],
                            truth or "(dropped)",
                            FER2013_CLASSES[int(np.argmax(probs))],
                            float(probs.max()),
                            f"{len(found)}/{len(data['found'])}",
                        )
                    )
    seconds = time.perf_counter() - started
    print(f"{'set':12} {'clip':36} {'label':9} {'class':9} {'predicted':9} {'p':>5} faces")
    for subset, clip, label, truth, predicted, p, faces in rows:
        mark = "ok" if predicted == truth else ""
        print(f"{subset:12} {clip:36} {label:9} {truth:9} {predicted:9} {p:5.2f} {faces} {mark}")
    scored = [r for r in rows if r[3] != "(dropped)"]
    correct = sum(r[3] == r[4] for r in scored)
    print(
        f"\n{correct} of {len(scored)} clips right (contempt has no class and is left out); "
        f"{seconds:.1f} s for {len(rows)} clips, cpu preset, {torch.get_num_threads()} threads"
    )


if __name__ == "__main__":
    main()
