"""Stage class_weighting: every head's per-class recall with class weighting on and off.

Rare classes (disgust, surprise in AFEW) are what class weighting is for. The run's own
heads were trained with config ``train.class_weighted``; this stage trains each head
once more with the other setting, on the same split, features and seed, and tabulates
both. The heads retrained are the ones that make a model's scores: the frame CNN's fc
layers, the BLSTMs (on the run's own cached features), C3D and the SVM; the feature
extractors themselves (the frame CNN under the BLSTM, VGG-19 under the audio BLSTM) are
the run's, so the comparison isolates the classifier each model's scores come from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from msff import cache, evaluate, registry, scores
from msff.heads.blstm import train_blstm
from msff.heads.c3d import train_c3d
from msff.heads.frame_cnn import finetune_cnn
from msff.heads.svm import svm_opensmile
from msff.logs import log

SPLITS = ("val", "test")


def compare_class_weighting(
    run_scores: dict[str, str],
    clips: list[dict],
    classes: list[str],
    heads: dict,
    faces_h5: dict[str, str],
    features_h5: dict[str, str],
    opensmile_h5: dict[str, str],
    weights: dict,
    out_table: str | Path,
    work_dir: str | Path,
) -> pd.DataFrame:
    """Retrain each model of ``run_scores`` with ``class_weighted`` flipped; tabulate both.

    ``run_scores`` maps model names (``fer2013_frames``, ``fer2013_blstm``, ``c3d``,
    ``vgg19_blstm_audio``, ``opensmile_svm``) to the run's scores files; ``features_h5``
    maps ``fer2013`` / ``vgg19_audio`` to the run's feature caches; ``heads`` holds each
    head's arguments (:func:`msff.config.head_arguments`).
    """
    work = Path(work_dir)
    weighted = heads["blstm"]["settings"]["class_weighted"]
    flipped = {
        head: dict(
            args,
            **(
                {"settings": dict(args["settings"], class_weighted=not weighted)}
                if "settings" in args
                else {"class_weighted": not weighted}
            ),
        )
        for head, args in heads.items()
    }
    other = {}
    # Models that train nothing (the zero-shot classifier) have no weighting to flip.
    run_scores = {n: p for n, p in run_scores.items() if registry.model(n).head != "zeroshot"}
    for name in run_scores:
        out = work / f"{name}.tsv"
        head = registry.model(name).head
        if head == "frame_cnn":
            backbone = registry.model(name).backbone
            finetune_cnn(
                backbone,
                clips,
                faces_h5,
                work / f"{backbone}_cnn.pt",
                work / f"{backbone}_cnn.json",
                out,
                classes,
                **flipped["frame_cnn"],
                weights=weights.get(backbone),
            )
        elif head in ("blstm", "audio_cnn"):
            source = "vgg19_audio" if head == "audio_cnn" else registry.model(name).backbone
            train_blstm(
                features_h5[source],
                clips,
                out,
                work / f"{name}.pt",
                work / f"{name}.json",
                classes,
                **flipped["blstm"],
                unseen_note="not seen",
            )
        elif head == "c3d":
            train_c3d(
                clips,
                faces_h5,
                out,
                work / "c3d.pt",
                work / "c3d.json",
                classes,
                **flipped["c3d"],
                weights=weights.get("c3d"),
            )
        elif head == "svm":
            svm_opensmile(
                clips,
                opensmile_h5,
                out,
                work / "opensmile_svm.json",
                work / "opensmile_svm.h5",
                classes,
                **flipped["svm"],
            )
        else:
            raise ValueError(f"class_weighting: no head to retrain for model {name!r}")
        other[name] = out
    truth = np.array([classes.index(c["class"]) for c in clips])
    rows = []
    for name, path in run_scores.items():
        for is_weighted, source in (
            (weighted, path),
            (not weighted, other[name]),
        ):
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
