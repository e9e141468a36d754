import logging

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from msff import datasets, scores, train
from msff.logs import Progress, duration


def test_windows_cover_the_clip_and_loop_short_ones():
    assert [w.tolist() for w in datasets.windows(3, 8, 4)] == [[0, 1, 2, 0, 1, 2, 0, 1]]
    assert datasets.windows(0, 8, 4) == []
    wins = datasets.windows(21, 8, 4)
    assert wins[0].tolist() == list(range(8)) and wins[-1].tolist() == list(range(13, 21))


def test_clip_means_marks_unseen_clips():
    probs = np.array([[0.8, 0.2], [0.6, 0.4], [0.1, 0.9]])
    means, seen = train.clip_means(probs, [0, 0, 2], 3)
    np.testing.assert_allclose(means[0], [0.7, 0.3])
    np.testing.assert_allclose(means[1], [0.5, 0.5])  # no item: uniform
    assert seen.tolist() == [True, False, True]


def test_fit_learns_keeps_the_best_epoch_and_is_seeded():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=generator)
    y = (x[:, 0] > 0).long()
    data = TensorDataset(x, y)
    settings = train.TrainSettings(batch_size=8, lr=0.1, epochs=15, patience=15, seed=3)

    def run():
        train.seed_everything(settings.seed)  # model initialisation too
        model = torch.nn.Linear(5, 2)
        history = train.fit(model, data, data, settings, 2, torch.device("cpu"), log=lambda _: 0)
        return model, history

    model, history = run()
    best = history.epochs[history.best_epoch - 1]
    assert best["val_acc"] == max(e["val_acc"] for e in history.epochs) >= 0.95
    assert history.epochs[1]["lr"] == pytest.approx(0.1 * 0.95)  # decay per epoch
    probs = train.predict(model, data, torch.device("cpu"))
    assert (probs.argmax(1) == y.numpy()).mean() == best["val_acc"]
    again, _ = run()
    torch.testing.assert_close(model.weight, again.weight)


def test_mixup_trains_on_blends_of_the_batch_and_is_seeded():
    """Mixup's targets between two items are soft: the classes are learnt, certainty is not.

    On separable data plain training drives the loss toward 0 and the weights up; with
    mixup the blended targets keep the training loss near their entropy (~0.5 nats at
    Beta(1, 1)) and the weights smaller. Validation sees the items unblended.
    """
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=generator)
    y = (x[:, 0] > 0).long()
    data = TensorDataset(x, y)

    def run(mixup):
        settings = train.TrainSettings(
            batch_size=8, lr=0.1, epochs=30, patience=30, seed=3, mixup=mixup
        )
        train.seed_everything(settings.seed)
        model = torch.nn.Linear(5, 2)
        history = train.fit(model, data, data, settings, 2, torch.device("cpu"), log=lambda _: 0)
        return model, history

    plain, plain_history = run(0.0)
    mixed, mixed_history = run(1.0)
    for model in (plain, mixed):
        probs = train.predict(model, data, torch.device("cpu"))
        assert (probs.argmax(1) == y.numpy()).mean() >= 0.95
    assert plain_history.epochs[-1]["train_loss"] < 0.1
    assert mixed_history.epochs[-1]["train_loss"] > 0.3
    assert mixed.weight.norm() < 0.6 * plain.weight.norm()
    again, _ = run(1.0)
    torch.testing.assert_close(mixed.weight, again.weight)


def test_l2_sp_holds_the_weights_near_their_start_the_more_so_the_fewer_the_clips():
    """L2-SP pulls toward where training started, by strength / the training clips.

    The same 64 items as 64 clips or as 4 clips of 16 items: the data outweigh the start
    in proportion to their clips, so 4 clips barely move the weights from it. Off, the same
    run moves furthest. The start is far from zero, as pretrained weights are: the pull is
    toward it, not toward zero (which weight decay is).
    """
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=generator)
    y = (x[:, 0] > 0).long()

    def moved(l2_sp, owner):
        items = TensorDataset(x, y)
        items.owner = owner  # each item's clip, as the heads' datasets have it
        settings = train.TrainSettings(
            batch_size=8, optimizer="adam", lr=0.05, epochs=20, patience=20, seed=3, l2_sp=l2_sp
        )
        train.seed_everything(settings.seed)
        model = torch.nn.Linear(5, 2)
        with torch.no_grad():
            model.weight.mul_(5)
        start = model.weight.detach().clone()
        train.fit(model, items, items, settings, 2, torch.device("cpu"), log=lambda _: 0)
        accuracy = (train.predict(model, items, torch.device("cpu")).argmax(1) == y.numpy()).mean()
        weight = model.weight.detach()
        return float((weight - start).norm()), float(weight.norm()), accuracy

    each_its_clip, four_clips = np.arange(64), np.repeat(np.arange(4), 16)
    off, _, off_accuracy = moved(0.0, each_its_clip)
    many, _, many_accuracy = moved(2.0, each_its_clip)
    few, from_zero, _ = moved(2.0, four_clips)
    assert off_accuracy >= 0.95 and many_accuracy >= 0.95  # 64 clips outweigh the prior
    assert many < 0.9 * off and few < 0.5 * many
    assert few < 0.5 * from_zero  # held near the start, not shrunk toward zero


class ClipItems(torch.utils.data.Dataset):
    """Items of clips, as the heads' datasets give them: ``owner`` per item, ``labels`` per clip."""

    def __init__(self, x, owner, labels):
        self.x, self.owner, self.labels = x, np.asarray(owner), list(labels)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.labels[self.owner[i]]


def test_validate_on_clips_keeps_the_epoch_of_the_best_clip_accuracy():
    # 40 clips of 6 noisy items each: a clip's mean vote is right more often than an item.
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 40)
    owner = np.repeat(np.arange(40), 6)
    x = torch.tensor(rng.normal(size=(240, 4)) + 0.4 * labels[owner, None], dtype=torch.float32)
    data = ClipItems(x, owner, labels)
    settings = train.TrainSettings(
        batch_size=16, lr=0.05, epochs=6, patience=6, seed=1, validate_on="clips"
    )
    train.seed_everything(1)
    model = torch.nn.Linear(4, 2)
    history = train.fit(model, data, data, settings, 2, torch.device("cpu"), log=lambda _: 0)
    clip_accs = [e["val_clip_acc"] for e in history.epochs]
    best = history.epochs[history.best_epoch - 1]
    assert best["val_clip_acc"] == max(clip_accs) > max(e["val_acc"] for e in history.epochs)
    # here the epoch of the best item accuracy is not that of the best clip accuracy
    by_items = max(history.epochs, key=lambda e: (e["val_acc"], -e["val_loss"]))
    assert by_items["val_clip_acc"] < best["val_clip_acc"]
    # the kept weights score the clips as the kept epoch did
    means, seen = train.clip_means(train.predict(model, data, torch.device("cpu")), owner, 40)
    assert seen.all() and (means.argmax(1) == labels).mean() == best["val_clip_acc"]
    items = train.fit(
        torch.nn.Linear(4, 2), data, data, train.TrainSettings(epochs=1), 2, torch.device("cpu")
    )
    assert "val_clip_acc" not in items.epochs[0]  # items: as before


@pytest.mark.parametrize(
    "validate_on, error",
    [("clips", "owner and labels"), ("frames", "validate_on='frames'")],
    ids=["clips of a set without them", "unknown"],
)
def test_validate_on_clips_needs_the_clip_of_every_item(validate_on, error):
    data = TensorDataset(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    settings = train.TrainSettings(epochs=1, validate_on=validate_on)
    with pytest.raises(ValueError, match=error):
        train.fit(torch.nn.Linear(2, 2), data, data, settings, 2, torch.device("cpu"))


def test_each_epoch_line_says_how_long_at_most_is_left():
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    data = TensorDataset(x, (x[:, 0] > 0).long())
    settings = train.TrainSettings(batch_size=8, epochs=3, patience=3, seed=0)
    lines = []
    train.fit(torch.nn.Linear(3, 2), data, data, settings, 2, torch.device("cpu"), log=lines.append)
    assert [line.split(" | ")[1].split(",")[0] for line in lines[:2]] == [
        "at most 2 epochs left",
        "at most 1 epochs left",
    ]
    assert all(" ETA " in line for line in lines[:2]) and " | " not in lines[2]


def test_progress_of_long_work_is_logged_with_an_eta(caplog):
    caplog.set_level(logging.INFO, logger="msff")
    progress = Progress("clip c", 400, "frames", every_s=0.0)
    for done in (100, 200, 400):
        progress.update(done)
    # Done is not progress: the stage's own last line says so.
    assert [r.getMessage().split(", ETA ")[0] for r in caplog.records] == [
        "clip c: 100 of 400 frames",
        "clip c: 200 of 400 frames",
    ]
    assert duration(42) == "42 s" and duration(600) == "10.0 min" and duration(7200) == "2.0 h"


def test_class_weights():
    weights = train.class_weights([0, 0, 0, 1], 3)
    assert weights[2] == 0 and weights[1] == pytest.approx(3 * weights[0])


def test_scores_file_round_trip_and_checks(tmp_path):
    classes = ["a", "b"]
    path = tmp_path / "m.tsv"
    scores.write(path, ["c1", "c2"], ["train", "val"], [[0.25, 0.75], [0.5, 0.5]], classes)
    table = scores.read(path, classes)
    assert table.loc["c1", "b"] == 0.75 and table.loc["c2", "split"] == "val"
    with pytest.raises(ValueError, match="summing to 1"):
        scores.write(path, ["c1"], ["train"], [[0.3, 0.3]], classes)
    assert scores.read(path, classes).shape[0] == 2  # the bad write left the file alone


def test_uniform_rows_for_clips_a_model_cannot_see():
    rows = scores.uniform(3, 7)
    assert rows.shape == (3, 7)
    np.testing.assert_allclose(rows, 1 / 7)
    assert scores.uniform(0, 7).shape == (0, 7)


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_per_step_schedules_rise_and_fall_within_the_epochs(schedule):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=generator)
    data = TensorDataset(x, (x[:, 0] > 0).long())
    settings = train.TrainSettings(
        batch_size=8, lr=0.1, epochs=10, patience=10, seed=3, schedule=schedule
    )
    train.seed_everything(settings.seed)
    history = train.fit(
        torch.nn.Linear(5, 2), data, data, settings, 2, torch.device("cpu"), log=lambda _: 0
    )
    rates = [e["lr"] for e in history.epochs]  # the rate each epoch started at
    assert len(rates) == 10 and max(rates) <= 0.1 + 1e-9
    if schedule == "cosine":  # from lr down, every step: never up, near 0 at the end
        assert rates[0] == pytest.approx(0.1) and all(np.diff(rates) < 0)
        assert rates[-1] < 0.01
    else:  # warm-up to lr over the first 30 % of the steps, then down
        peak = int(np.argmax(rates))
        assert rates[0] < 0.01 and 1 <= peak <= 4 and rates[peak] > 0.08
        assert rates[-1] < 0.01
    assert history.epochs[history.best_epoch - 1]["val_acc"] >= 0.9


def test_an_unknown_schedule_is_an_error_naming_it():
    data = TensorDataset(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    settings = train.TrainSettings(epochs=1, schedule="step")
    with pytest.raises(ValueError, match="schedule='step'"):
        train.fit(torch.nn.Linear(2, 2), data, None, settings, 2, torch.device("cpu"))
