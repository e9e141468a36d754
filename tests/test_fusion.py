import numpy as np
import pytest

from msff import evaluate, fusion


def test_simplex_grid_covers_the_simplex():
    grid = fusion.simplex_grid(3, 0.25)
    assert len(grid) == 15  # C(4 + 2, 2)
    np.testing.assert_allclose(grid.sum(1), 1)
    assert {tuple(r) for r in grid} >= {(1, 0, 0), (0, 0, 1), (0.5, 0.25, 0.25)}
    assert len(fusion.simplex_grid(4, 1 / 42)) == 14190  # the paper's weights live here
    with pytest.raises(ValueError, match="step=0.3 must divide 1"):
        fusion.simplex_grid(2, 0.3)


def one_hot_scores(predicted, n_classes, confidence):
    scores = np.full((len(predicted), n_classes), (1 - confidence) / (n_classes - 1))
    scores[np.arange(len(predicted)), predicted] = confidence
    return scores


def test_search_finds_complementary_models_and_zeroes_a_harmful_one():
    labels = np.arange(60) % 3
    wrong = (labels + 1) % 3
    # A is right on clips 0-39 (confident), wrong on 40-59 (hesitant); B the other way
    # round; C is confidently wrong everywhere and must get weight 0.
    a = np.where(
        (np.arange(60) < 40)[:, None], one_hot_scores(labels, 3, 0.6), one_hot_scores(wrong, 3, 0.4)
    )
    b = np.where(
        (np.arange(60) >= 20)[:, None],
        one_hot_scores(labels, 3, 0.6),
        one_hot_scores(wrong, 3, 0.4),
    )
    c = one_hot_scores(wrong, 3, 0.9)
    result = fusion.search([a, b, c], labels, step=0.05)
    assert result.accuracy == 1.0
    assert result.weights[2] == 0
    assert result.weights[0] > 0 and result.weights[1] > 0
    assert (fusion.fuse([a], [1]).argmax(1) == labels).mean() == pytest.approx(2 / 3)


def test_ties_go_to_fewer_models():
    labels = np.array([0, 1, 2, 0])
    perfect = one_hot_scores(labels, 3, 0.8)
    also_perfect = one_hot_scores(labels, 3, 0.7)
    result = fusion.search([also_perfect, perfect], labels, step=0.1)
    np.testing.assert_array_equal(result.weights, [0, 1])  # one model, the surer one


def test_cross_validation_holds_out_speakers():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 120)
    good = one_hot_scores(labels, 7, 0.5)
    noise = rng.dirichlet(np.ones(7), 120)
    groups = [f"s{i % 12}" for i in range(120)]
    folds = fusion.cross_validate([noise, good], labels, groups, folds=3, step=0.1, seed=0)
    assert len(folds) == 3 and sum(f["n_clips"] for f in folds) == 120
    assert all(f["accuracy"] == 1.0 and f["weights"][1] > 0.5 for f in folds)


def test_metrics_and_confusion():
    classes = ["angry", "happy", "sad"]
    labels = [0, 0, 1, 1, 1, 2]
    predicted = [0, 1, 1, 1, 2, 2]
    m = evaluate.metrics(labels, predicted, classes)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["recall_angry"] == 0.5 and m["recall_happy"] == pytest.approx(2 / 3)
    assert m["uar"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    table = evaluate.confusion(labels, predicted, classes)
    assert table.to_numpy().sum() == len(labels)
    assert table.loc["happy", "sad"] == 1


def test_confusion_png(tmp_path):
    table = evaluate.confusion([0, 1, 2, 2], [0, 1, 2, 1], ["a", "b", "c"])
    evaluate.confusion_png(table, tmp_path / "cm.png", "test")
    from PIL import Image

    image = Image.open(tmp_path / "cm.png")
    assert image.size[0] > 200 and image.getextrema() != ((255, 255),) * 3
