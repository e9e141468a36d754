"""The spectrogram branch with its input images normalised by speaker: a measurement ahead of code.

Not a preset option yet. On the issue's RAVDESS split (train actors 01-10, val 11-13, test
14-16, calm dropped) this copies the cpu preset's spectrogram caches (made by
``bench/audio_ravdess.py``, which must have run first) with every image less its speaker's
mean per mel band and rate scale (over all of the speaker's clips and segments, each clip
counted once), plus 128 so the images stay uint8 (the preset standardises each image
afterwards), then trains the preset's spectrogram CNN on them with the workflow's own heads,
and its BLSTM with and without ``blstm_speaker_norm``. Prints val and test accuracy of the
BLSTM.

    python bench/spectrogram_speakers.py [--work /tmp/msff-audio-ravdess] [--threads 1]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np

from msff import config, scores
from msff.devices import set_cpu_threads
from msff.heads.audio_cnn import audio_features, finetune_audio_cnn
from msff.heads.blstm import train_blstm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import audio_ravdess  # noqa: E402  (the split and clip table of the audio bench)

REPO = Path(__file__).resolve().parents[1]


def speaker_normalised_copies(clips: list[dict], source: Path, out: Path) -> dict[str, str]:
    """Each clip's spectrogram cache, its images less its speaker's mean band profile."""
    out.mkdir(parents=True, exist_ok=True)
    by_speaker: dict[str, list[str]] = {}
    for c in clips:
        by_speaker.setdefault(c["speaker"], []).append(c["clip"])
    for names in by_speaker.values():
        profiles = []
        for name in names:
            with h5py.File(source / f"{name}.h5", "r") as f:
                profiles.append(f["images"][()].astype(np.float64).mean(axis=(1, 3)))
        band = np.mean(profiles, axis=0)  # (rate scales, mel bands)
        for name in names:
            shutil.copy(source / f"{name}.h5", out / f"{name}.h5")
            with h5py.File(out / f"{name}.h5", "a") as f:
                images = f["images"][()].astype(np.float64) - band[:, None, :, None] + 128
                f["images"][...] = np.clip(np.round(images), 0, 255).astype(np.uint8)
    return {c["clip"]: str(out / f"{c['clip']}.h5") for c in clips}


def main() -> None:
    """Train the cpu preset's spectrogram CNN and BLSTM on speaker-normalised images."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/ravdess_speech")
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--work", type=Path, default=Path("/tmp/msff-audio-ravdess"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    set_cpu_threads(args.threads)
    cfg = config.load(args.config)
    cfg["preset"] = "cpu"
    classes = cfg["labels"]["classes"]
    split = {part: audio_ravdess.actors(ids) for part, ids in audio_ravdess.SPLIT.items()}
    table = audio_ravdess.clip_records(args.data, cfg["labels"], split)
    clips = table[["clip", "class", "split", "speaker"]].to_dict("records")
    audio_params = config.preset(cfg)["audio"]
    key = hashlib.sha1(json.dumps(audio_params, sort_keys=True).encode()).hexdigest()[:8]
    source = args.work / f"spectrograms-{key}"
    if not all((source / f"{c['clip']}.h5").exists() for c in clips):
        raise SystemExit(f"{source}: run bench/audio_ravdess.py first (its caches)")
    out = args.work / "speaker-images"
    spectrograms = speaker_normalised_copies(clips, source, out / "spectrograms")
    heads = config.head_arguments(cfg)
    cnn = str(out / "vgg19_audio_cnn.pt")
    finetune_audio_cnn(
        clips, spectrograms, cnn, str(out / "vgg19_audio_cnn.json"), classes,
        weights=None, config=cfg, **heads["audio_cnn"],
    )  # fmt: skip
    audio_features(cnn, clips, spectrograms, str(out / "vgg19_audio.h5"))
    for prior in (0.0, 5.0):
        scored = out / f"vgg19_blstm_audio_{prior:g}.tsv"
        train_blstm(
            str(out / "vgg19_audio.h5"), clips, str(scored), str(scored.with_suffix(".pt")),
            str(scored.with_suffix(".json")), classes, unseen_note="no audio",
            **dict(heads["audio_blstm"], speaker_norm=prior),
        )  # fmt: skip
        rows = scores.read(scored, classes)
        for part in ("val", "test"):
            picked = [c for c in clips if c["split"] == part]
            truth = np.array([classes.index(c["class"]) for c in picked])
            found = rows.loc[[c["clip"] for c in picked], classes].to_numpy().argmax(axis=1)
            print(f"blstm_speaker_norm {prior:g}: {part} accuracy {(found == truth).mean():.3f}")


if __name__ == "__main__":
    main()
