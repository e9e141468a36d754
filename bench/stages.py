"""Time every preprocessing stage on real clips, each against its own bound, in one run.

Run from the repository root (2 cores here; ``nice`` because the machine is shared)::

    nice -n 10 python bench/stages.py                      # 6 clips of ../shared/data, cpu preset
    python bench/stages.py --sheet clips.tsv --clips 50 --preset paper --device cuda

Each measurement runs in a child process that does only that work, so its peak RSS is the
stage's own (``ru_maxrss``; the imports of torch and msff are in it, and the RSS after the
imports is printed beside it). Stage and bound run alternately (bound, stage, bound, stage,
...) for ``--rounds`` rounds, so load from other jobs on the machine falls on both; a ratio
is the median over the rounds of stage time / bound time. The bounds:

- ``extract_frames``: a bare ``ffmpeg -f rawvideo`` decode of the same clips with the same
  filters (fps, scale), read from the pipe and dropped;
- ``align_faces``: bare facenet-pytorch ``MTCNN.detect()`` on the same frames, shrunk to the
  detection size beforehand (the bound is the detector on the pixels it sees), same batches;
  the stage is also run with batching off (one frame per batch) and detecting every k-th frame
  (``--detect-every``), whose alignment is compared with every-frame detection;
- ``cnn_features``: a bare forward pass (``model.features``) of the same backbone on the same
  prepared batches, inputs already on the device (with ``--device cuda``: AMP bf16 and
  channels_last, as the stage uses there);
- the Snakemake overhead per clip job: a no-op ``script:`` rule on the same number of clips.

Then the bytes per clip of every HDF5 cache and what an AFEW-sized run (1,800 clips) needs;
the HDF5 layouts of the faces cache compared (size, write, sequential and random reads); and
the memory bound: a 10-minute video (a real clip looped with ``-stream_loop``) through
extract_frames and align_faces, peak RSS against a short clip's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
AFEW_CLIPS = 1800
DEFAULT_CLIPS = [
    "ravdess_av/01-01-03-01-01-02-05.mp4",
    "ravdess_av/01-01-04-01-01-01-05.mp4",
    "ravdess_av/01-01-06-02-02-01-05.mp4",
    "crema_d/1001_DFA_ANG_XX.flv",
    "crema_d/1001_DFA_HAP_XX.flv",
    "crema_d/1001_DFA_SAD_XX.flv",
]


# --------------------------------------------------------------------------- child work
# Each function below runs in a child process and returns a dict (seconds of the timed
# part, counts); the child adds its RSS figures.


def _child_ffmpeg_bare(spec: dict) -> dict:
    from msff import media

    exe = media.ffmpeg_exe(spec.get("ffmpeg"))
    seconds, frames = 0.0, 0
    for clip in spec["clips"]:
        vf = f"scale={clip['width']}:{clip['height']}"
        if spec["fps"]:
            vf = f"fps={spec['fps']},{vf}"
        start = time.perf_counter()
        cmd = [exe, "-nostdin", "-v", "error", "-i", clip["path"], "-vf", vf]
        cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
        n = 0
        while block := proc.stdout.read(1 << 22):
            n += len(block)
        proc.wait()
        seconds += time.perf_counter() - start
        frames += n // (clip["width"] * clip["height"] * 3)
    return {"seconds": seconds, "frames": frames}


def _child_extract_frames(spec: dict) -> dict:
    from msff.stages.media import extract_frames

    seconds, frames = 0.0, 0
    for clip in spec["clips"]:
        start = time.perf_counter()
        extract_frames(
            clip["clip"],
            clip["path"],
            clip["frames"],
            spec["fps"],
            spec["max_side"],
            spec.get("ffmpeg"),
        )
        seconds += time.perf_counter() - start
        frames += len(_h5_rows(clip["frames"], "frames"))
    return {"seconds": seconds, "frames": frames}


def _h5_rows(path: str, name: str):
    import h5py

    with h5py.File(path, "r") as f:
        return np.arange(len(f[name])) if name in f else np.zeros(0)


def _child_mtcnn_bare(spec: dict) -> dict:
    import torch
    import torch.nn.functional as F
    from facenet_pytorch import MTCNN

    from msff import cache
    from msff.devices import pick_device

    faces = spec["faces"]
    device = pick_device(spec["device"])
    seconds, frames = 0.0, 0
    mtcnn = None
    for clip in spec["clips"]:
        for chunk in cache.frame_chunks(clip["frames"], faces["batch_size"]):
            # Shrunk to the detection size outside the timing, as the stage does it.
            h, w = chunk.shape[1:3]
            scale = 1.0
            batch = torch.from_numpy(np.array(chunk))
            side = faces["detect_max_side"]
            if side and max(h, w) > side:
                scale = side / max(h, w)
                size = (round(h * scale), round(w * scale))
                batch = F.interpolate(
                    batch.permute(0, 3, 1, 2), size=size, mode="bilinear", antialias=True
                ).permute(0, 2, 3, 1)
            if mtcnn is None:
                min_size = max(1, round(faces["min_face_size"] * scale))
                mtcnn = MTCNN(keep_all=True, min_face_size=min_size, device=device).eval()
            batch = batch.to(device)
            start = time.perf_counter()
            with torch.inference_mode():
                mtcnn.detect(batch, landmarks=True)
            seconds += time.perf_counter() - start
            frames += len(chunk)
    return {"seconds": seconds, "frames": frames}


def _child_align_faces(spec: dict) -> dict:
    from msff import cache
    from msff.stages.faces import align_faces

    seconds, frames, found = 0.0, 0, 0
    for clip in spec["clips"]:
        start = time.perf_counter()
        align_faces(clip["clip"], clip["frames"], clip["faces"], **spec["faces"])
        seconds += time.perf_counter() - start
        meta = cache.attrs(clip["faces"])
        frames += int(meta.get("n_frames", 0))
        found += int(meta.get("n_found", 0))
    return {"seconds": seconds, "frames": frames, "faces": found}


def _face_model(spec: dict, path: str) -> None:
    """Save an (untrained-head) frame CNN where cnn_features reads a fine-tuned one."""
    import torch

    from msff.heads.frame_cnn import build

    built = build(spec["backbone"], 7, spec["fc_width"], None)
    meta = dict(
        backbone=spec["backbone"],
        fc_width=spec["fc_width"],
        crop=spec["crop"],
        classes=list(range(7)),
        weights=built.weights,
        pretrained=built.pretrained,
    )
    torch.save({"state_dict": built.model.state_dict(), "meta": meta}, path)


def _child_cnn_bare(spec: dict) -> dict:
    import h5py
    import torch

    from msff.datasets import centre_crop, found_rows
    from msff.devices import pick_device
    from msff.heads.frame_cnn import build

    device = pick_device(spec["device"])
    built = build(spec["backbone"], 7, spec["fc_width"], None)
    model = built.model.to(device).eval()
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    batches = []
    for clip in spec["clips"]:
        rows = found_rows(clip["faces"])
        with h5py.File(clip["faces"], "r") as f:
            for i in range(0, len(rows), spec["batch_size"]):
                x = built.prepare(
                    centre_crop(f["faces"][rows[i : i + spec["batch_size"]]], spec["crop"])
                )
                batches.append(x.to(device))
    if cuda:
        batches = [x.contiguous(memory_format=torch.channels_last) for x in batches]
    images = sum(len(x) for x in batches)
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=cuda):
        model.features(batches[0])  # warm-up: first-call allocations, cuDNN autotuning
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for x in batches:
            model.features(x)
        if cuda:
            torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - start, "frames": images}


def _child_cnn_features(spec: dict) -> dict:
    import h5py

    from msff.heads.frame_cnn import cnn_features

    clips = [{"clip": c["clip"]} for c in spec["clips"]]
    faces = {c["clip"]: c["faces"] for c in spec["clips"]}
    start = time.perf_counter()
    cnn_features(spec["model"], clips, faces, spec["out"], spec["device"], spec["batch_size"])
    seconds = time.perf_counter() - start
    with h5py.File(spec["out"], "r") as f:
        images = sum(len(f[c["clip"]]) for c in clips)
    return {"seconds": seconds, "frames": images}


def _child_audio(spec: dict) -> dict:
    """extract_audio, spectrograms and opensmile, each timed over all clips."""
    from msff.stages.audio import opensmile, spectrograms
    from msff.stages.media import extract_audio

    audio = spec["audio"]
    timed = {}
    for name, run in (
        (
            "extract_audio",
            lambda c: extract_audio(
                c["clip"],
                c["path"],
                c["audio"],
                audio["sample_rate"],
                audio["silence_dbfs"],
                spec.get("ffmpeg"),
            ),
        ),
        (
            "spectrograms",
            lambda c: spectrograms(
                c["clip"],
                c["audio"],
                c["spectrograms"],
                **{k: v for k, v in audio.items() if k not in ("sample_rate", "silence_dbfs")},
            ),
        ),
        (
            "opensmile",
            lambda c: opensmile(c["clip"], c["audio"], c["opensmile"], spec["svm_features"]),
        ),
    ):
        start = time.perf_counter()
        for clip in spec["clips"]:
            run(clip)
        timed[name] = time.perf_counter() - start
    return {"seconds": sum(timed.values()), "stages": timed, "frames": 0}


def _child_pair(spec: dict) -> dict:
    """A per-clip stage and its bound, alternating clip by clip, ``rounds`` times."""
    out = {"bound": [], "stage": [], "seconds": 0.0}
    for key in ("bound", "stage"):  # warm-up, untimed: first-call costs are the same for both
        CHILDREN[spec[key]]({**spec, **spec[key + "_spec"], "clips": spec["clips"][:1]})
    for _ in range(spec["rounds"]):
        totals = {"bound": 0.0, "stage": 0.0}
        for clip in spec["clips"]:
            for key in ("bound", "stage"):
                part = {**spec, **spec[key + "_spec"], "clips": [clip]}
                totals[key] += CHILDREN[spec[key]](part)["seconds"]
        for key, value in totals.items():
            out[key].append(value)
    out["seconds"] = sum(out["stage"])
    return out


CHILDREN = {
    "pair": _child_pair,
    "ffmpeg_bare": _child_ffmpeg_bare,
    "extract_frames": _child_extract_frames,
    "mtcnn_bare": _child_mtcnn_bare,
    "align_faces": _child_align_faces,
    "cnn_bare": _child_cnn_bare,
    "cnn_features": _child_cnn_features,
    "audio": _child_audio,
}


def _run_child(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    from msff.devices import set_cpu_threads

    set_cpu_threads(spec["threads"])  # as the rules do
    import msff.stages  # noqa: F401  (imports before the baseline RSS)

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = CHILDREN[spec["role"]](spec)
    result["rss_before_mb"] = rss_before / 1024
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # ffmpeg runs as a child of the child: its own peak, reported apart.
    result["peak_rss_children_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


# --------------------------------------------------------------------------- the parent


class Runner:
    """Starts children with a shared base spec and collects their results by label."""

    def __init__(self, work: Path, base: dict):
        self.work, self.base, self.results = work, base, {}

    def run(self, label: str, role: str = "", **spec) -> dict:
        """Run ``role`` in a child; keep its result under ``label`` (a list over rounds)."""
        path = self.work / f"spec_{label}.json"
        role = spec.pop("pair", role)
        path.write_text(json.dumps({**self.base, **spec, "role": role}))
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(path)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not lines:
            raise RuntimeError(f"{label}: child failed\n{proc.stdout}\n{proc.stderr[-3000:]}")
        result = json.loads(lines[-1][len("RESULT ") :])
        self.results.setdefault(label, []).append(result)
        print(
            f"  {label:24} {result['seconds']:7.2f} s  peak {result['peak_rss_mb']:6.0f} MB",
            flush=True,
        )
        return result


def _clips(args) -> list[dict]:
    from msff import media, sheet

    if args.sheet:
        table = sheet.read(args.sheet)
        paths = [(c, p) for c, p in zip(table.index, table["path"], strict=True)]
    else:
        paths = [(Path(p).stem, str(args.data / p)) for p in DEFAULT_CLIPS]
    clips = []
    for clip, path in paths[: args.clips]:
        info = media.probe(path, args.ffmpeg)
        if info.video is None:
            continue
        clips.append({"clip": clip, "path": path, "probe": info})
    return clips


def _snakemake_overhead(work: Path, clips: list[dict], threads: int) -> dict:
    """Seconds per job of a no-op ``script:`` rule, plain and importing msff's face stage."""
    folder = work / "snakemake"
    folder.mkdir()
    ids = [c["clip"] for c in clips]
    (folder / "noop.py").write_text("open(snakemake.output[0], 'w').close()\n")
    (folder / "noop_torch.py").write_text(
        "import msff.stages.faces\nopen(snakemake.output[0], 'w').close()\n"
    )
    (folder / "Snakefile").write_text(
        f"CLIPS = {ids!r}\n\n"
        "rule all:\n    input: expand('{kind}/{clip}.txt', kind=config['kind'], clip=CLIPS)\n\n"
        "rule noop:\n    output: 'noop/{clip}.txt'\n    script: 'noop.py'\n\n"
        "rule noop_torch:\n    output: 'noop_torch/{clip}.txt'\n    script: 'noop_torch.py'\n"
    )
    out = {}
    for kind in ("noop", "noop_torch"):
        cmd = [sys.executable, "-m", "snakemake", "--cores", str(threads), "--quiet", "all"]
        cmd += ["--config", f"kind={kind}", "--directory", str(folder)]
        cmd += ["--snakefile", str(folder / "Snakefile")]
        timings = []
        for _ in range(2):  # the second run has nothing to do: Snakemake's fixed start-up
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            timings.append(time.perf_counter() - start)
        out[kind] = (timings[0] - timings[1]) / len(ids) * threads  # job-seconds per clip
        out["startup"] = timings[1]
    return out


def _long_video(source: str, seconds: float, folder: Path, ffmpeg: str | None) -> Path:
    """A real clip looped to ``seconds`` (stream copy: no re-encoding, no quality change)."""
    from msff import media

    out = folder / f"long_{int(seconds)}s.mp4"
    # Stream copy of an MP4 takes a second; other containers (FLV loops fail to copy) are
    # re-encoded once.
    codec = ["-c:v", "copy"] if source.endswith(".mp4") else ["-c:v", "libx264", "-crf", "18"]
    cmd = [media.ffmpeg_exe(ffmpeg), "-v", "error", "-y", "-stream_loop", "-1", "-i", source]
    subprocess.run([*cmd, "-t", str(seconds), "-an", *codec, str(out)], check=True)
    return out


def _hdf5_layouts(clips: list[dict], work: Path) -> list[dict]:
    """The faces dataset written with each candidate layout: size, write and read speeds."""
    import h5py

    faces = np.concatenate([_read(c["faces"], "faces") for c in clips])
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(faces), 200)
    rows = []
    for rows_per_chunk in (1, 8, 32):
        for name, kw in (
            ("none", {}),
            ("lzf", {"compression": "lzf"}),
            ("gzip 1", {"compression": "gzip", "compression_opts": 1}),
            ("gzip 4", {"compression": "gzip", "compression_opts": 4}),
        ):
            path = work / "layout.h5"
            start = time.perf_counter()
            with h5py.File(path, "w") as f:
                f.create_dataset(
                    "faces", data=faces, chunks=(rows_per_chunk, *faces.shape[1:]), **kw
                )
            write = time.perf_counter() - start
            start = time.perf_counter()
            with h5py.File(path, "r") as f:
                f["faces"][()]
            sequential = time.perf_counter() - start
            start = time.perf_counter()
            with h5py.File(path, "r") as f:
                for i in picks:
                    f["faces"][i : i + 1]
            random_read = time.perf_counter() - start
            rows.append(
                {
                    "chunk": rows_per_chunk,
                    "compression": name,
                    "bytes/face": path.stat().st_size / len(faces),
                    "write faces/s": len(faces) / write,
                    "read faces/s": len(faces) / sequential,
                    "random faces/s": len(picks) / random_read,
                }
            )
    return rows


def _read(path: str, name: str) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as f:
        return f[name][()]


def _eye_error(faces_k: str, faces_1: str, size: int) -> dict:
    """How far detecting every k-th frame moves the eyes of the aligned faces (in pixels)."""
    from msff import faces

    k, one = (
        {n: _read(p, n) for n in ("landmarks", "found", "detected")} for p in (faces_k, faces_1)
    )
    both = k["found"] & one["found"] & ~k["detected"]
    errors = faces.aligned_eye_error(k["landmarks"][both], one["landmarks"][both], size)
    return {
        "frames": int(both.sum()),
        "mean_px": float(errors.mean()) if both.any() else float("nan"),
        "max_px": float(errors.max()) if both.any() else float("nan"),
        "found_k": int(k["found"].sum()),
        "found_1": int(one["found"].sum()),
    }


def _median_ratio(stage: list[dict], bound: list[dict]) -> tuple[float, list[float]]:
    ratios = [s["seconds"] / b["seconds"] for s, b in zip(stage, bound, strict=True)]
    return statistics.median(ratios), ratios


def main() -> None:
    """Run every measurement and print the tables (Markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--sheet", type=Path, help="a clips.tsv instead of the default clips")
    parser.add_argument("--clips", type=int, default=6, help="how many clips (default 6)")
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:n] for MTCNN and the CNN")
    parser.add_argument("--backbone", default="fer2013", help="frame CNN for cnn_features")
    parser.add_argument("--rounds", type=int, default=2, help="stage/bound alternations")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (rules: 1)")
    parser.add_argument("--detect-every", type=int, default=3, help="k for the k-th frame run")
    parser.add_argument("--long-minutes", type=float, default=10.0, help="0 skips the long video")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _run_child(args.child)
        return

    from msff import config, media

    cfg = config.load(args.config)
    cfg["preset"] = args.preset
    preset = config.preset(cfg)
    args.ffmpeg = cfg.get("ffmpeg")
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="msff_bench_"))
    clips = _clips(args)
    for c in clips:
        info = c.pop("probe")
        c["width"], c["height"] = media.output_size(
            info.video.width, info.video.height, preset["frames"]["max_side"]
        )
        c["seconds"] = info.duration
        for name in ("frames", "faces", "audio", "spectrograms", "opensmile"):
            c[name] = str(work / name / f"{c['clip']}.h5")
            (work / name).mkdir(exist_ok=True)
    faces = {**preset["faces"], "device": args.device}
    base = {
        "clips": clips,
        "threads": args.threads,
        "device": args.device,
        "ffmpeg": args.ffmpeg,
        "fps": preset["frames"]["fps"],
        "max_side": preset["frames"]["max_side"],
        "faces": faces,
    }
    runner = Runner(work, base)
    every_frame = {**faces, "detect_every": 1} if "detect_every" in faces else faces
    print(f"{len(clips)} clips, preset {args.preset}, device {args.device}, work in {work}")

    # Alone first (rate, peak RSS; writes the caches later stages read), then the ratio:
    # stage and bound alternating clip by clip in one child.
    runner.run("extract_frames", "extract_frames")
    runner.run("ffmpeg_bare", "ffmpeg_bare")
    pair = {"pair": "pair", "rounds": args.rounds, "bound_spec": {}}
    runner.run(
        "extract_frames_ratio", **pair, bound="ffmpeg_bare", stage="extract_frames", stage_spec={}
    )
    runner.run("align_faces", "align_faces", faces=every_frame)
    runner.run("mtcnn_bare", "mtcnn_bare")
    runner.run(
        "align_faces_ratio",
        **pair,
        bound="mtcnn_bare",
        stage="align_faces",
        stage_spec={"faces": every_frame},
    )
    runner.run("align_faces_b1", "align_faces", faces={**every_frame, "batch_size": 1})
    k_faces = None
    if "detect_every" in faces and args.detect_every > 1:
        k_clips = [{**c, "faces": c["faces"] + f".k{args.detect_every}.h5"} for c in clips]
        runner.run(
            "align_faces_k",
            "align_faces",
            clips=k_clips,
            faces={**faces, "detect_every": args.detect_every},
        )
        k_faces = [
            _eye_error(a["faces"], b["faces"], faces["size"])
            for a, b in zip(k_clips, clips, strict=True)
        ]
    models = preset["models"]
    cnn = {
        "backbone": args.backbone,
        "fc_width": models["fc_width"],
        "batch_size": 64,
        "crop": models["cnn_crop"],
        "model": str(work / "cnn.pt"),
        "out": str(work / "features.h5"),
    }
    _face_model(cnn, cnn["model"])
    for _ in range(args.rounds):
        runner.run("cnn_bare", "cnn_bare", **cnn)
        runner.run("cnn_features", "cnn_features", **cnn)
    audio_clips = [c for c in clips if media.probe(c["path"], args.ffmpeg).audio]
    if audio_clips:
        runner.run(
            "audio",
            "audio",
            clips=audio_clips,
            audio=preset["audio"],
            svm_features=preset["models"]["svm_features"],
        )
    overhead = _snakemake_overhead(work, clips, 1)
    layouts = _hdf5_layouts(clips, work)

    long = None
    if args.long_minutes > 0:
        source = next((c for c in clips if c["path"].endswith(".mp4")), clips[0])
        long = {"video": Path(source["path"]).name, "runs": []}
        # A tenth as long too: a bounded peak is the same at both lengths.
        for minutes in (args.long_minutes / 10, args.long_minutes):
            video = _long_video(source["path"], minutes * 60, work, args.ffmpeg)
            info = media.probe(video, args.ffmpeg)
            width, height = media.output_size(
                info.video.width, info.video.height, preset["frames"]["max_side"]
            )
            one = {**source, "clip": "long", "path": str(video), "width": width, "height": height}
            one.update(frames=str(work / "long.frames.h5"), faces=str(work / "long.faces.h5"))
            extracted = runner.run(f"long_extract_{minutes:g}min", "extract_frames", clips=[one])
            frames_bytes = Path(one["frames"]).stat().st_size
            aligned = runner.run(f"long_align_{minutes:g}min", "align_faces", clips=[one])
            long["runs"].append(
                {
                    "minutes": minutes,
                    "frames": extracted["frames"],
                    "frames_bytes": frames_bytes,
                    "extract": extracted,
                    "align": aligned,
                }
            )
            Path(one["frames"]).unlink()
            video.unlink()
        # The short clip alone, for the comparison.
        long["short"] = runner.run("short_align_faces", "align_faces", clips=[source])
        long["short_extract"] = runner.run("short_extract", "extract_frames", clips=[source])

    _print_tables(args, preset, clips, runner.results, overhead, layouts, k_faces, long, cnn)
    sizes = _cache_sizes(clips, cnn["out"], audio_clips)
    _print_sizes(sizes, len(clips))
    print(f"\ntotal {time.perf_counter() - started:.0f} s; caches in {work} (removed)")
    shutil.rmtree(work)


def _cache_sizes(clips, features_h5, audio_clips) -> dict:
    import h5py

    sizes = {
        name: [Path(c[name]).stat().st_size for c in group if Path(c[name]).exists()]
        for name, group in (
            ("frames", clips),
            ("faces", clips),
            ("audio", audio_clips),
            ("spectrograms", audio_clips),
            ("opensmile", audio_clips),
        )
    }
    with h5py.File(features_h5, "r") as f:
        # The features file holds every clip; a clip's share is its dataset's stored size.
        sizes["features"] = [f[c["clip"]].id.get_storage_size() for c in clips]
    return sizes


def _fmt_rate(result: list[dict], clips: int, what: str = "frames") -> str:
    seconds = statistics.median(r["seconds"] for r in result)
    frames = result[0]["frames"]
    return f"{clips / seconds:6.2f} | {frames / seconds:7.1f} {what}/s"


def _print_tables(args, preset, clips, results, overhead, layouts, k_faces, long, cnn) -> None:
    import torch

    n = len(clips)
    seconds = sum(c["seconds"] or 0 for c in clips)
    print(
        f"\n{platform.node()}: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, {date.today()}"
    )
    print(
        f"{n} clips ({seconds:.1f} s of video), preset {args.preset}, device {args.device}, "
        f"{args.threads} threads, {args.rounds} rounds\n"
    )
    print("| stage | clips/s | rate | peak RSS MB (after imports) | bound | ratio (rounds) |")
    print("|---|---:|---:|---:|---|---:|")

    def row(label, stage, bound=None, bound_name="", what="frames"):
        r = results[stage]
        peak = max(x["peak_rss_mb"] for x in r)
        before = r[0]["rss_before_mb"]
        ratio, each = "", []
        if bound and "bound" not in results[bound][0]:  # one child each, round by round
            median, each = _median_ratio(r, results[bound])
        elif bound:  # a clip-by-clip alternation in one child
            pair = results[bound][0]
            each = [s / b for s, b in zip(pair["stage"], pair["bound"], strict=True)]
            median = statistics.median(each)
        if bound:
            ratio = f"**{median:.2f}×** ({', '.join(f'{x:.2f}' for x in each)})"
        print(
            f"| {label} | {_fmt_rate(r, n, what)} | {peak:.0f} ({before:.0f}) | "
            f"{bound_name} | {ratio} |"
        )

    row("bare ffmpeg rawvideo decode", "ffmpeg_bare")
    row("extract_frames", "extract_frames", "extract_frames_ratio", "bare ffmpeg decode")
    row("bare MTCNN detect()", "mtcnn_bare")
    row("align_faces (every frame)", "align_faces", "align_faces_ratio", "bare MTCNN")
    row("align_faces, batching off", "align_faces_b1", None)
    if "align_faces_k" in results:
        row(f"align_faces, detect every {args.detect_every}", "align_faces_k")
    row(f"bare {cnn['backbone']} forward", "cnn_bare", what="images")
    row("cnn_features", "cnn_features", "cnn_bare", f"bare {cnn['backbone']} forward", "images")
    if "audio" in results:
        audio = results["audio"][0]
        for name, s in audio["stages"].items():
            print(
                f"| {name} | {len(audio['stages']) and len(clips) / s:6.2f} | | "
                f"{audio['peak_rss_mb']:.0f} (all three) | | |"
            )
    faces = results["align_faces"][0]
    faces_b1 = results["align_faces_b1"][0]
    print(
        f"\nfaces/s: batching on (batch {preset['faces']['batch_size']}) "
        f"{faces['faces'] / faces['seconds']:.1f}, "
        f"off {faces_b1['faces'] / faces_b1['seconds']:.1f}"
    )
    per_clip = {
        k: statistics.median(x["seconds"] for x in results[k]) / n
        for k in ("extract_frames", "align_faces")
    }
    print(
        f"Snakemake: start-up {overhead['startup']:.1f} s; a no-op script job "
        f"{overhead['noop']:.2f} s per clip, one importing msff.stages.faces "
        f"{overhead['noop_torch']:.2f} s, against extract_frames {per_clip['extract_frames']:.2f}"
        f" s and align_faces {per_clip['align_faces']:.2f} s of work per clip"
    )
    if k_faces:
        frames = sum(x["frames"] for x in k_faces)
        mean = sum(x["mean_px"] * x["frames"] for x in k_faces) / max(frames, 1)
        worst = max(x["max_px"] for x in k_faces)
        lost = sum(x["found_1"] - x["found_k"] for x in k_faces)
        print(
            f"detect every {args.detect_every}: eyes of the {frames} interpolated faces off "
            f"every-frame alignment by {mean:.2f} px mean, {worst:.2f} px max (face "
            f"{preset['faces']['size']} px); {lost} fewer faces found"
        )
    if long:
        for run in long["runs"]:
            align, extract = run["align"], run["extract"]
            print(
                f"{run['minutes']:g}-minute video ({long['video']} looped, {run['frames']} "
                f"frames): peak RSS align_faces {align['peak_rss_mb']:.0f} MB, extract_frames "
                f"{extract['peak_rss_mb']:.0f} MB; temporary frames cache "
                f"{run['frames_bytes'] / 1e9:.2f} GB; align_faces "
                f"{align['frames'] / align['seconds']:.1f} frames/s"
            )
        print(
            f"the clip itself: peak RSS align_faces {long['short']['peak_rss_mb']:.0f} MB, "
            f"extract_frames {long['short_extract']['peak_rss_mb']:.0f} MB"
        )
    print("\nfaces dataset layouts (the bench clips' faces):\n")
    print(
        "| rows per chunk | compression | bytes/face | write faces/s | read faces/s | "
        "random faces/s |\n|---:|---|---:|---:|---:|---:|"
    )
    for x in layouts:
        print(
            f"| {x['chunk']} | {x['compression']} | {x['bytes/face']:.0f} | "
            f"{x['write faces/s']:.0f} | {x['read faces/s']:.0f} | {x['random faces/s']:.0f} |"
        )


def _print_sizes(sizes: dict, n: int) -> None:
    print("\n| cache | bytes per clip (mean) | 1,800 clips (AFEW) |\n|---|---:|---:|")
    for name, values in sizes.items():
        if values:
            mean = sum(values) / len(values)
            note = " (temporary)" if name == "frames" else ""
            print(f"| {name}{note} | {mean / 1e6:.2f} MB | {mean * AFEW_CLIPS / 1e9:.2f} GB |")


if __name__ == "__main__":
    main()
