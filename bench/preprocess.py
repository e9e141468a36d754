"""Preprocessing through the DAG against the same stages' work in one process (issue 19).

Run from the repository root (2 cores here)::

    python bench/preprocess.py         # RAVDESS speech (960), CK+48 (216), 22 face videos
    python bench/preprocess.py --sets ckplus48 --shards 2 16

For each data set of ../shared/data (the face videos: RAVDESS actor 05 and CREMA-D 1001,
faces detected with MTCNN), every clip (RAVDESS's calm and CK+'s contempt are
folded into neutral here: preprocessing does not read labels, and the bench should cover
every clip) but one goes through, in this order:

1. **in process**: the stage functions the per-clip rules call (``extract_audio``,
   ``spectrograms``, ``opensmile``; ``extract_frames`` then ``align_faces``, or
   ``precropped_faces`` for CK+'s face crops), with the arguments the rules pass at the
   committed cpu preset, clip after clip in this one process with one torch thread (as a
   rule's job runs them), then ``qc_table``; the sum of the timed calls, imports and
   start-up excluded;
2. **workflow**: ``snakemake --cores 2 results/qc.tsv`` in a fresh folder (the repository's
   Snakefile and config with the sheet swapped; ``--config preprocess_shards=N`` for each
   ``--shards`` value), the wall time of the whole command, start-up and DAG included;
3. **one clip added**: the held-back clip joins the sheet and the same command runs again:
   its wall time, and the clips whose per-clip logs were rewritten (only the added one's
   should be).

The ratio is workflow wall time / in-process sum: the DAG costs on top of the work (and wins
from running two jobs at once on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
LABELS = {"calm": "neutral", "contempt": "neutral"}  # every clip runs (see the docstring)


def sheet(paths, labels, speakers, video: bool, audio: bool, face_input: str) -> pd.DataFrame:
    """A clip sheet of these files, every clip in train (preprocessing ignores splits)."""
    paths = [Path(p) for p in paths]
    return pd.DataFrame(
        dict(
            clip=[p.stem for p in paths],
            path=[str(p) for p in paths],
            label=list(labels),
            split="train",
            speaker=list(speakers),
            has_video=video,
            has_audio=audio,
            face_input=face_input,
        )
    )


def ravdess_speech() -> pd.DataFrame:
    """Every RAVDESS speech clip (audio only)."""
    table = pd.read_csv(DATA / "ravdess_speech" / "labels.csv", dtype=str)
    paths = [DATA / "ravdess_speech" / p for p in table["path"]]
    return sheet(paths, table["label"], table["speaker"], False, True, "")


def ckplus48() -> pd.DataFrame:
    """Every CK+48 sequence (frame folders of face crops)."""
    table = pd.read_csv(DATA / "ckplus48" / "labels.csv", dtype=str)
    paths = [DATA / "ckplus48" / p for p in table["path"]]
    return sheet(paths, table["label"], table["speaker"], True, False, "precropped")


CREMA_LABELS = dict(ANG="angry", DIS="disgust", FEA="fear", HAP="happy", NEU="neutral", SAD="sad")


def videos() -> pd.DataFrame:
    """The face videos with speech: RAVDESS actor 05 (1280x720) and CREMA-D 1001 (480x360)."""
    ravdess = pd.read_csv(DATA / "ravdess_av" / "labels.csv", dtype=str)
    crema = sorted((DATA / "crema_d").glob("*.flv"))
    paths = [DATA / "ravdess_av" / p for p in ravdess["path"]] + crema
    labels = list(ravdess["label"]) + [CREMA_LABELS[p.stem.split("_")[2]] for p in crema]
    speakers = ["05"] * len(ravdess) + [p.stem.split("_")[0] for p in crema]
    return sheet(paths, labels, speakers, True, True, "detect")


SETS = {"ravdess_speech": ravdess_speech, "ckplus48": ckplus48, "videos": videos}


def config_for(sheet: Path) -> dict:
    """The repository's config on ``sheet``, every label of the two sets a class."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["samples"] = str(sheet)
    config["labels"]["map"].update(LABELS)
    return config


def in_process(rows: list[dict], config: dict, work: Path) -> dict:
    """The per-clip rules' stage functions on every clip, timed one call at a time."""
    from msff.config import preset
    from msff.devices import set_cpu_threads
    from msff.stages.audio import opensmile, spectrograms
    from msff.stages.faces import align_faces, precropped_faces
    from msff.stages.media import extract_audio, extract_frames
    from msff.stages.qc import qc_table

    set_cpu_threads(1)  # as the rules run the per-clip stages: one thread a job
    p = preset(config)
    audio = {k: v for k, v in p["audio"].items() if k not in ("sample_rate", "silence_dbfs")}
    seconds: dict[str, float] = {}
    caches: dict[str, dict[str, str]] = {}

    def timed(stage, call, *args, **kwargs):
        start = time.perf_counter()
        call(*args, **kwargs)
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start

    for row in rows:
        clip, cached = row["clip"], {}
        out = {s: work / s / f"{clip}.h5" for s in ("frames", "faces", "audio", "spec", "smile")}
        for path in out.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        if row["has_video"]:
            # The align_faces rule: decode, then the faces cache (precropped: resize only).
            timed("align_faces", extract_frames, clip, row["path"], out["frames"], **p["frames"])
            if row["face_input"] == "precropped":
                size = p["faces"]["size"]
                timed("align_faces", precropped_faces, clip, out["frames"], out["faces"], size)
            else:
                timed("align_faces", align_faces, clip, out["frames"], out["faces"], **p["faces"])
            out["frames"].unlink()
            cached["faces"] = str(out["faces"])
        if row["has_audio"]:
            timed(
                "extract_audio",
                extract_audio,
                clip,
                row["path"],
                out["audio"],
                p["audio"]["sample_rate"],
                p["audio"]["silence_dbfs"],
            )
            timed("spectrograms", spectrograms, clip, out["audio"], out["spec"], **audio)
            features = p["models"]["svm_features"]
            timed("opensmile", opensmile, clip, out["audio"], out["smile"], features)
            cached |= dict(audio=str(out["audio"]), spectrograms=str(out["spec"]))
            cached["opensmile"] = str(out["smile"])
        caches[clip] = cached
    records = [dict(r, **{"class": r["label"]}) for r in rows]
    timed("qc", qc_table, records, caches, work / "qc.tsv")
    return seconds


def clip_logs(work: Path) -> dict[str, int]:
    """Per-clip log (logs/<rule>/<clip>.log) -> mtime; the shards' own logs left out."""
    logs = work / "logs"
    if not logs.exists():
        return {}
    return {
        str(p.relative_to(logs)): p.stat().st_mtime_ns
        for p in logs.glob("*/*.log")
        if p.parent.name != "shards"
    }


def workflow(sheet: pd.DataFrame, work: Path, shards: int) -> float:
    """``snakemake --cores 2 results/qc.tsv`` on the sheet; its wall time."""
    sheet.to_csv(work / "clips.tsv", sep="\t", index=False)
    (work / "config.yaml").write_text(yaml.safe_dump(config_for(work / "clips.tsv")))
    cmd = [sys.executable, "-m", "snakemake", "results/qc.tsv", "-s", str(REPO / "Snakefile")]
    cmd += ["-d", str(work), "--configfile", str(work / "config.yaml")]
    cmd += ["--workflow-profile", "none", "--cores", "2"]
    cmd += ["--config", f"preprocess_shards={shards}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"snakemake failed in {work}:\n{proc.stderr[-4000:]}")
    return wall


def main() -> None:
    """Each set: in process, then through the workflow, then one clip added."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument(
        "--shards",
        nargs="+",
        type=int,
        default=[None],
        help="preprocess_shards values to run (default: config.yaml's)",
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/msff-bench-preprocess"))
    args = parser.parse_args()
    committed = yaml.safe_load((REPO / "config.yaml").read_text())["preprocess_shards"]
    shard_values = [s or committed for s in args.shards]
    print(f"# {date.today()}, {platform.node()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    print("# preset cpu (config.yaml as committed); workflow: snakemake --cores 2 results/qc.tsv")
    for name in args.sets:
        sheet = SETS[name]()
        first, added = sheet.iloc[:-1], sheet.iloc[-1:]
        work = args.work / name
        subprocess.run(["rm", "-rf", str(work)], check=True)
        work.mkdir(parents=True)
        config = config_for(work / "unused.tsv")
        stages = in_process(first.to_dict("records"), config, work / "inprocess")
        work_sum = sum(stages.values())
        one = in_process(added.to_dict("records"), config, work / "inprocess_added")
        detail = ", ".join(f"{s} {v:.1f} s" for s, v in stages.items())
        print(f"\n## {name}: {len(first)} clips, then 1 added ({added['clip'].iloc[0]})")
        added_work = sum(one.values())
        print(f"in process: {work_sum:.1f} s ({detail}); the added clip's {added_work:.2f} s")
        for shards in shard_values:
            run = work / f"shards{shards}"
            run.mkdir()
            wall = workflow(first, run, shards)
            before = clip_logs(run)
            rerun = workflow(sheet, run, shards)
            after = clip_logs(run)
            worked = sorted({Path(k).stem for k, v in after.items() if before.get(k) != v})
            print(
                f"preprocess_shards={shards}: workflow {wall:.1f} s = {wall / work_sum:.2f}x the"
                f" in-process sum; rerun after adding one clip {rerun:.1f} s, clips worked on:"
                f" {', '.join(worked) or 'none'}"
            )


if __name__ == "__main__":
    main()
