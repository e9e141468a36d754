"""Stages fuse and evaluate: fusion weights, predictions, and every model's metrics.

fuse      grid-searches the fusion weights on the validation clips (or on the out-of-fold
          scores of every train and validation clip: config fusion.out_of_fold), writes
          the weights, the fused scores of every clip, and the predictions of the test clips
submission  the test predictions as EmotiW submission files
evaluate  Table 1 (each model and the fusion: accuracy, UAR, macro-F1, per-class recall,
          on every split), Table 2 (every subset of the fused models, weights searched as
          fuse searches them), confusion matrices (TSV and PNG) of the validation and test splits
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from msff import cache, evaluate, fusion, scores
from msff.errors import ConfigError
from msff.stages import log

SPLITS = ("train", "val", "test")


def _atomic_tsv(path: str | Path, table: pd.DataFrame) -> None:
    cache.write_text(path, table.to_csv(sep="\t", index=False, float_format="%.4f"))


def load_scores(
    paths: dict[str, str], clips: list[dict], classes: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Each model's score matrix and notes, rows in the order of ``clips``.

    A note is "" where the model scored the clip, else why it could not see it (its row
    is then uniform).
    """
    ids = [c["clip"] for c in clips]
    matrices, notes = {}, {}
    for name, path in paths.items():
        table = scores.read(path, classes)
        missing = sorted(set(ids) - set(table.index))
        if missing:
            raise ConfigError(f"{path}: no row for clips {missing[:5]}")
        matrices[name] = table.loc[ids, classes].to_numpy(float)
        column = table["note"] if "note" in table else pd.Series("", index=table.index)
        notes[name] = column.loc[ids].astype(str).tolist()
    return matrices, notes


def fusion_notes(how: list[str], notes: dict[str, list[str]]) -> list[str]:
    """Per clip, why it was not fused by the weights (:func:`msff.fusion.fuse_seen`), or "".

    The wording is ``msff predict``'s for the same file.
    """
    out = []
    for i, fused_by in enumerate(how):
        if fused_by == "equal":
            seen = [name for name, why in notes.items() if not why[i]]
            out.append(f"{fusion.EQUAL_NOTE}{', '.join(seen)}")
        elif fused_by == "none":
            why = dict.fromkeys(why[i] for why in notes.values())
            out.append(f"no fused model could score it ({'; '.join(why)})")
        else:
            out.append("")
    return out


def _truth(clips, classes) -> np.ndarray:
    return np.array([classes.index(c["class"]) for c in clips])


def _split(clips, split) -> np.ndarray:
    return np.array([c["split"] == split for c in clips])


def out_of_fold_scores(paths: list[str], ids: list[str], classes: list[str]) -> np.ndarray:
    """One model's out-of-fold score matrix of the clips ``ids``, rows in their order.

    ``paths`` are the model's scores files of the out-of-fold trainings
    (:func:`msff.folds.out_of_fold_records`); a clip's row is taken from the file in which
    it is a test clip, so it was scored by a model that never saw its subject.
    """
    rows: dict[str, tuple[np.ndarray, str]] = {}
    for path in paths:
        table = scores.read(path, classes)
        held = table[table["split"] == "test"]
        for clip, row in zip(held.index, held[classes].to_numpy(float), strict=True):
            if clip in rows:
                raise ConfigError(f"{path}: clip {clip!r} is held out in {rows[clip][1]} too")
            rows[clip] = (row, str(path))
    missing = [clip for clip in ids if clip not in rows]
    if missing:
        raise ConfigError(f"no out-of-fold scores for clips {missing[:5]} in {list(paths)}")
    return np.stack([rows[clip][0] for clip in ids])


def search_clips(
    matrices: dict[str, np.ndarray],
    clips: list[dict],
    classes: list[str],
    out_of_fold: dict[str, list[str]] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, list[str], str]:
    """The scores the fusion weights are searched on: each model's, the truth, the speakers.

    Without ``out_of_fold``: the validation clips' rows of ``matrices``. With it (model ->
    its out-of-fold scores files): every train and validation clip, each scored by the
    model trained without its fold; a model not in it trains nothing (FER2013's own
    classifier) and its rows are its own. The last item names the clips: ``"val"`` or
    ``"out_of_fold"``.
    """
    out_of_fold = out_of_fold or {}
    if out_of_fold:
        searched_on, pick = "out_of_fold", ~_split(clips, "test")
    else:
        searched_on, pick = "val", _split(clips, "val")
        if not pick.any():
            raise ConfigError("fuse: the sheet has no validation clip to search the weights on")
    picked = [c for c, keep in zip(clips, pick, strict=True) if keep]
    ids = [c["clip"] for c in picked]
    searched = {
        name: out_of_fold_scores(out_of_fold[name], ids, classes)
        if name in out_of_fold
        else matrix[pick]
        for name, matrix in matrices.items()
    }
    return searched, _truth(picked, classes), [c["speaker"] for c in picked], searched_on


def fuse(
    score_paths: dict[str, str],
    clips: list[dict],
    classes: list[str],
    step: float,
    cv_folds: int,
    seed: int,
    out_weights: str,
    out_scores: str,
    out_predictions: str,
    rule: str = "auto",
    min_clips: int = fusion.SMALL_VALIDATION,
    not_fused: list[str] = (),
    out_of_fold: dict[str, list[str]] | None = None,
) -> dict:
    """Search the weights, fuse every clip, predict the test clips.

    The weights are searched on the validation clips, or with ``out_of_fold`` (model ->
    its scores files of the out-of-fold trainings, config ``fusion.out_of_fold``) on the
    out-of-fold scores of every train and validation clip (:func:`search_clips`).
    ``rule`` and ``min_clips``: how the grid's winner is chosen (:func:`msff.fusion.search`).
    ``not_fused``: models the run trained and scored but the fusion leaves out (config
    ``fusion.models`` or the preset's ``fusion_models``), recorded with the weights.
    """
    matrices, notes = load_scores(score_paths, clips, classes)
    names = list(matrices)
    truth, val = _truth(clips, classes), _split(clips, "val")
    searched, searched_truth, groups, searched_on = search_clips(
        matrices, clips, classes, out_of_fold
    )
    result = fusion.search([searched[n] for n in names], searched_truth, step, rule, min_clips)
    single = {n: float((matrices[n][val].argmax(1) == truth[val]).mean()) for n in names}
    seen = np.array([[not why for why in notes[n]] for n in names])
    fused, how = fusion.fuse_seen([matrices[n] for n in names], result.weights, seen)
    fused_val = fused[val].argmax(1)
    record = {
        "models": names,
        "weights": dict(zip(names, result.weights.round(6).tolist(), strict=True)),
        "searched_on": searched_on,
        "n_search_clips": result.n_clips,
        "search_accuracy": result.accuracy,
        "search_accuracy_per_model": {
            n: float((searched[n].argmax(1) == searched_truth).mean()) for n in names
        },
        "val_accuracy": float((fused_val == truth[val]).mean()) if val.any() else float("nan"),
        "val_accuracy_per_model": single,
        "rule": result.rule,
        "tolerance": result.tolerance,
        "best_search_accuracy": result.best_accuracy,
        "step": step,
        "n_val_clips": int(val.sum()),
        "not_fused": list(not_fused),
    }
    if cv_folds > 1:
        record["cross_validation"] = fusion.cross_validate(
            [searched[n] for n in names],
            searched_truth,
            groups,
            cv_folds,
            step,
            seed,
            rule,
            min_clips,
        )
    log.info(
        "fusion weights %s: accuracy %.3f on %d %s clips (best single model %.3f)",
        record["weights"],
        result.accuracy,
        result.n_clips,
        searched_on,
        max(record["search_accuracy_per_model"].values()),
    )
    cache.write_text(out_weights, json.dumps(record, indent=2))
    fused_notes = fusion_notes(how, notes)
    ids, splits = [c["clip"] for c in clips], [c["split"] for c in clips]
    scores.write(out_scores, ids, splits, fused, classes, fused_notes)
    test = np.flatnonzero(_split(clips, "test"))
    predictions = pd.DataFrame(fused[test], columns=classes)
    # A test clip no fused model could see gets no label, and the note says why.
    labels = ["" if how[i] == "none" else classes[fused[i].argmax()] for i in test]
    predictions.insert(0, "predicted", labels)
    predictions.insert(0, "clip", [ids[i] for i in test])
    predictions["note"] = [fused_notes[i] for i in test]
    for fused_by, what in (("equal", "fused equally"), ("none", "left without a label")):
        picked = [ids[i] for i in test if how[i] == fused_by]
        if picked:
            log.warning(
                "test clips no model of nonzero weight could score, %s: %s", what, ", ".join(picked)
            )
    _atomic_tsv(out_predictions, predictions)
    return record


def write_submission(predictions_tsv: str | Path, out_dir: str | Path) -> int:
    """Write EmotiW's submission files: one ``{clip}.txt`` per labelled test clip.

    Each holds the clip's predicted label capitalised as AFEW spells it (``Angry`` ...
    ``Surprise``). A clip without a label (no fused model could score it) gets no file
    and a warning names it: a guess would read as a finding. Returns the files written.
    """
    predictions = pd.read_csv(
        predictions_tsv, sep="\t", dtype={"clip": str, "predicted": str}, keep_default_na=False
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labelled = predictions[predictions["predicted"] != ""]
    for clip, label in zip(labelled["clip"], labelled["predicted"], strict=True):
        cache.write_text(out_dir / f"{clip}.txt", label.capitalize() + "\n")
    unlabelled = predictions["clip"][predictions["predicted"] == ""].tolist()
    if unlabelled:
        log.warning(
            "no submission file for %d unlabelled test clips: %s",
            len(unlabelled),
            ", ".join(unlabelled),
        )
    return len(labelled)


def coverage(qc_tsv: str, clips: list[dict]) -> dict[str, float]:
    """Mean face coverage (% of frames with the tracked face) per split, over all clips."""
    qc = pd.read_csv(qc_tsv, sep="\t", keep_default_na=False).set_index("clip")
    out = {}
    for split in SPLITS:
        ids = [c["clip"] for c in clips if c["split"] == split]
        values = pd.to_numeric(qc.loc[ids, "face_coverage_pct"], errors="coerce").fillna(0)
        out[split] = float(values.mean()) if len(ids) else float("nan")
    return out


def evaluate_all(
    score_paths: dict[str, str],
    fused_models: list[str],
    clips: list[dict],
    classes: list[str],
    step: float,
    qc_tsv: str,
    out_table1: str,
    out_table2: str,
    out_confusion_dir: str,
    rule: str = "auto",
    min_clips: int = fusion.SMALL_VALIDATION,
    out_of_fold: dict[str, list[str]] | None = None,
) -> None:
    """Write Table 1, Table 2 and the confusion matrices (see the module docstring).

    Table 2 searches each subset's weights on the clips :func:`fuse` searched on
    (``out_of_fold`` as there).
    """
    matrices, _ = load_scores(score_paths, clips, classes)
    truth = _truth(clips, classes)
    faces = coverage(qc_tsv, clips)
    rows = []
    confusion_dir = Path(out_confusion_dir)
    for name, matrix in matrices.items():
        predicted = matrix.argmax(1)
        for split in SPLITS:
            pick = _split(clips, split)
            if not pick.any():
                continue
            row = {"model": name, "split": split, "face_coverage_pct": faces[split]}
            row.update(evaluate.metrics(truth[pick], predicted[pick], classes))
            rows.append(row)
            if split in ("val", "test"):
                table = evaluate.confusion(truth[pick], predicted[pick], classes)
                _atomic_tsv(confusion_dir / f"{name}.{split}.tsv", table.reset_index(names="true"))
                evaluate.confusion_png(
                    table,
                    confusion_dir / f"{name}.{split}.png",
                    f"{name}, {split} ({int(pick.sum())} clips)",
                )
    _atomic_tsv(out_table1, pd.DataFrame(rows))
    val, test = _split(clips, "val"), _split(clips, "test")
    fused_matrices = {name: matrices[name] for name in fused_models}
    searched, searched_truth, _, _ = search_clips(fused_matrices, clips, classes, out_of_fold)
    subsets = []
    for k in range(1, len(fused_models) + 1):
        for subset in combinations(fused_models, k):
            result = fusion.search(
                [searched[m] for m in subset], searched_truth, step, rule, min_clips
            )
            fused = fusion.fuse([matrices[m] for m in subset], result.weights).argmax(1)
            subsets.append(
                {
                    "models": " + ".join(subset),
                    "weights": " / ".join(f"{w:.3f}" for w in result.weights),
                    "search_accuracy": result.accuracy,
                    "val_accuracy": float((fused[val] == truth[val]).mean())
                    if val.any()
                    else float("nan"),
                    "test_accuracy": float((fused[test] == truth[test]).mean())
                    if test.any()
                    else float("nan"),
                }
            )
    _atomic_tsv(out_table2, pd.DataFrame(subsets))
