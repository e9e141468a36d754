"""Stage class_weighting: every head's per-class recall with class weighting on and off.

Rare classes (disgust, surprise in AFEW) are what class weighting is for. The run's own
heads were trained with config ``train.class_weighted``; the workflow trains each head
once more with the other setting (the ``weighted_*`` rules: the same rules, on the same
split, features and seed, with only that flag flipped), and this stage tabulates both.
The heads retrained are the ones that make a model's scores: the frame CNN's fc
layers, the BLSTMs (on the run's own cached features), C3D and the SVM; the feature
extractors themselves (the frame CNN under the BLSTM, VGG-19 under the audio BLSTM) are
the run's, so the comparison isolates the classifier each model's scores come from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from msff import cache, evaluate, scores
from msff.logs import log

SPLITS = ("val", "test")


def compare_class_weighting(
    run_scores: dict[str, str],
    flipped_scores: dict[str, str],
    clips: list[dict],
    classes: list[str],
    weighted: bool,
    out_table: str | Path,
) -> pd.DataFrame:
    """Tabulate each model's scores with class weighting as the run had it and flipped.

    ``run_scores`` and ``flipped_scores`` map model names to scores files; ``weighted``
    is the run's ``train.class_weighted``.
    """
    truth = np.array([classes.index(c["class"]) for c in clips])
    rows = []
    for name, path in run_scores.items():
        for is_weighted, source in ((weighted, path), (not weighted, flipped_scores[name])):
            matrix = scores.read(source, classes).loc[[c["clip"] for c in clips], classes]
            predicted = matrix.to_numpy(float).argmax(1)
            for split in SPLITS:
                pick = np.array([c["split"] == split for c in clips])
                if not pick.any():
                    continue
                m = evaluate.metrics(truth[pick], predicted[pick], classes)
                rows.append(
                    {
                        "model": name,
                        "class_weighted": is_weighted,
                        "split": split,
                        "n_clips": m["n_clips"],
                        "accuracy": m["accuracy"],
                        "uar": m["uar"],
                        "recall_disgust": m.get("recall_disgust", np.nan),
                        "recall_surprise": m.get("recall_surprise", np.nan),
                        "n_disgust": int((truth[pick] == _index(classes, "disgust")).sum()),
                        "n_surprise": int((truth[pick] == _index(classes, "surprise")).sum()),
                    }
                )
    table = pd.DataFrame(rows).sort_values(["model", "split", "class_weighted"], kind="stable")
    cache.write_text(out_table, table.to_csv(sep="\t", index=False, float_format="%.4f"))
    log.info("class weighting on/off:\n%s", table.to_string(index=False))
    return table


def _index(classes: list[str], name: str) -> int:
    return classes.index(name) if name in classes else -1
