"""One training epoch of every head on real clips, through the functions the rules call.

Run from the repository root (``nice``: the machine is shared)::

    nice -n 10 python bench/epochs.py                          # demo/clips.tsv, cpu preset
    python bench/epochs.py --preset paper --device cuda --sheet clips.tsv --out epochs.json

The caches are built first by the stages' own functions (:mod:`msff.stages`: frames,
aligned faces, audio, spectrograms, openSMILE) at the preset's sizes; each head is then
trained for one epoch by the function its rule runs (:mod:`msff.heads`), with the
preset's arguments (:func:`msff.config.head_arguments`) but ``epochs = 1``, a checkpoint
as the rules write one, and the features the BLSTMs read made as the rules make them: the
frame CNN writes its features in the pass that scores the frames (a row times the second
pass over every face, ``cnn_features``, that this saves), ``audio_features`` those of the
spectrogram CNN. Per head it reports the training and validation items, the epoch's
seconds (the training pass and the validation pass, from the model's provenance
history), the wall and CPU seconds of the whole call (building the network, the epoch,
scoring every clip, saving; CPU seconds count every thread, and on a shared machine say
more than the wall clock) and, on a card, the peak of ``torch.cuda.max_memory_allocated``.
The SVM has no epochs: its row is the whole fit (grid search, refit, calibration) on the
training clips with openSMILE features.

``--seconds S`` cuts every clip to S seconds from ``--start`` first (the smoke test of
``bench/gpu.py`` runs the paper's sizes on a CPU that way).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from msff import config as msff_config
from msff import media, sheet
from msff.devices import set_cpu_threads
from msff.heads import audio_cnn, blstm, c3d, common, frame_cnn, svm
from msff.stages.audio import opensmile, spectrograms
from msff.stages.faces import align_faces
from msff.stages.media import extract_audio, extract_frames

REPO = Path(__file__).resolve().parents[1]
HEADS = ["frame CNN (fer2013)", "BLSTM (fer2013 features)", "C3D", "audio CNN (VGG-19)"]
HEADS += ["BLSTM (VGG-19 features)", "SVM fit (openSMILE)"]


def load_config(path: Path, preset: str, epochs: int = 1) -> dict:
    """The config file with ``preset`` chosen and the preset's epochs set to ``epochs``."""
    cfg = msff_config.load(path)
    cfg["preset"] = preset
    cfg["presets"][preset]["models"]["epochs"] = epochs
    return cfg


def clip_records(sheet_path: Path, cfg: dict, limit: int | None = None) -> list[dict]:
    """The sheet's clips that run (label mapped), with path and streams; the first ``limit``."""
    table = sheet.classify(sheet.read(sheet_path), cfg["labels"])
    table = table[table.excluded == ""]
    records = []
    for row in table.to_dict("records")[:limit]:
        folder = Path(row["path"]).is_dir()
        has_video = str(row.get("has_video", True)) not in ("False", "false", "0")
        has_audio = str(row.get("has_audio", True)) not in ("False", "false", "0") and not folder
        records.append(row | dict(has_video=has_video, has_audio=has_audio))
    return records


def cut_clips(records: list[dict], work: Path, start: float, seconds: float) -> None:
    """Replace each clip's file by ``seconds`` of it from ``start`` (re-encoded, in ``work``)."""
    folder = work / "cut"
    folder.mkdir(parents=True, exist_ok=True)
    for r in records:
        suffix = ".mp4" if r["has_video"] else ".flac"
        codecs = ["-c:v", "libx264", "-crf", "18", "-c:a", "aac"] if r["has_video"] else []
        out = folder / f"{r['clip']}{suffix}"
        cmd = [media.ffmpeg_exe(), "-v", "error", "-y", "-ss", str(start), "-i", r["path"]]
        subprocess.run([*cmd, "-t", str(seconds), *codecs, str(out)], check=True)
        r["path"] = str(out)


def build_caches(records: list[dict], cfg: dict, work: Path, device: str) -> dict:
    """Every clip's caches by the stages' functions; cache kind -> {clip: path}, and seconds."""
    preset = msff_config.preset(cfg)
    caches = {"faces": {}, "spectrograms": {}, "opensmile": {}}
    started = time.perf_counter()
    audio = {k: v for k, v in preset["audio"].items() if k not in ("sample_rate", "silence_dbfs")}
    for r in records:
        clip, out = r["clip"], {k: work / k / f"{r['clip']}.h5" for k in caches}
        for path in out.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        if r["has_video"]:
            frames = work / "frames" / f"{clip}.h5"
            frames.parent.mkdir(exist_ok=True)
            extract_frames(clip, r["path"], frames, **preset["frames"], ffmpeg=cfg["ffmpeg"])
            align_faces(clip, frames, out["faces"], **dict(preset["faces"], device=device))
            frames.unlink()
            caches["faces"][clip] = str(out["faces"])
        if r["has_audio"]:
            wave = work / "audio" / f"{clip}.h5"
            wave.parent.mkdir(exist_ok=True)
            sample_rate, silence = preset["audio"]["sample_rate"], preset["audio"]["silence_dbfs"]
            extract_audio(clip, r["path"], wave, sample_rate, silence, cfg["ffmpeg"])
            spectrograms(clip, wave, out["spectrograms"], **audio)
            opensmile(clip, wave, out["opensmile"], preset["models"]["svm_features"])
            caches["spectrograms"][clip] = str(out["spectrograms"])
            caches["opensmile"][clip] = str(out["opensmile"])
    caches["seconds"] = time.perf_counter() - started
    return caches


class ItemCounter:
    """Wraps ``common.fit_head`` to note how many training and validation items it got."""

    def __init__(self):
        self.fit_head, self.items = common.fit_head, (0, 0)

    def __call__(self, model, train_set, val_set, *args, **kwargs):
        """Note the item counts, then train as ``common.fit_head`` does."""
        self.items = (len(train_set), len(val_set) if val_set is not None else 0)
        return self.fit_head(model, train_set, val_set, *args, **kwargs)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None  # no card: there is no GPU memory to report
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def time_heads(
    records: list[dict], caches: dict, cfg: dict, work: Path, device: str, neural_only=False
) -> list[dict]:
    """One epoch of every head, in the order of the DAG; one dict per head.

    ``neural_only``: leave out the SVM (scikit-learn, on the CPU whatever the device) and
    the timing of the second pass over the faces that one pass saves.
    """
    dev = torch.device(device)
    heads = msff_config.head_arguments(cfg)
    classes = cfg["labels"]["classes"]
    clips = [{k: r[k] for k in ("clip", "class", "split", "speaker")} for r in records]
    heard = [c for c in clips if c["clip"] in caches["opensmile"]]
    out = work / "models"
    out.mkdir(exist_ok=True)
    counter = ItemCounter()
    common.fit_head = counter
    rows = []

    def timed(head: str, provenance: Path | None, call) -> None:
        counter.items = (0, 0)
        _peak_reset(dev)
        started, cpu = time.perf_counter(), time.process_time()
        call()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        epoch = None
        if provenance is not None:
            epoch = json.loads(provenance.read_text())["history"]["epochs"][0]["seconds"]
        else:  # the SVM: no epochs, its training clips are the heard ones
            counter.items = (sum(c["split"] == "train" for c in heard), 0)
        train_items, val_items = counter.items
        rate = (train_items + val_items) / epoch if epoch else None
        rows.append(
            dict(head=head, train_items=train_items, val_items=val_items, epoch_s=epoch)
            | dict(items_s=rate, call_s=seconds, call_cpu_s=cpu, peak_gpu_mb=_peak_mb(dev))
        )

    def kept(name):  # a model file, its provenance, and its checkpoint, as the rules name them
        return dict(
            out_model=str(out / f"{name}.pt"),
            out_provenance=str(out / f"{name}.json"),
            checkpoint=work / "checkpoints" / f"{name}.pt",
        )

    def scored(name):
        return str(work / "scores" / f"{name}.tsv")

    (work / "scores").mkdir(exist_ok=True)
    (work / "features").mkdir(exist_ok=True)
    try:
        features = str(work / "features" / "fer2013.h5")
        timed(
            HEADS[0],
            out / "fer2013_cnn.json",
            lambda: frame_cnn.finetune_cnn(
                "fer2013",
                clips,
                caches["faces"],
                **kept("fer2013_cnn"),
                out_scores=scored("fer2013_frames"),
                classes=classes,
                weights=cfg["weights"]["fer2013"],
                device=device,
                out_features=features,
                **heads["frame_cnn"],
            ),
        )
        if not neural_only:
            # The second pass over every face that the cnn_features rule made before the
            # frame CNN wrote its features from the pass that scores the frames (its job's
            # start-up, a Python process importing torch, came on top).
            started, cpu = time.perf_counter(), time.process_time()
            again = str(work / "features" / "fer2013_second_pass.h5")
            model = str(out / "fer2013_cnn.pt")
            frame_cnn.cnn_features(model, clips, caches["faces"], again, device)
            rows.append(
                dict(head="frame CNN: second pass over the faces (saved)", train_items=None)
                | dict(val_items=None, epoch_s=None, items_s=None)
                | dict(call_s=time.perf_counter() - started, call_cpu_s=time.process_time() - cpu)
                | dict(peak_gpu_mb=_peak_mb(dev))
            )
        timed(
            HEADS[1],
            out / "fer2013_blstm.json",
            lambda: blstm.train_blstm(
                features,
                clips,
                out_scores=scored("fer2013_blstm"),
                **kept("fer2013_blstm"),
                classes=classes,
                unseen_note="no face found",
                device=device,
                **heads["blstm"],
            ),
        )
        timed(
            HEADS[2],
            out / "c3d.json",
            lambda: c3d.train_c3d(
                clips,
                caches["faces"],
                out_scores=scored("c3d"),
                **kept("c3d"),
                classes=classes,
                weights=cfg["weights"]["c3d"],
                device=device,
                **heads["c3d"],
            ),
        )
        timed(
            HEADS[3],
            out / "vgg19_audio_cnn.json",
            lambda: audio_cnn.finetune_audio_cnn(
                clips,
                caches["spectrograms"],
                **kept("vgg19_audio_cnn"),
                classes=classes,
                weights=cfg["weights"]["vgg19"],
                device=device,
                **heads["audio_cnn"],
            ),
        )
        features = str(work / "features" / "vgg19_audio.h5")
        model = str(out / "vgg19_audio_cnn.pt")
        audio_cnn.audio_features(model, clips, caches["spectrograms"], features, device)
        timed(
            HEADS[4],
            out / "vgg19_blstm_audio.json",
            lambda: blstm.train_blstm(
                features,
                clips,
                out_scores=scored("vgg19_blstm_audio"),
                **kept("vgg19_blstm_audio"),
                classes=classes,
                unseen_note="no audio, or a silent track",
                device=device,
                **heads["audio_blstm"],
            ),
        )
        if not neural_only:
            timed(
                HEADS[5],
                None,
                lambda: svm.svm_opensmile(
                    clips,
                    caches["opensmile"],
                    scored("opensmile_svm"),
                    out / "opensmile_svm.json",
                    out / "opensmile_svm.h5",
                    classes,
                    **heads["svm"],
                ),
            )
    finally:
        common.fit_head = counter.fit_head
    return rows


def markdown(rows: list[dict]) -> str:
    """Rows of one kind as a markdown table: floats to 2 decimals, None as a dash."""

    def cell(v):
        return "–" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)

    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def machine(device: str) -> str:
    """One line: the machine, torch, the device, the date, the load average now."""
    card = torch.cuda.get_device_name(0) if device.startswith("cuda") else "no GPU used"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {card}, {date.today()}, load average {load}"
    )


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (see the module's docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sheet", type=Path, default=REPO / "demo" / "clips.tsv")
    p.add_argument("--config", type=Path, default=REPO / "config.yaml")
    p.add_argument("--preset", default="cpu", help="a preset of the config (cpu, paper)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=2, help="CPU threads, as the rules use")
    p.add_argument("--clips", type=int, default=None, help="the first N clips of the sheet")
    p.add_argument("--seconds", type=float, default=None, help="cut every clip to this long")
    p.add_argument("--start", type=float, default=1.0, help="where the cut starts, seconds")
    p.add_argument("--work", type=Path, default=None, help="folder for caches and models")
    p.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    return p.parse_args(argv)


def main(argv=None) -> None:
    """Build the caches, time every head, print the table."""
    args = parse_args(argv)
    print(machine(args.device), "(start)")
    set_cpu_threads(args.threads)
    cfg = load_config(args.config, args.preset)
    records = clip_records(args.sheet, cfg, args.clips)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        if args.seconds:
            cut_clips(records, work, args.start, args.seconds)
        caches = build_caches(records, cfg, work, args.device)
        rows = time_heads(records, caches, cfg, work, args.device)
    print(machine(args.device))
    print(f"{len(records)} clips of {args.sheet}, preset {args.preset}, device {args.device}")
    print(f"caches built in {caches['seconds']:.1f} s\n")
    print(markdown(rows))
    if args.out:
        args.out.write_text(json.dumps(dict(preset=args.preset, rows=rows), indent=2))


if __name__ == "__main__":
    main()
