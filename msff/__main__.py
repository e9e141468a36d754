"""Command line: ``msff build-sheet ...`` and ``msff predict ...`` (or ``python -m msff``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import msff
from msff import sheet
from msff.errors import MsffError

DESCRIPTION = """\
MSFF video emotion recognition (Lu et al., ICMI 2018): seven classes (angry, disgust,
fear, happy, sad, surprise, neutral) from the faces and speech of short clips.

The workflow itself runs with Snakemake from the repository's root (`snakemake --cores 2`);
this command prepares its input and uses its trained models."""

EPILOG = """\
examples:
  a clip sheet from RAVDESS file names, speakers split 60/20/20 at random (seeded):
    msff build-sheet /data/RAVDESS --names --out clips.tsv
  predict new clips with the models and fusion weights of a finished workflow run:
    msff predict new_clips/ --results results --out predictions.tsv
  a label for one video without any training (FER2013 zero-shot, faces only), and the
  class scores of every frame:
    msff predict clip.mp4 --per-frame frames.tsv

`msff COMMAND --help` lists a command's options; README.md documents the workflow."""


def build_sheet(args: argparse.Namespace) -> None:
    """Build a clip sheet from data-set folders, labels.csv files or an AFEW root."""
    from msff import media

    clips: list[sheet.Clip] = []
    for source in args.sources:
        path = Path(source)
        if args.afew:
            clips += sheet.from_afew(path, args.prefix)
        elif path.is_file() and path.suffix == ".csv":
            clips += sheet.from_labels_csv(path, args.prefix)
        elif path.is_dir() and (path / "labels.csv").exists() and not args.names:
            clips += sheet.from_labels_csv(path / "labels.csv", args.prefix)
        elif path.is_dir():
            clips += sheet.from_folder(path, args.prefix)
        else:
            raise MsffError(f"{path}: neither a folder nor a labels.csv")
    if args.face_input:
        clips = [replace(c, face_input=args.face_input) for c in clips]
    fractions = {"train": args.train, "val": args.val, "test": args.test}
    fixed = dict(item.split("=", 1) for item in args.assign)
    clips = sheet.assign_splits(clips, fractions, args.seed, fixed)
    streams = None
    if not args.no_probe:
        streams = {}
        for c in clips:
            try:
                info = media.probe(c.path)
                streams[c.clip] = (info.video is not None, info.audio is not None)
            except MsffError as exc:
                # Kept in the sheet: the workflow records the problem in its qc table.
                print(f"warning: clip {c.clip}: {exc}", file=sys.stderr)
                streams[c.clip] = (True, True)
    sheet.write(clips, args.out, streams)
    counts = {s: sum(c.split == s for c in clips) for s in sheet.SPLITS}
    print(
        f"{args.out}: {len(clips)} clips, {len({c.speaker for c in clips})} speakers, "
        f"splits {counts}"
    )
    for split in sheet.SPLITS:
        if fractions[split] > 0 and not counts[split]:
            # The workflow's fusion needs validation clips and the predictions test clips.
            print(
                f"warning: {args.out}: no speaker in {split} ({args.train}/{args.val}/"
                f"{args.test} of {len({c.speaker for c in clips})} speakers): the workflow "
                "needs a speaker in each split; --assign SPEAKER=SPLIT puts one there",
                file=sys.stderr,
            )


def _clips(sources: list[str]) -> list[Path]:
    """Media files and frame folders under ``sources``, in order.

    A folder with neither stays in the list as itself, for predict to say so: a typo in a
    folder name must not pass unseen.
    """
    from msff.framefolders import IMAGE_SUFFIXES

    paths = []
    for source in sources:
        path = Path(source)
        if not path.is_dir():
            paths.append(path)
        elif any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
            paths.append(path)  # a folder of frames is one clip
        else:
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in sheet.MEDIA_SUFFIXES)
            paths += found or [path]
    return paths


def write_table(rows: list[dict], path: Path) -> None:
    """``rows`` as a table at ``path``: TSV, CSV or JSON by its suffix (written atomically)."""
    import pandas as pd

    from msff import cache

    check_table_path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        text = json.dumps(rows, indent=1, default=float) + "\n"
    else:
        text = pd.DataFrame(rows).to_csv(sep="\t" if suffix == ".tsv" else ",", index=False)
    cache.write_text(path, text)


def check_table_path(path: Path) -> None:
    """A table is written as TSV, CSV or JSON, by its suffix; any other is an error."""
    if path.suffix.lower() not in (".tsv", ".csv", ".json"):
        raise MsffError(f"{path}: write .tsv, .csv or .json")


def predict(args: argparse.Namespace) -> None:
    """Predict clips: with a workflow run's fused models, or FER2013 zero-shot without one."""
    import torch
    from tqdm import tqdm

    from msff import config
    from msff.devices import pick_device, set_cpu_threads
    from msff.predict import Predictor, default_config, run_config

    for out in (args.out, args.per_frame):  # before hours of work, not after
        if out is not None:
            check_table_path(out)
    set_cpu_threads()  # before any model runs: trained weights hold denormals
    # Rebuilding a trained model logs how it was first built ("from scratch"): not news here.
    logging.getLogger("msff").setLevel(logging.ERROR)
    results = args.results
    if results is None and (Path("results") / "fusion" / "weights.json").exists():
        results = Path("results")  # the run in the working directory
    cfg = config.load(args.config) if args.config else None
    if results is not None:
        # The run's own config (its models' provenance); --config only where none is recorded.
        cfg = run_config(results, cfg)
    elif cfg is None:
        cfg = default_config()
    if args.face_input:
        cfg = dict(cfg, face_input=args.face_input)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise MsffError("--device cuda: torch sees no CUDA device on this machine")
    device = str(pick_device(args.device))
    predictor = Predictor(results, cfg, device)
    if predictor.mode == "zero-shot":
        print(
            "no workflow results: face predictions by FER2013 zero-shot (its own classifier, "
            "not trained on your data; audio not used). --results names a run's folder.",
            file=sys.stderr,
        )
    paths = _clips(args.sources)
    if args.speaker is not None:
        # A speaker the run never saw: its statistics over all these clips, as the workflow
        # takes a speaker's over all its clips, not each clip alone.
        learnt = predictor.enrol(args.speaker, paths)
        if learnt:
            print(
                f"speaker {args.speaker} is not in the run: {', '.join(learnt)} standardise "
                f"by its statistics over these {len(paths)} files",
                file=sys.stderr,
            )
    table, frames, failed, unlabelled = [], [], 0, 0
    try:
        for path in tqdm(paths, desc="predict", unit="clip", file=sys.stderr, disable=None):
            try:
                result = predictor(path, per_frame=args.per_frame is not None, speaker=args.speaker)
            except MsffError as exc:
                failed += 1
                print(f"{path}\terror: {exc}", flush=True)
                table.append(dict(path=str(path), clip=path.stem, label="", error=str(exc)))
                continue
            if result.label:
                scores = " ".join(f"{k}={v:.3f}" for k, v in result.scores.items())
                used = ",".join(result.models_used)
                print(f"{path}\t{result.label}\tmodels: {used}\t{scores}", flush=True)
            else:
                unlabelled += 1
                print(f"{path}\tno label: {result.note}", flush=True)
            table.append(
                dict(path=result.path, clip=result.clip, label=result.label, error="")
                | dict(mode=result.mode, models_used=",".join(result.models_used))
                | dict(models_unable=",".join(result.models_unable), note=result.note)
                | result.scores
            )
            frames += result.frames
    finally:  # stopped part way (Ctrl-C, a crash): the clips done are kept
        if args.out is not None:
            write_table(table, args.out)
        if args.per_frame is not None:
            write_table(frames, args.per_frame)
    print(
        f"{len(paths)} files: {len(paths) - failed - unlabelled} predicted ({predictor.mode}, "
        f"on {device}), {unlabelled} with nothing the models could score, "
        f"{failed} could not be read",
        file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m msff`` and the ``msff`` command."""
    parser = argparse.ArgumentParser(
        prog="msff",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"msff {msff.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, title="commands")
    p = sub.add_parser("build-sheet", help=build_sheet.__doc__)
    p.add_argument(
        "sources",
        nargs="+",
        help="folders (labels.csv inside, or RAVDESS/CREMA-D/MEAD file names), "
        "labels.csv files, or with --afew an AFEW root",
    )
    p.add_argument("--out", required=True, type=Path, help="the sheet to write (TSV)")
    p.add_argument("--afew", action="store_true", help="sources are AFEW roots (Train/, Val/)")
    p.add_argument(
        "--names",
        action="store_true",
        help="read labels from file names even where a labels.csv exists",
    )
    p.add_argument("--prefix", default="", help="prefix of every clip id")
    p.add_argument("--seed", type=int, default=2018, help="seed of the speaker split (2018)")
    p.add_argument("--train", type=float, default=0.6, help="fraction of speakers in train (0.6)")
    p.add_argument("--val", type=float, default=0.2, help="fraction of speakers in val (0.2)")
    p.add_argument("--test", type=float, default=0.2, help="fraction of speakers in test (0.2)")
    p.add_argument(
        "--assign",
        action="append",
        default=[],
        metavar="SPEAKER=SPLIT",
        help="put a speaker into a split (repeatable); the rest are split at random",
    )
    p.add_argument(
        "--no-probe", action="store_true", help="do not probe clips for video/audio streams"
    )
    p.add_argument(
        "--face-input",
        choices=["detect", "precropped"],
        help="write this face_input for every clip (precropped: frames are face crops)",
    )
    p.set_defaults(func=build_sheet)
    p = sub.add_parser("predict", help=predict.__doc__)
    p.add_argument(
        "sources", nargs="+", help="video or audio files, frame folders, or folders of them"
    )
    p.add_argument(
        "--results",
        type=Path,
        help="the results folder of a workflow run (models/, fusion/weights.json); default: "
        "./results when it holds one, else FER2013 zero-shot face predictions",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="a config for a results folder whose models record none (the run's own, "
        "from its models' provenance, is used otherwise)",
    )
    p.add_argument(
        "--face-input",
        choices=["detect", "precropped"],
        help="how faces are found in these clips (default: the run's config face_input)",
    )
    p.add_argument(
        "--speaker",
        help="the speaker (actor, subject) of all these clips: the run's speaker-normalised "
        "models use that speaker's statistics in the run when its sheet has it, else its "
        "statistics over these clips (default: each clip is a speaker of one clip)",
    )
    p.add_argument("--out", type=Path, help="also write a table of the clips (.tsv, .csv, .json)")
    p.add_argument(
        "--per-frame",
        type=Path,
        help="write each decoded frame's and each audio segment's class scores, with their "
        "times (.tsv, .csv, .json)",
    )
    p.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="where the models run (auto: CUDA when there is a card)",
    )
    p.set_defaults(func=predict)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except MsffError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
