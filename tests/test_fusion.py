import tracemalloc

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


def reference_search(scores, labels, step):
    """The search before it was chunked: the whole (grid, clips, classes) array at once."""
    stack = np.stack(scores)
    grid = fusion.simplex_grid(len(stack), step)
    fused = np.einsum("gm,mnc->gnc", grid, stack)
    accuracy = (fused.argmax(2) == labels).mean(1)
    true_prob = fused[:, np.arange(len(labels)), labels].mean(1)
    return grid[np.lexsort((-true_prob, (grid > 0).sum(1), -accuracy))[0]]


def random_case(rng):
    n_models, n_clips, n_classes = rng.integers(1, 5), rng.integers(3, 40), rng.integers(2, 8)
    scores = [rng.dirichlet(np.ones(n_classes), n_clips) for _ in range(n_models)]
    if rng.random() < 0.5:  # coarse scores: many exact ties between weight vectors
        scores = [np.round(s, 1) for s in scores]
    return scores, rng.integers(0, n_classes, n_clips), [0.5, 0.25, 0.1, 0.05][rng.integers(4)]


def test_chunked_search_equals_the_whole_grid(rng):
    for case in range(100):
        scores, labels, step = random_case(rng)
        whole = fusion.search(scores, labels, step, rule="best", chunk_elements=2**40)
        assert whole.weights.tolist() == reference_search(scores, labels, step).tolist()
        size = scores[0].size  # chunks of 1 (a few cases: slow), 7 and 100 weight vectors
        for rows in (1, 7, 100) if case < 10 else (7, 100):
            for rule in ("best", "one-se"):
                a = fusion.search(scores, labels, step, rule=rule, chunk_elements=rows * size)
                b = fusion.search(scores, labels, step, rule=rule, chunk_elements=2**40)
                assert a.weights.tolist() == b.weights.tolist()
                assert (a.accuracy, a.mean_true_prob, a.tolerance) == (
                    b.accuracy,
                    b.mean_true_prob,
                    b.tolerance,
                )
    grid = np.concatenate(list(fusion.grid_chunks(4, 1 / 42, 1000)))
    np.testing.assert_array_equal(grid, fusion.simplex_grid(4, 1 / 42))


def test_nine_models_search_in_bounded_memory(rng):
    labels = rng.integers(0, 7, 100)
    scores = [rng.dirichlet(np.ones(7), 100) for _ in range(9)]
    n_grid = len(fusion.simplex_grid(9, 0.1))
    assert n_grid == 43758  # C(18, 8)
    whole_mb = n_grid * 100 * 7 * 8 / 2**20  # what the unchunked search allocated: 234 MB
    tracemalloc.start()
    try:
        result = fusion.search(scores, labels, step=0.1)
        peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    print(f"\n9 models, step 0.1, 100 clips: peak {peak_mb:.1f} MB (whole grid {whole_mb:.0f} MB)")
    assert peak_mb < 64 < whole_mb / 3
    np.testing.assert_allclose(result.weights.sum(), 1)
    assert result.accuracy >= max((s.argmax(1) == labels).mean() for s in scores)


def seven_clips_and_a_lucky_model():
    """MEAD's shape: 7 validation clips; model A right on 6, model B at chance except that
    it is surely right on A's one miss, so a mixture wins that clip."""
    labels = np.arange(7)
    a = one_hot_scores(labels, 7, 0.5)
    a[6] = [0.4, 0.06, 0.06, 0.06, 0.06, 0.06, 0.3]  # A's miss: true class 6 second
    b = one_hot_scores((labels + 3) % 7, 7, 0.9)  # confidently wrong ...
    b[6] = one_hot_scores([6], 7, 0.9)[0]  # ... except on clip 6
    return [a, b], labels


def test_one_se_rule_keeps_a_lucky_model_out_of_a_tiny_validation_set():
    scores, labels = seven_clips_and_a_lucky_model()
    best = fusion.search(scores, labels, step=0.05, rule="best")
    assert best.accuracy == 1.0 and best.weights[1] > 0  # 7/7 by giving B weight
    shrunk = fusion.search(scores, labels, step=0.05, rule="one-se")
    np.testing.assert_array_equal(shrunk.weights, [1, 0])  # A alone: 6/7, within one clip
    assert shrunk.accuracy == pytest.approx(6 / 7) and shrunk.best_accuracy == 1.0
    assert shrunk.tolerance == 1.0 and shrunk.rule == "one-se" and shrunk.n_clips == 7
    # "auto": the one-SE rule below min_clips validation clips, today's search from it on.
    assert fusion.search(scores, labels, 0.05).weights.tolist() == [1, 0]
    assert (
        fusion.search(scores, labels, 0.05, min_clips=7).weights.tolist() == best.weights.tolist()
    )
    with pytest.raises(ValueError, match="rule='median' must be one of"):
        fusion.search(scores, labels, 0.05, rule="median")


def test_equal_rule_weighs_every_model_the_same_and_searches_nothing():
    scores, labels = seven_clips_and_a_lucky_model()
    # 7 clips cannot tell the lucky model from a good one: below min_clips, one-se.
    small = fusion.search(scores, labels, step=0.05, rule="equal")
    assert small.rule == "one-se" and small.weights.tolist() == [1, 0]
    equal = fusion.search(scores, labels, step=0.05, rule="equal", min_clips=7)
    np.testing.assert_array_equal(equal.weights, [0.5, 0.5])
    fused = (0.5 * scores[0] + 0.5 * scores[1]).argmax(1)
    assert equal.accuracy == (fused == labels).mean() == equal.best_accuracy
    assert equal.rule == "equal" and equal.tolerance == 0 and equal.n_clips == 7
    true = [s[np.arange(7), labels].mean() for s in scores]
    assert equal.mean_true_prob == pytest.approx(np.mean(true))
    three = fusion.search([*scores, scores[0]], labels, step=0.1, rule="equal", min_clips=1)
    np.testing.assert_allclose(three.weights, [1 / 3] * 3)
    with pytest.raises(ValueError, match="step=0.3 must divide 1"):
        fusion.search(scores, labels, 0.3, rule="equal")


def test_one_se_rule_never_falls_below_the_best_single_model(rng):
    for _ in range(100):
        scores, labels, step = random_case(rng)
        result = fusion.search(scores, labels, step, rule="one-se")
        single = max((s.argmax(1) == labels).mean() for s in scores)
        assert result.accuracy >= single
        assert result.accuracy >= result.best_accuracy - result.tolerance / len(labels) - 1e-12
        assert result.tolerance >= 1


def test_cross_validation_holds_out_speakers():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 120)
    good = one_hot_scores(labels, 7, 0.5)
    noise = rng.dirichlet(np.ones(7), 120)
    groups = [f"s{i % 12}" for i in range(120)]
    folds = fusion.cross_validate([noise, good], labels, groups, folds=3, step=0.1, seed=0)
    assert len(folds) == 3 and sum(f["n_clips"] for f in folds) == 120
    assert all(f["accuracy"] == 1.0 and f["weights"][1] > 0.5 for f in folds)
    # Each speaker is held out once, whole: no fold searches on a speaker it scores.
    held = [set(f["held_out"]) for f in folds]
    assert sorted(s for h in held for s in h) == sorted(set(groups))
    assert all(f["n_clips"] == 10 * len(f["held_out"]) for f in folds)  # 10 clips a speaker


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

    image = Image.open(tmp_path / "cm.png").convert("RGB")

    # Each cell is shaded by its share of the true class's clips (white 0, blue 1): a -> a
    # is all of a, c's two clips are half b and half c. Sampled 4 px inside a cell's corner,
    # away from its count (confusion_png's grid: 56 px cells from x 90, y 60).
    def shade(true, predicted):
        return image.getpixel((90 + 56 * predicted + 4, 60 + 56 * true + 4))

    assert shade(0, 0) == shade(1, 1) == (55, 55, 255)
    assert shade(2, 1) == shade(2, 2) == (155, 155, 255)
    assert shade(0, 1) == shade(1, 0) == shade(2, 0) == (255, 255, 255)


def test_a_clip_only_unweighted_models_saw_is_fused_by_them_and_one_none_saw_is_uniform():
    face = np.array([[0.7, 0.2, 0.1], [1 / 3] * 3, [1 / 3] * 3])
    voice = np.array([[0.1, 0.1, 0.8], [0.2, 0.5, 0.3], [1 / 3] * 3])
    silent = np.array([[0.2, 0.6, 0.2], [0.1, 0.3, 0.6], [1 / 3] * 3])
    seen = np.array([[True, False, False], [True, True, False], [True, True, False]])
    fused, how = fusion.fuse_seen([face, voice, silent], [1.0, 0.0, 0.0], seen)
    assert how == ["weights", "equal", "none"]
    np.testing.assert_array_equal(fused[0], face[0])  # the weights, as fuse()
    np.testing.assert_allclose(fused[1], (voice[1] + silent[1]) / 2)  # the two that saw it
    np.testing.assert_allclose(fused[2], [1 / 3] * 3)
    # Weighted models that saw a clip decide it, whatever the others say.
    fused, how = fusion.fuse_seen([face, voice], [0.5, 0.5], seen[:2])
    assert how[1] == "weights"
    np.testing.assert_array_equal(fused, fusion.fuse([face, voice], [0.5, 0.5]))
