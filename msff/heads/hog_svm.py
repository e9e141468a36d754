"""HOG + SVM on aligned faces: the face branch's hand-crafted model, the openSMILE SVM's twin.

Each clip is the mean HOG descriptor of its found faces (:mod:`msff.hog`), standardised,
into the same SVM as the audio baseline (:mod:`msff.svm`: RBF kernel, C and gamma by
speaker-grouped CV on the training clips, probabilities by config ``svm.probability``).
No network, no pretrained weights: it trains in seconds on any machine and gives the
fusion a view of the face that the CNNs, trained on other faces, lack (bench/README.md).
A clip with no face found gets the uniform row and a note.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from msff import hog, svm
from msff.heads.svm import fit_and_score

UNSEEN = "no face found"


def train_hog_svm(
    clips: list[dict],
    faces_h5: dict[str, str],
    out_scores: str | Path,
    out_model: str | Path,
    out_fitted: str | Path,
    classes: list[str],
    **options,
) -> None:
    """Fit on the training clips' faces, write class scores of every clip of every split.

    ``clips`` are sheet records (clip, class, split, speaker); ``faces_h5`` maps a clip to
    its aligned faces cache (a clip without video has none). ``options`` are
    :func:`msff.heads.svm.fit_and_score`'s (config ``head_arguments``' ``hog_svm``).
    """
    features = [hog.clip_descriptor(faces_h5.get(c["clip"])) for c in clips]
    fit_and_score(
        "hog_svm",
        clips,
        features,
        ["" if x is not None else UNSEEN for x in features],
        out_scores,
        out_model,
        out_fitted,
        classes,
        **options,
    )


def load(fitted_path: str | Path) -> svm.FittedSvm:
    """The fitted SVM that ``train_hog_svm`` wrote (arrays only: nothing is unpickled)."""
    return svm.load_svm(fitted_path)


def infer(fitted: svm.FittedSvm, faces_h5: str | Path) -> np.ndarray | None:
    """Class probabilities of one clip; None when no face was found in it."""
    x = hog.clip_descriptor(faces_h5)
    return None if x is None else svm.predict_scores(fitted, x[None])[0]
