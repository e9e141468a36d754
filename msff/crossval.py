"""Subject-grouped k-fold cross-validation of the face models over a whole sheet.

Small labelled face sets (CK+: 216 sequences of 79 subjects) are measured this way rather
than on one split. Folds are ``StratifiedGroupKFold`` over subjects (seeded), so no
subject is in two folds and each fold has roughly every class. For fold k its clips are
the test clips; of the other subjects, one grouped share more is held out as validation
clips (early stopping, fusion weights) and the rest train. Each fold runs the very head
functions the workflow's rules run (``msff.heads``), so every clip is scored
exactly once by models that never saw its subject.

Models: the ``fer2013`` backbone zero-shot (its own FER2013 head; classes the sheet never
uses are left out of its argmax), each configured frame backbone fine-tuned (frame
scores averaged: ``{backbone}_frames``), the BLSTM on its features (``{backbone}_blstm``),
C3D, HOG + SVM (``hog_svm``), and ``face_fusion``, the weighted sum of those the workflow's
fusion weighs (the ``snakemake crossval`` rule: config ``fusion.models`` or the preset's;
:func:`run`: every trained model), with weights chosen per fold on its validation clips
by the fusion's rule. Written to
``out_dir``: ``scores/{model}.tsv`` (out-of-fold scores, ``split`` = the clip's fold),
``metrics.tsv`` (accuracy, UAR, macro-F1, per-class recall and wall time per model),
``confusion/{model}.tsv`` and ``.png``, ``folds.tsv`` (each clip's fold).

The workflow trains each fold's models in rules of their own (``snakemake crossval``:
one job per fold and model, run in parallel, rerun one by one) and :func:`tabulate`
only puts their scores together; :func:`run` does the same in one process, for benches
and tests.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from msff import cache, evaluate, fusion, scores
from msff.folds import assign_folds, fold_records
from msff.heads import zeroshot
from msff.heads.blstm import train_blstm
from msff.heads.c3d import train_c3d
from msff.heads.frame_cnn import finetune_cnn
from msff.heads.hog_svm import train_hog_svm
from msff.logs import log


def fold_assignment(
    records: list[dict], classes: list[str], folds: int, seed: int
) -> tuple[np.ndarray, list[list[dict]]]:
    """Every clip's fold, and each fold's clips with their split (test, val, train)."""
    fold = assign_folds(records, classes, folds, seed)
    return fold, [fold_records(records, fold, k, classes, seed) for k in range(folds)]


def run(
    records: list[dict],
    faces_h5: dict[str, str],
    out_dir: str | Path,
    classes: list[str],
    heads: dict,
    backbones: list[str],
    c3d: bool,
    weights: dict,
    folds: int,
    fusion_step: float,
    device: str = "auto",
    fusion_rule: str = "auto",
    fusion_min_clips: int = fusion.SMALL_VALIDATION,
    hog_svm: bool = False,
    fused: list[str] | None = None,
    fold_seed: int | None = None,
) -> pd.DataFrame:
    """Cross-validate the face models over ``records`` in this process; the metrics table.

    ``heads`` holds each head's arguments (:func:`msff.config.head_arguments`);
    ``weights`` is config ``weights``. Clips whose class is not among ``classes`` must
    be left out by the caller (config ``labels.map``). ``fused``: the models of the face
    fusion (:func:`msff.config.crossval_fused`; None: every trained model). The folds
    are drawn with ``fold_seed`` (None: the heads' seed, as the workflow does): the same
    folds under another training seed measure what the seed alone moves.
    """
    out_dir = Path(out_dir)
    seed = heads["frame_cnn"]["settings"]["seed"] if fold_seed is None else fold_seed
    fold, fold_clips = fold_assignment(records, classes, folds, seed)
    trained = trained_models(backbones, c3d, hog_svm)
    paths = fold_scores(out_dir, trained, folds)
    seconds = dict.fromkeys(["fer2013_zeroshot", *trained], 0.0)

    with _timer(seconds, "fer2013_zeroshot"):
        zeroshot_tsv = out_dir / "folds" / "fer2013_zeroshot.tsv"
        write_zeroshot(records, faces_h5, classes, weights.get("fer2013"), zeroshot_tsv)
    for k, clips in enumerate(fold_clips):
        fold_dir = out_dir / "folds" / f"fold{k}"
        for backbone in backbones:
            cnn = fold_dir / f"{backbone}_cnn.pt"
            features = fold_dir / f"{backbone}_features.h5"
            with _timer(seconds, f"{backbone}_frames"):
                finetune_cnn(
                    backbone,
                    clips,
                    faces_h5,
                    cnn,
                    cnn.with_suffix(".json"),
                    paths[f"{backbone}_frames"][k],
                    classes,
                    **heads["frame_cnn"],
                    weights=weights.get(backbone),
                    device=device,
                    out_features=features,
                )
            with _timer(seconds, f"{backbone}_blstm"):
                train_blstm(
                    features,
                    clips,
                    paths[f"{backbone}_blstm"][k],
                    fold_dir / f"{backbone}_blstm.pt",
                    fold_dir / f"{backbone}_blstm.json",
                    classes,
                    **heads["blstm"],
                    unseen_note="no face found",
                    device=device,
                )
        if c3d:
            with _timer(seconds, "c3d"):
                train_c3d(
                    clips,
                    faces_h5,
                    paths["c3d"][k],
                    fold_dir / "c3d.pt",
                    fold_dir / "c3d.json",
                    classes,
                    **heads["c3d"],
                    weights=weights.get("c3d"),
                    device=device,
                )
        if hog_svm:
            with _timer(seconds, "hog_svm"):
                train_hog_svm(
                    clips,
                    faces_h5,
                    paths["hog_svm"][k],
                    fold_dir / "hog_svm.json",
                    fold_dir / "hog_svm.h5",
                    classes,
                    **heads["hog_svm"],
                )
    return tabulate(
        records,
        classes,
        fold,
        fold_clips,
        paths,
        zeroshot_tsv,
        out_dir,
        fusion_step,
        fusion_rule,
        fusion_min_clips,
        seconds,
        seed,
        fused,
    )


def trained_models(backbones: list[str], c3d: bool, hog_svm: bool) -> list[str]:
    """The models :func:`run` trains in every fold, in the order of its tables."""
    trained = [m for b in backbones for m in (f"{b}_frames", f"{b}_blstm")]
    return trained + ["c3d"] * c3d + ["hog_svm"] * hog_svm


def fold_scores(out_dir: str | Path, trained: list[str], folds: int) -> dict[str, list[Path]]:
    """Each trained model's scores file of every fold, where :func:`run` writes them."""
    return {
        m: [Path(out_dir) / "folds" / f"fold{k}" / f"{m}.tsv" for k in range(folds)]
        for m in trained
    }


def write_zeroshot(
    records: list[dict],
    faces_h5: dict[str, str],
    classes: list[str],
    weights,
    out,
    out_record=None,
) -> None:
    """The zero-shot scores of every clip (it trains nothing: one file serves every fold).

    ``out_record``: a JSON beside them with the seconds it took, for the metrics table.
    """
    started = time.perf_counter()
    # Classes no clip of the sheet has (neutral, on CK+) get probability 0, so the argmax
    # picks among the classes the clips can be scored on.
    kept = sorted({r["class"] for r in records})
    rows, notes = zeroshot.scores_of(records, faces_h5, classes, kept, weights)
    ids = [r["clip"] for r in records]
    scores.write(out, ids, ["all"] * len(records), rows, classes, notes)
    if out_record:
        seconds = round(time.perf_counter() - started, 2)
        cache.write_text(out_record, json.dumps({"seconds": seconds}))


def tabulate(
    records: list[dict],
    classes: list[str],
    fold: np.ndarray,
    fold_clips: list[list[dict]],
    fold_scores: dict[str, list[str | Path]],
    zeroshot_tsv: str | Path,
    out_dir: str | Path,
    fusion_step: float,
    fusion_rule: str,
    fusion_min_clips: int,
    seconds: dict[str, float],
    seed: int,
    fused: list[str] | None = None,
) -> pd.DataFrame:
    """Out-of-fold scores, the per-fold fusion, metrics and confusion matrices.

    ``fold_scores`` maps each trained model to its scores file of every fold (fold k's
    model scored every clip; its test clips are the out-of-fold ones);
    ``zeroshot_tsv`` holds the zero-shot scores of every clip. ``face_fusion`` weighs
    ``fused`` (trained models and ``fer2013_zeroshot``; None: every trained model), with
    weights of fold k searched on that fold's validation clips, as the workflow's fuse does.
    """
    out_dir = Path(out_dir)
    ids = [r["clip"] for r in records]
    truth = np.array([classes.index(r["class"]) for r in records])
    cache.write_text(
        out_dir / "folds.tsv",
        pd.DataFrame(
            {"clip": ids, "speaker": [r["speaker"] for r in records]} | {"fold": fold}
        ).to_csv(sep="\t", index=False),
    )
    trained = list(fold_scores)
    fused = list(fused or trained)
    unknown = sorted(set(fused) - {*trained, "fer2013_zeroshot"})
    if unknown:
        raise ValueError(f"face_fusion: {unknown} are not cross-validated models ({trained})")
    zeroshot = scores.read(zeroshot_tsv, classes).loc[ids]
    oof = {"fer2013_zeroshot": zeroshot[classes].to_numpy(float)}
    notes = {"fer2013_zeroshot": list(zeroshot["note"]) if "note" in zeroshot else [""] * len(ids)}
    for m in [*trained, "face_fusion"]:
        oof[m], notes[m] = np.zeros((len(ids), len(classes))), [""] * len(ids)
    seconds = dict(seconds, face_fusion=0.0)
    for k, clips in enumerate(fold_clips):
        test = fold == k
        val = np.array([c["split"] == "val" for c in clips])
        log.info(
            "fold %d: %d train, %d val, %d test clips",
            k,
            int((~test & ~val).sum()),
            int(val.sum()),
            int(test.sum()),
        )
        matrices = {"fer2013_zeroshot": oof["fer2013_zeroshot"]}  # one file for every fold
        for name in trained:
            table = scores.read(fold_scores[name][k], classes).loc[ids]
            matrices[name] = table[classes].to_numpy(float)
            oof[name][test] = matrices[name][test]
            if "note" in table:
                for i in np.flatnonzero(test):
                    notes[name][i] = table["note"].iloc[i]
        with _timer(seconds, "face_fusion"):
            chosen = fusion.search(
                [matrices[m][val] for m in fused],
                truth[val],
                fusion_step,
                fusion_rule,
                fusion_min_clips,
            )
            oof["face_fusion"][test] = fusion.fuse(
                [matrices[m][test] for m in fused], chosen.weights
            )
        log.info(
            "fold %d: fusion weights %s (val accuracy %.3f)",
            k,
            dict(zip(fused, chosen.weights.round(3).tolist(), strict=True)),
            chosen.accuracy,
        )
    return _write(out_dir, records, fold, truth, classes, oof, notes, seconds, seed)


@contextmanager
def _timer(seconds: dict, name: str):
    started = time.perf_counter()
    yield
    seconds[name] += time.perf_counter() - started


def _write(out_dir, records, fold, truth, classes, oof, notes, seconds, seed):
    rows = []
    split = [f"fold{k}" for k in fold]
    ids = [r["clip"] for r in records]
    for name in ["fer2013_zeroshot", *[m for m in oof if m != "fer2013_zeroshot"]]:
        scores.write(
            out_dir / "scores" / f"{name}.tsv", ids, split, oof[name], classes, notes[name]
        )
        predicted = oof[name].argmax(1)
        row = {"model": name, "folds": int(fold.max()) + 1}
        row.update(evaluate.metrics(truth, predicted, classes))
        row["majority_rate"] = float(np.bincount(truth).max() / len(truth))
        row["seconds"] = round(seconds[name], 1)
        rows.append(row)
        table = evaluate.confusion(truth, predicted, classes)
        cache.write_text(
            out_dir / "confusion" / f"{name}.tsv",
            table.reset_index(names="true").to_csv(sep="\t", index=False),
        )
        evaluate.confusion_png(
            table,
            out_dir / "confusion" / f"{name}.png",
            f"{name}, {int(fold.max()) + 1}-fold CV ({len(truth)} clips)",
        )
    metrics = pd.DataFrame(rows)
    cache.write_text(
        out_dir / "metrics.tsv", metrics.to_csv(sep="\t", index=False, float_format="%.4f")
    )
    log.info("crossval (seed %d):\n%s", seed, metrics.to_string(index=False))
    return metrics
