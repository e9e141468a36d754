"""Peak memory of every per-clip stage and of ``msff predict`` against the length of a video.

Run from the repository root (``nice``: the machine is shared)::

    nice -n 10 python bench/memory.py                       # 1 and 10 minutes, cpu preset
    nice -n 10 python bench/memory.py --minutes 1 10 60 --predict results

A real RAVDESS take (1280x720, speech) is scaled once to ``--size`` (640x360) and then
looped with ``ffmpeg -stream_loop`` (stream copy: no further re-encoding) to each length,
audio included. Each stage then runs on it in a child process of its own, as its rule runs
it (extract_frames -> align_faces, extract_audio -> spectrograms and opensmile, with the
preset's values from config.yaml). Two peaks are taken: the largest resident set of one
process of the command (``/usr/bin/time``'s maximum RSS: the Python process, ffmpeg is
smaller), and the proportional set size (PSS) of the command and everything it starts
(ffmpeg), summed and sampled every 50 ms: roughly what a cluster's memory limit counts.
PSS, not RSS: a process forked to start ffmpeg shares its parent's pages until it execs,
and RSS would count them twice. A stage's child also prints its RSS once msff (and torch,
for the face stages) is imported as its rule's script imports it: a floor the stage
cannot go below.

With ``--predict RESULTS`` (a finished workflow run's results folder), ``python -m msff
predict`` runs on each long video too. The goal (issue 17): flat in length, at most 1.5 GB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "data" / "ravdess_av" / "01-01-03-01-01-02-05.mp4"
STAGES = ["extract_frames", "align_faces", "extract_audio", "spectrograms", "opensmile"]
GOAL_MB = 1536
SAMPLE_S = 0.05


def child(stage: str, spec_path: str) -> None:
    """One stage on one video, as its rule runs it; prints its RSS after the imports.

    The child imports what the stage's rule script imports, no more: the audio stages do
    not import torch (the face stages do, and set its threads as their rule does).
    """
    import resource

    from msff import config

    spec = json.loads(Path(spec_path).read_text())
    if stage in ("extract_frames", "align_faces"):
        from msff.devices import set_cpu_threads
        from msff.stages.faces import align_faces
        from msff.stages.media import extract_frames

        set_cpu_threads(spec["threads"])
    elif stage == "extract_audio":
        from msff.stages.media import extract_audio
    else:
        from msff.stages.audio import opensmile, spectrograms
    preset = config.preset(config.load(REPO / "config.yaml") | {"preset": spec["preset"]})
    work, video = Path(spec["work"]), spec["video"]
    imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    audio = {k: v for k, v in preset["audio"].items() if k not in ("sample_rate", "silence_dbfs")}
    if stage == "extract_frames":
        error = extract_frames("long", video, work / "frames.h5", **preset["frames"])
    elif stage == "align_faces":
        error = align_faces("long", work / "frames.h5", work / "faces.h5", **preset["faces"])
    elif stage == "extract_audio":
        sound = (preset["audio"]["sample_rate"], preset["audio"]["silence_dbfs"])
        error = extract_audio("long", video, work / "audio.h5", *sound)
    elif stage == "spectrograms":
        error = spectrograms("long", work / "audio.h5", work / "spectrograms.h5", **audio)
    elif stage == "opensmile":
        features = preset["models"]["svm_features"]
        error = opensmile("long", work / "audio.h5", work / "opensmile.h5", features)
    else:
        raise ValueError(f"stage={stage!r} is not one of {STAGES}")
    if error:
        raise RuntimeError(error)
    print("RESULT " + json.dumps({"imported_mb": imported}))


def tree_pss(proc: psutil.Process) -> int:
    """Proportional set size of a process and all its descendants, in bytes."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def measure(cmd: list[str]) -> dict:
    """Run ``cmd``: its largest process's peak RSS, its tree's peak PSS, wall time, RESULT."""
    timed = ["/usr/bin/time", "-f", "MAXRSS_KB %M", *cmd]
    start = time.perf_counter()
    popen = subprocess.Popen(timed, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc, peak = psutil.Process(popen.pid), 0
    while popen.poll() is None:
        try:
            peak = max(peak, tree_pss(proc))
        except psutil.NoSuchProcess:
            break
        time.sleep(SAMPLE_S)
    out, err = popen.communicate()
    if popen.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    result = {"tree_pss_mb": peak / 2**20, "seconds": time.perf_counter() - start}
    for line in err.splitlines():
        if line.startswith("MAXRSS_KB "):
            result["max_rss_mb"] = int(line.split()[1]) / 1024
    for line in out.splitlines():
        if line.startswith("RESULT "):
            result |= json.loads(line[len("RESULT ") :])
    result["stdout_lines"] = len(out.splitlines())
    return result


def long_video(folder: Path, minutes: float, size: str) -> Path:
    """The real take scaled to ``size`` once, then looped (stream copy) to ``minutes``."""
    from msff import media

    exe = [media.ffmpeg_exe(), "-v", "error", "-y"]
    short = folder / f"short_{size}.mp4"
    if not short.exists():
        scale = ["-vf", f"scale={size.replace('x', ':')}", "-c:v", "libx264", "-crf", "23"]
        subprocess.run([*exe, "-i", str(SOURCE), *scale, "-c:a", "aac", str(short)], check=True)
    out = folder / f"long_{minutes:g}min.mp4"
    loop = ["-stream_loop", "-1", "-i", str(short), "-t", str(60 * minutes), "-c", "copy"]
    subprocess.run([*exe, *loop, str(out)], check=True)
    return out


def main() -> None:
    """Measure every stage (and predict) on each length; print a row per measurement."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10])
    parser.add_argument("--size", default="640x360", help="frame size of the looped video")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, as a rule's")
    parser.add_argument("--stages", nargs="*", default=STAGES, choices=STAGES)
    parser.add_argument("--predict", type=Path, help="results folder of a finished run")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--child", nargs=2, metavar=("STAGE", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="msff_memory_") as tmp:
        folder = Path(tmp)
        for minutes in args.minutes:
            video = long_video(folder, minutes, args.size)
            work = folder / f"work_{minutes:g}"
            work.mkdir()
            spec = folder / f"spec_{minutes:g}.json"
            spec.write_text(
                json.dumps(
                    dict(video=str(video), work=str(work), preset=args.preset, threads=args.threads)
                )
            )
            jobs = [(s, [sys.executable, __file__, "--child", s, str(spec)]) for s in args.stages]
            if args.predict:
                cmd = [sys.executable, "-m", "msff", "predict", str(video)]
                jobs.append(("predict", [*cmd, "--results", str(args.predict)]))
            for stage, cmd in jobs:
                row = {"minutes": minutes, "stage": stage} | measure(cmd)
                rows.append(row)
                worst = max(row["max_rss_mb"], row["tree_pss_mb"])
                print(
                    f"{minutes:>5g} min  {stage:<15} max RSS {row['max_rss_mb']:7.0f} MB"
                    f"  tree PSS {row['tree_pss_mb']:7.0f} MB"
                    f"  after imports {row.get('imported_mb', float('nan')):5.0f} MB"
                    f"  {row['seconds']:7.1f} s"
                    + ("" if worst <= GOAL_MB else f"  over {GOAL_MB} MB"),
                    flush=True,
                )
            for name in ("frames.h5", "faces.h5", "audio.h5", "spectrograms.h5"):
                if (work / name).exists():
                    size = (work / name).stat().st_size / 2**20
                    print(f"{minutes:>5g} min  {name:<15} {size:9.0f} MB on disk", flush=True)
                    rows.append({"minutes": minutes, "file": name, "mb": size})
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
