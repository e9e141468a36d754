"""Clip sheets: read and check them, build them from data-set folders, split by speaker.

A sheet is a TSV with one row per clip: ``clip, path, label, split, speaker`` and,
optionally, ``has_video, has_audio``. ``label`` is the data set's own word ("calm",
"fearful", "contempt"); config ``labels.map`` turns it into one of the classes, so a
new data set needs a config line, not code. Relative paths are relative to the
sheet's folder, so a sheet and its clips can move together.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from msff.errors import ConfigError

COLUMNS = ["clip", "path", "label", "split", "speaker"]
OPTIONAL = ["has_video", "has_audio"]  # booleans; face_input is a word
SPLITS = ("train", "val", "test")
MEDIA_SUFFIXES = {
    ".mp4",
    ".avi",
    ".mkv",
    ".mov",
    ".flv",
    ".webm",
    ".mpg",
    ".mpeg",
    ".m4v",
    ".wav",
    ".flac",
    ".mp3",
    ".m4a",
    ".ogg",
}

# RAVDESS file names: modality-channel-emotion-intensity-statement-repetition-actor.
RAVDESS = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
# CREMA-D: actor_sentence_emotion_level, e.g. 1001_DFA_ANG_XX.
CREMA_D = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
CREMA_D_EMOTIONS = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
# MEAD: actor_view_emotion_levelN_index (front-view exports) or actor_emotion_level_index.
MEAD = re.compile(r"^([MW]\d{3})_(?:([a-z]+)_)?([a-z]+)_(?:level)?(\d)_(\d{3})$")
AFEW_EMOTIONS = ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")


@dataclass(frozen=True)
class Clip:
    """One row of a sheet, before splitting."""

    clip: str
    path: str
    label: str
    speaker: str
    split: str = ""
    face_input: str = ""  # "", detect or precropped (the frames are face crops)


def parse_name(path: Path) -> tuple[str, str]:
    """Return ``(label, speaker)`` encoded in a RAVDESS, CREMA-D or MEAD file name.

    Raises ConfigError naming the file when the name follows none of the conventions.
    """
    stem = path.stem
    if m := RAVDESS.match(stem):
        emotion, actor = m.group(3), m.group(7)
        if emotion not in RAVDESS_EMOTIONS:
            raise ConfigError(f"{path}: RAVDESS emotion code {emotion} is not 01-08")
        return RAVDESS_EMOTIONS[emotion], actor
    if m := CREMA_D.match(stem):
        actor, emotion = m.group(1), m.group(3)
        if emotion not in CREMA_D_EMOTIONS:
            raise ConfigError(f"{path}: CREMA-D emotion code {emotion} is unknown")
        return CREMA_D_EMOTIONS[emotion], actor
    if m := MEAD.match(stem):
        return m.group(3), m.group(1)
    raise ConfigError(
        f"{path}: file name follows no known convention (RAVDESS, CREMA-D, MEAD); "
        "use a labels.csv instead"
    )


def clip_id(path: Path, prefix: str = "") -> str:
    """A clip id from a file name: the stem, with characters outside [A-Za-z0-9_.-] as '_'."""
    return prefix + re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)


def from_folder(folder: Path, prefix: str = "") -> list[Clip]:
    """Every media file under ``folder`` whose name encodes its label."""
    folder = Path(folder)
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in MEDIA_SUFFIXES)
    if not paths:
        raise ConfigError(f"{folder}: no media files found")
    clips = []
    for path in paths:
        label, speaker = parse_name(path)
        clips.append(Clip(clip_id(path, prefix), str(path), label, speaker))
    return clips


def from_labels_csv(csv_path: Path, prefix: str = "") -> list[Clip]:
    """Clips listed in a labels.csv with columns ``path, label, speaker`` (``split`` optional).

    Paths in the file are relative to its folder.
    """
    csv_path = Path(csv_path)
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ConfigError(f"{csv_path}: no rows")
    missing = {"path", "label", "speaker"} - set(rows[0])
    if missing:
        raise ConfigError(f"{csv_path}: missing columns {sorted(missing)}")
    clips = []
    for row in rows:
        path = csv_path.parent / row["path"]
        split = row.get("split", "") or ""
        if split and split not in SPLITS:
            raise ConfigError(f"{csv_path}: clip {row['path']}: split {split!r} not in {SPLITS}")
        clips.append(Clip(clip_id(path, prefix), str(path), row["label"], row["speaker"], split))
    return clips


def from_afew(root: Path, prefix: str = "") -> list[Clip]:
    """AFEW's layout: ``Train/<Emotion>/*.avi`` and ``Val/<Emotion>/*.avi``.

    AFEW names no actors, so each clip is its own speaker group; the folders give the split.
    """
    root = Path(root)
    clips = []
    for folder, split in (("Train", "train"), ("Val", "val")):
        for emotion in AFEW_EMOTIONS:
            for path in sorted((root / folder / emotion).glob("*")):
                if path.suffix.lower() in MEDIA_SUFFIXES:
                    cid = clip_id(path, prefix)
                    clips.append(Clip(cid, str(path), emotion.lower(), cid, split))
    if not clips:
        raise ConfigError(f"{root}: no clips under Train/<Emotion>/ or Val/<Emotion>/")
    return clips


def split_speakers(
    speakers: Iterable[str], fractions: dict[str, float], seed: int
) -> dict[str, str]:
    """Assign each speaker to a split, seeded, so that no speaker is in two splits.

    Speakers are shuffled with ``seed`` and cut by ``fractions`` (train/val/test);
    every split with a positive fraction gets at least one speaker when there are enough.
    """
    unique = sorted(set(speakers))
    order = np.random.default_rng(seed).permutation(len(unique))
    wanted = [s for s in SPLITS if fractions.get(s, 0) > 0]
    total = sum(fractions[s] for s in wanted)
    counts = {s: int(round(len(unique) * fractions[s] / total)) for s in wanted}
    if len(unique) >= len(wanted):
        for s in wanted:
            counts[s] = max(counts[s], 1)
    # Whatever rounding left over or took too much goes to / comes from train.
    counts[wanted[0]] += len(unique) - sum(counts.values())
    assignment, start = {}, 0
    for s in wanted:
        for i in order[start : start + counts[s]]:
            assignment[unique[i]] = s
        start += counts[s]
    return assignment


def assign_splits(
    clips: list[Clip],
    fractions: dict[str, float],
    seed: int,
    speakers: dict[str, str] | None = None,
) -> list[Clip]:
    """Split clips by speaker; clips that already carry a split keep it.

    ``speakers`` puts named speakers into named splits (e.g. a held-out test speaker);
    the other speakers are split at random with ``seed``.
    """
    for speaker, split in (speakers or {}).items():
        if split not in SPLITS:
            raise ConfigError(f"speaker {speaker!r}: split {split!r} is not one of {SPLITS}")
    clips = [replace(c, split=(speakers or {}).get(c.speaker, c.split)) for c in clips]
    given = [c for c in clips if c.split]
    todo = [c for c in clips if not c.split]
    taken = {c.speaker: c.split for c in given}
    assignment = split_speakers({c.speaker for c in todo} - set(taken), fractions, seed)
    assignment.update(taken)
    out = given + [replace(c, split=assignment[c.speaker]) for c in todo]
    check_speakers(pd.DataFrame([c.__dict__ for c in out]), "built sheet")
    return sorted(out, key=lambda c: c.clip)


def check_speakers(sheet: pd.DataFrame, where: str) -> None:
    """Raise ConfigError when a speaker appears in two splits."""
    per_speaker = sheet.groupby("speaker")["split"].nunique()
    leaking = per_speaker[per_speaker > 1]
    if len(leaking):
        speaker = leaking.index[0]
        splits = sorted(sheet.loc[sheet["speaker"] == speaker, "split"].unique())
        raise ConfigError(f"{where}: speaker {speaker!r} is in several splits {splits}")


def write(clips: list[Clip], out: Path, streams: dict[str, tuple[bool, bool]] | None = None):
    """Write a sheet; paths are stored relative to the sheet's folder when possible."""
    out = Path(out)
    rows = []
    face_input = any(c.face_input for c in clips)
    for c in clips:
        path = Path(c.path).resolve()
        rel = os.path.relpath(path, out.parent.resolve())
        row = {
            "clip": c.clip,
            "path": str(rel),
            "label": c.label,
            "split": c.split,
            "speaker": c.speaker,
        }
        if streams is not None:
            row["has_video"], row["has_audio"] = streams[c.clip]
        if face_input:
            row["face_input"] = c.face_input
        rows.append(row)
    df = pd.DataFrame(rows)
    duplicated = df["clip"][df["clip"].duplicated()]
    if len(duplicated):
        raise ConfigError(f"{out}: duplicate clip ids {sorted(duplicated)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, sep="\t", index=False)


def read(path: str | Path) -> pd.DataFrame:
    """Read a sheet, with explicit dtypes, indexed by clip id, paths made absolute.

    Lines starting with ``#`` are comments; a ``#`` elsewhere is part of its field.
    Raises ConfigError naming the sheet for a file that is empty or not UTF-8, a missing
    column, a duplicate clip id or a speaker in two splits, and naming the line and clip
    too for a row of the wrong number of fields or one the schema ``clips.schema.yaml``
    refuses (id pattern, split values, true/false columns).
    """
    from msff.config import validate

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such clip sheet")
    dtypes = {c: str for c in COLUMNS}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    # A line starting with '#' is a comment; a '#' inside a field (a file named
    # "take #2.mp4") is data: pandas' comment= would cut the row there.
    numbered = [
        (n, line)
        for n, line in enumerate(io.StringIO(text), start=1)
        if not line.lstrip().startswith("#") and line.strip()
    ]
    if not numbered:
        raise ConfigError(f"{path}: empty clip sheet (no header line)")
    width = len(numbered[0][1].rstrip("\r\n").split("\t"))
    for line, text_line in numbered[1:]:
        fields = len(text_line.rstrip("\r\n").split("\t"))
        if fields != width:
            raise ConfigError(
                f"{path}: line {line}: {fields} tab-separated fields, the header has {width}"
            )
    kept = "".join(line for _, line in numbered)
    sheet = pd.read_csv(io.StringIO(kept), sep="\t", dtype=dtypes, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in sheet.columns]
    if missing:
        raise ConfigError(f"{path}: missing columns {missing}")
    # Each row against the schema (clips.schema.yaml), named by its line and clip id.
    flags = [c for c in OPTIONAL if c in sheet.columns]
    parsed = {c: [] for c in flags}
    for (line, _), row in zip(numbered[1:], sheet.to_dict("records"), strict=True):
        where = f"{path}: line {line} (clip {row['clip']!r})"
        for col in flags:
            row[col] = _parse_bool(where, col, row[col])
            parsed[col].append(row[col])
        validate(row, "clips", where)
    for col in flags:
        sheet[col] = pd.Series(parsed[col], index=sheet.index, dtype=bool)
    dup = sheet["clip"][sheet["clip"].duplicated()]
    if len(dup):
        raise ConfigError(f"{path}: duplicate clip ids {sorted(dup)}")
    check_speakers(sheet, str(path))
    sheet["path"] = [str((path.parent / p).resolve()) if p else "" for p in sheet["path"]]
    return sheet.set_index("clip", drop=False)


def _parse_bool(where: str, column: str, value) -> bool:
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    key = str(value).strip().lower()
    if key not in words:
        raise ConfigError(f"{where}: column {column}: {value!r} is not true/false")
    return words[key]


def classify(sheet: pd.DataFrame, labels: dict) -> pd.DataFrame:
    """Add ``class`` (the mapped label) and ``excluded`` (why a clip will not run).

    A clip whose label config drops (RAVDESS "calm", MEAD "contempt" by default) or whose
    label is neither a class nor in ``labels.map`` is excluded: it gets no jobs and the
    qc table lists it with the reason. The rest of the run is unaffected.
    """
    from msff.config import class_of

    classes, reasons = [], []
    for label in sheet["label"]:
        try:
            cls = class_of(label, labels)
        except ConfigError as exc:
            classes.append("")
            reasons.append(str(exc))
            continue
        classes.append(cls or "")
        reasons.append("" if cls else f"label {label!r} dropped by labels.map")
    out = sheet.copy()
    out["class"] = classes
    out["excluded"] = reasons
    return out


def running(sheet: pd.DataFrame, where: str) -> pd.DataFrame:
    """The clips of a :func:`classify`-ed sheet that run; ConfigError if there are none.

    A sheet whose every clip is excluded (or that has no rows) would otherwise start a run
    whose models have nothing to train on and fail one by one, far from the cause.
    """
    clips = sheet[sheet["excluded"] == ""]
    if clips.empty:
        reasons = sorted(set(sheet["excluded"]))
        why = f": every clip is excluded ({'; '.join(reasons[:3])})" if reasons else ": no rows"
        raise ConfigError(f"{where}: no clip to run{why}")
    return clips
