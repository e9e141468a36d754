"""Resumable training and non-finite losses in ``msff.train.fit``, on real speech.

The training set is the spectrogram segments of four real RAVDESS clips with the paper's
noise augmentation (drawn from the dataset's own numpy Generator), shuffled by the
DataLoader's generator, through a small net with dropout (torch's generator): a resumed
run matches the run never stopped only if every one of those generators is restored.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from msff import train
from msff.datasets import SpectrogramSegments
from msff.errors import MsffError, TrainingError
from msff.stages.audio import spectrograms
from msff.stages.media import extract_audio

from .conftest import DATA, REPO

SPEECH = {  # RAVDESS actor 03, strong intensity: label -> file
    0: DATA / "ravdess_speech" / "Actor_03" / "03-01-05-02-01-01-03.flac",  # angry
    3: DATA / "ravdess_speech" / "Actor_03" / "03-01-03-02-01-01-03.flac",  # happy
    4: DATA / "ravdess_speech" / "Actor_03" / "03-01-04-02-01-01-03.flac",  # sad
    5: DATA / "ravdess_speech" / "Actor_03" / "03-01-08-02-01-01-03.flac",  # surprise
}
# l2_sp: the weights are pulled toward their start, which a resumed run must keep too.
SETTINGS = train.TrainSettings(
    batch_size=32, optimizer="adam", lr=0.01, epochs=5, patience=5, seed=1, l2_sp=1.0
)


@pytest.fixture(scope="module")
def caches(tmp_path_factory) -> dict[int, str]:
    folder = tmp_path_factory.mktemp("speech")
    out = {}
    for label, path in SPEECH.items():
        audio = folder / f"{label}.audio.h5"
        assert extract_audio(str(label), str(path), audio, 16000, -60) == ""
        out[label] = str(folder / f"{label}.h5")
        assert (
            spectrograms(str(label), audio, out[label], [1.0, 0.5], 300, 0.5, 25, 5, 48, 80) == ""
        )
    return out


def prepare(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images[:, None]).float() / 255


def datasets(caches: dict) -> tuple[SpectrogramSegments, SpectrogramSegments]:
    paths, labels = [caches[k] for k in sorted(caches)], sorted(caches)
    train_set = SpectrogramSegments(paths, labels, True, prepare, seed=7)  # noise on
    return train_set, SpectrogramSegments(paths, labels, False, prepare)


def run(caches: dict, checkpoint=None, log=lambda _: None, settings=SETTINGS, sets=None):
    train.seed_everything(settings.seed)  # the initial weights too
    model = nn.Sequential(nn.AvgPool2d(4), nn.Flatten(), nn.Dropout(0.3), nn.Linear(144, 7))
    train_set, val_set = sets or datasets(caches)
    history = train.fit(
        model,
        train_set,
        val_set,
        settings,
        7,
        torch.device("cpu"),
        log=log,
        checkpoint=checkpoint,
        name="tiny",
    )
    return model, history


def child(caches_json: str, checkpoint: str, workers: str = "0") -> None:
    """Train with a checkpoint; once epoch 3 is trained, say so and wait to be killed."""

    def log(line: str) -> None:
        if line.startswith("epoch=3 "):
            print("epoch 3 trained", flush=True)
            sys.stdin.readline()  # blocks: the parent SIGKILLs this process here

    caches = {int(k): v for k, v in json.loads(caches_json).items()}
    run(caches, checkpoint, log, replace(SETTINGS, loader_workers=int(workers)))


def without_seconds(history: train.History) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history.epochs]


# 2 DataLoader workers (train.loader_workers, for GPU machines): each augments with a seed
# drawn from the loader's generator, which the checkpoint keeps.
@pytest.mark.parametrize("workers", [0, 2])
def test_training_killed_then_resumed_equals_the_run_never_stopped(tmp_path, caches, workers):
    settings = replace(SETTINGS, loader_workers=workers)
    checkpoint = tmp_path / "checkpoints" / "tiny.pt"
    code = "import sys; from tests.test_checkpoint import child; child(*sys.argv[1:])"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(tmp_path / "child.err", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, json.dumps(caches), str(checkpoint), str(workers)],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        line = proc.stdout.readline()
        assert line == "epoch 3 trained\n", (tmp_path / "child.err").read_text()
        proc.send_signal(signal.SIGKILL)  # during epoch 3: its checkpoint is not written
        assert proc.wait() == -signal.SIGKILL
        proc.stdin.close()
        proc.stdout.close()
    saved = torch.load(checkpoint, weights_only=True)
    assert [row["epoch"] for row in saved["history"]["epochs"]] == [1, 2]
    assert not list(checkpoint.parent.glob(".*.tmp"))  # no half-written file

    lines = []
    resumed, resumed_history = run(caches, checkpoint, lines.append, settings)
    assert lines[0] == f"checkpoint {checkpoint}: resuming after epoch 2"
    assert lines[1].startswith("epoch=3 ")
    assert not checkpoint.exists()  # deleted once training ended

    model, history = run(caches, settings=settings)
    assert without_seconds(resumed_history) == without_seconds(history)
    assert len(history.epochs) == SETTINGS.epochs
    assert resumed_history.best_epoch == history.best_epoch
    for (name, a), (_, b) in zip(
        model.state_dict().items(), resumed.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    # The augmentation drew from the dataset's generator: resuming had to restore it.
    assert len({row["train_loss"] for row in history.epochs}) == SETTINGS.epochs


def test_each_loader_worker_draws_augmentation_of_its_own(caches):
    """Two workers, one item each: the noise added to each is not the same draw."""
    train_set, clean_set = datasets(caches)
    loader = train._loader(train_set, 1, False, 0, torch.device("cpu"), workers=2)
    noisy = [x for x, _ in loader][:2]  # item 0 from worker 0, item 1 from worker 1
    noise = [noisy[i][0] - clean_set[i][0] for i in range(2)]
    assert all(bool(n.abs().sum() > 0) for n in noise)
    # Workers copying one generator would flip the very same pixels to salt and pepper.
    flipped = [n.abs() > 0.5 for n in noise]
    assert not torch.equal(flipped[0], flipped[1])
    # The same loader seed, the same draws: a run is reproducible with workers.
    again = [x for x, _ in train._loader(train_set, 1, False, 0, torch.device("cpu"), 2)][:2]
    for a, b in zip(noisy, again, strict=True):
        assert torch.equal(a, b)


def test_a_checkpoint_of_other_settings_is_ignored(tmp_path, caches):
    checkpoint = tmp_path / "tiny.pt"

    def stop(line):
        if line.startswith("epoch=2 "):
            raise KeyboardInterrupt  # a stop between epochs 2 and 3

    with pytest.raises(KeyboardInterrupt):
        run(caches, checkpoint, stop)
    assert checkpoint.exists()
    other = train.TrainSettings(**{**vars(SETTINGS), "lr": 0.02, "epochs": 3, "patience": 3})
    lines = []
    _, history = run(caches, checkpoint, lines.append, settings=other)
    assert "from other settings, data or model; training from epoch 1" in lines[0]
    assert [row["epoch"] for row in history.epochs] == [1, 2, 3]
    _, fresh = run(caches, settings=other)
    assert without_seconds(history) == without_seconds(fresh)


class Poisoned(Dataset):
    """A real dataset whose item ``index`` turns to NaN from pass ``from_pass`` on."""

    def __init__(self, dataset: Dataset, index: int, from_pass: int):
        self.dataset, self.index, self.from_pass, self.calls = dataset, index, from_pass, 0
        self.labels, self.owner = dataset.labels, dataset.owner

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        self.calls += 1
        x, y = self.dataset[i]
        if i == self.index and self.calls > (self.from_pass - 1) * len(self):
            x = torch.full_like(x, float("nan"))
        return x, y


def test_a_nan_training_input_stops_training_naming_model_epoch_and_batch(tmp_path, caches):
    train_set, val_set = datasets(caches)
    poisoned = Poisoned(train_set, index=5, from_pass=3)
    checkpoint = tmp_path / "tiny.pt"
    one_item = train_set[5][0].numel()
    match = rf"^tiny: epoch 3: training set, batch \d+: the input holds {one_item} NaN or infinite"
    with pytest.raises(TrainingError, match=match) as err:
        run(caches, checkpoint, sets=(poisoned, val_set))
    assert isinstance(err.value, MsffError)
    # What was kept is epochs 1 and 2: finite weights, the best among them.
    saved = torch.load(checkpoint, weights_only=True)
    assert [row["epoch"] for row in saved["history"]["epochs"]] == [1, 2]
    assert saved["history"]["best_epoch"] in (1, 2)
    assert all(torch.isfinite(v).all() for v in saved["best_state"].values())


def test_a_nan_validation_input_stops_training_too(caches):
    train_set, val_set = datasets(caches)
    match = r"^tiny: epoch 1: validation set, batch 1: the input holds \d+ NaN or infinite"
    with pytest.raises(TrainingError, match=match):
        run(caches, sets=(train_set, Poisoned(val_set, index=0, from_pass=1)))


def test_a_diverging_loss_on_finite_inputs_is_told_apart(caches):
    # A learning rate no net survives: the weights overflow, the inputs stay finite.
    wild = train.TrainSettings(**{**vars(SETTINGS), "optimizer": "sgd", "lr": 1e37})
    with pytest.raises(TrainingError, match=r"^tiny: epoch \d: the training loss is (nan|inf) on"):
        run(caches, settings=wild)


def test_nan_in_a_features_file_names_the_model_file_clip_and_rows(tmp_path, caches):
    """A BLSTM on real speech: per segment, the mean of each spectrogram row (48 values)."""
    from msff import cache
    from msff.heads.blstm import train_blstm

    clips, per_clip = [], []
    for i, (label, path) in enumerate(sorted(caches.items())):
        with h5py.File(path) as f:
            rows = f["images"][0].mean(axis=2).astype(np.float32)  # scale 1.0: (K, 48)
        clips.append(
            dict(clip=f"c{label}", split="train" if i < 3 else "val", **{"class": str(label)})
        )
        per_clip.append(rows)
    per_clip[1][[2, 3], 7] = np.nan  # two frames of the second clip
    features = tmp_path / "features.h5"
    cache.write_features(
        features,
        dict(backbone="vgg19", fc_width=48, weights="none"),
        zip([c["clip"] for c in clips], per_clip, strict=True),
    )
    out = {k: tmp_path / f"vgg19_blstm_audio.{k}" for k in ("tsv", "pt", "json")}
    match = (
        rf"^vgg19_blstm_audio: {features}: clip 'c3' \(train\): 2 of {per_clip[1].size} "
        rf"feature values are NaN or infinite, in rows \[2, 3\] of {len(per_clip[1])}"
    )
    with pytest.raises(TrainingError, match=match):
        train_blstm(
            str(features),
            clips,
            out["tsv"],
            out["pt"],
            out["json"],
            [str(k) for k in sorted(caches)],
            SETTINGS,
            hidden=8,
            window=8,
            stride=4,
            unseen_note="nothing heard",
        )
    assert not [p for p in out.values() if p.exists()]  # no scores of a clip never seen
