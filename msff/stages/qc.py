"""Stage qc: one row per clip of the sheet, from the caches the other stages wrote."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from msff import cache

COLUMNS = [
    "clip",
    "label",
    "class",
    "split",
    "speaker",
    "status",
    "branches",
    "frames",
    "faces_found",
    "face_coverage_pct",
    "audio_seconds",
    "audio",
    "error",
    "note",
]


def clip_row(clip: dict, caches: dict[str, str]) -> dict:
    """The qc row of one clip; ``caches`` maps stage names (faces, audio, ...) to files."""
    row = {c: "" for c in COLUMNS}
    row.update({k: clip[k] for k in ("clip", "label", "class", "split", "speaker")})
    if clip.get("excluded"):
        row.update(status="excluded", error=clip["excluded"])
        return row
    errors, notes, branches = [], [], []
    for stage, path in caches.items():
        meta = cache.attrs(path)
        if meta["error"]:
            errors.append(f"{stage}: {meta['error']}")
        elif meta["note"] and meta["note"] not in notes:
            notes.append(meta["note"])
    if "faces" in caches:
        meta = cache.attrs(caches["faces"])
        if not meta["error"]:
            n, found = int(meta["n_frames"]), int(meta["n_found"])
            row.update(
                frames=n,
                faces_found=found,
                face_coverage_pct=round(100 * found / n, 1) if n else 0.0,
            )
            if found:
                branches.append("face")
    else:
        notes.append("no video stream (sheet)")
    if "audio" in caches:
        meta = cache.attrs(caches["audio"])
        if not meta["error"]:
            row["audio_seconds"] = round(float(meta["seconds"]), 3)
            row["audio"] = "silent" if meta["silent"] else "speech"
            if not meta["silent"] and all(
                not cache.attrs(caches[s])["error"]
                for s in ("spectrograms", "opensmile")
                if s in caches
            ):
                branches.append("audio")
    else:
        row["audio"] = "none"
        notes.append("no audio stream (sheet)")
    row.update(
        status="error" if errors else "ok",
        branches="+".join(branches) or "none",
        error="; ".join(errors),
        note="; ".join(notes),
    )
    return row


def qc_table(clips: list[dict], caches: dict[str, dict[str, str]], out: str | Path) -> pd.DataFrame:
    """Write the qc table of every clip of the sheet to ``out`` (TSV), atomically."""
    table = pd.DataFrame([clip_row(c, caches.get(c["clip"], {})) for c in clips], columns=COLUMNS)
    cache.write_text(out, table.to_csv(sep="\t", index=False))
    return table


def summary(table: pd.DataFrame, out: str | Path) -> str:
    """One paragraph for the console: counts, and every clip with an error."""
    counts = table.status.value_counts()
    lines = [
        f"{out}: {len(table)} clips: {counts.get('ok', 0)} ok, "
        f"{counts.get('error', 0)} with errors, {counts.get('excluded', 0)} excluded"
    ]
    for row in table[table.status == "error"].itertuples():
        lines.append(f"  {row.clip}: {row.error}")
    return "\n".join(lines)
