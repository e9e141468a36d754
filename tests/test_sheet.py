import csv
import os
from pathlib import Path

import pandas as pd
import pytest

from msff import config, sheet
from msff.__main__ import main
from msff.errors import ConfigError

from .conftest import CREMA_D, DATA, MEAD_FRONT, RAVDESS_AV, SPEECH_NEUTRAL


@pytest.mark.parametrize("subset", ["ravdess_speech", "ravdess_av", "crema_d", "mead_front"])
def test_file_names_give_the_labels_of_labels_csv(subset, repo_config):
    """Every file of the real data sets: the name convention agrees with the published labels."""
    labels = repo_config["labels"]
    with open(DATA / subset / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows
    for row in rows:
        label, speaker = sheet.parse_name(Path(row["path"]))
        assert config.class_of(label, labels) == config.class_of(row["label"], labels), row
        assert speaker == row["speaker"], row


def test_unknown_name_convention_is_refused():
    with pytest.raises(ConfigError, match="happy.mp4: file name follows no known convention"):
        sheet.parse_name(Path("happy.mp4"))


def test_from_labels_csv_reads_mead_samples():
    clips = sheet.from_labels_csv(DATA / "mead_samples" / "labels.csv")
    assert len(clips) == 7
    assert {c.label for c in clips} >= {"contempt", "disgust", "surprise"}
    assert all(Path(c.path).exists() for c in clips)


def test_from_afew_takes_splits_and_labels_from_folders(tmp_path):
    for split, emotion, source in [
        ("Train", "Angry", CREMA_D),
        ("Train", "Happy", RAVDESS_AV),
        ("Val", "Happy", MEAD_FRONT),
    ]:
        folder = tmp_path / split / emotion
        folder.mkdir(parents=True, exist_ok=True)
        os.symlink(source, folder / f"{source.stem}.avi")
    clips = {c.clip: c for c in sheet.from_afew(tmp_path)}
    assert clips[CREMA_D.stem].label == "angry" and clips[CREMA_D.stem].split == "train"
    assert clips[MEAD_FRONT.stem].split == "val"
    assert len({c.speaker for c in clips.values()}) == 3  # AFEW names no actors


def test_split_is_speaker_independent_seeded_and_complete():
    clips = sheet.from_folder(DATA / "ravdess_speech")
    assert len(clips) == 960
    fractions = {"train": 0.6, "val": 0.2, "test": 0.2}
    a = sheet.assign_splits(clips, fractions, seed=1)
    b = sheet.assign_splits(clips, fractions, seed=1)
    c = sheet.assign_splits(clips, fractions, seed=2)
    assert [x.split for x in a] == [x.split for x in b]
    assert [x.split for x in a] != [x.split for x in c]
    table = pd.DataFrame([x.__dict__ for x in a])
    assert (table.groupby("speaker").split.nunique() == 1).all()
    speakers = table.groupby("split").speaker.nunique()
    assert dict(speakers) == {"train": 10, "val": 3, "test": 3}


def test_given_split_is_kept(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(
        f"path,label,speaker,split\n{CREMA_D},angry,1001,test\n{SPEECH_NEUTRAL},neutral,01,train\n"
    )
    clips = sheet.assign_splits(sheet.from_labels_csv(csv_path), {"train": 1}, seed=0)
    assert {c.speaker: c.split for c in clips} == {"1001": "test", "01": "train"}


def write_tsv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def row(clip, path, label="happy", split="train", speaker="s1", **extra):
    return dict(clip=clip, path=str(path), label=label, split=split, speaker=speaker, **extra)


def test_read_resolves_paths_against_the_sheet(tmp_path):
    (tmp_path / "clips").mkdir()
    os.symlink(CREMA_D, tmp_path / "clips" / "a.flv")
    path = write_tsv(tmp_path / "clips.tsv", [row("a", "clips/a.flv", has_video="yes")])
    table = sheet.read(path)
    assert Path(table.loc["a", "path"]).read_bytes() == CREMA_D.read_bytes()
    assert table.loc["a", "has_video"] is True or table.loc["a", "has_video"] == True  # noqa: E712


@pytest.mark.parametrize(
    "rows, message",
    [
        ([row("a", "x"), row("a", "y")], "duplicate clip ids \\['a'\\]"),
        ([row("a", "x"), row("b", "y", split="test")], "speaker 's1' is in several splits"),
        (
            [row("a", "x", has_audio="yes"), row("b", "y", has_audio="maybe")],
            "line 3 \\(clip 'b'\\): column has_audio: 'maybe' is not true/false",
        ),
        # A row's own error, not its speaker's: the split is checked before the speakers.
        (
            [row("a", "x"), row("b", "y", split="dev")],
            "line 3 \\(clip 'b'\\): split: 'dev' is not one of \\['train', 'val', 'test'\\]",
        ),
        ([row("a b", "x")], "line 2 \\(clip 'a b'\\): clip: 'a b' does not match"),
        ([row("a", "")], "line 2 \\(clip 'a'\\): path: '' should be non-empty"),
    ],
)
def test_read_refuses_bad_sheets(tmp_path, rows, message):
    path = write_tsv(tmp_path / "clips.tsv", rows)
    with pytest.raises(ConfigError, match=f"clips.tsv: {message}"):
        sheet.read(path)


@pytest.mark.parametrize(
    "text, message",
    [
        (b"", "empty clip sheet"),
        (b"# only a comment\n", "empty clip sheet"),
        (b"clip\tpath\tlabel\tsplit\tspeaker\na\tx\thappy\n", "line 2: 3 tab-separated"),
        (b"clip\tpath\tlabel\tsplit\tspeaker\n# c\na\tx\thappy\ttrain\ts1\t\n", "line 3: 6 tab"),
        (b"clip\tpath\tlabel\tsplit\tspeaker\na\t\xe9.mp4\thappy\ttrain\ts1\n", "not UTF-8"),
    ],
)
def test_read_names_the_sheet_and_line_of_a_malformed_file(tmp_path, text, message):
    (tmp_path / "clips.tsv").write_bytes(text)
    with pytest.raises(ConfigError, match=f"clips.tsv: {message}"):
        sheet.read(tmp_path / "clips.tsv")


def test_read_names_missing_columns(tmp_path):
    path = tmp_path / "clips.tsv"
    path.write_text("clip\tpath\nx\ty\n")
    with pytest.raises(ConfigError, match="missing columns \\['label', 'split', 'speaker'\\]"):
        sheet.read(path)


def test_classify_drops_folds_and_excludes(tmp_path, repo_config):
    path = write_tsv(
        tmp_path / "clips.tsv",
        [row("a", "x", "calm"), row("b", "y", "fearful"), row("c", "z", "bored")],
    )
    table = sheet.classify(sheet.read(path), repo_config["labels"])
    assert list(table["class"]) == ["", "fear", ""]
    assert "dropped by labels.map" in table.loc["a", "excluded"]
    assert "'bored' is not a class" in table.loc["c", "excluded"]
    folded = dict(repo_config["labels"], map={"calm": "neutral"})
    assert sheet.classify(sheet.read(path), folded).loc["a", "class"] == "neutral"


def test_cli_builds_a_sheet_that_the_schema_accepts(tmp_path, capsys):
    out = tmp_path / "clips.tsv"
    assert (
        main(
            [
                "build-sheet",
                str(DATA / "crema_d"),
                str(DATA / "mead_front"),
                "--names",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    said = capsys.readouterr()
    assert "22 clips, 3 speakers" in said.out and "warning" not in said.err
    table = sheet.read(out)
    for record in table.to_dict("records"):
        config.validate(record, "clips", str(out))
    # Probed streams: MEAD's front-view crops have no audio, CREMA-D has both.
    assert not table.loc["W009_front_happy_level3_001", "has_audio"]
    assert table.loc["1001_DFA_ANG_XX", "has_audio"] and table.loc["1001_DFA_ANG_XX", "has_video"]


def test_cli_warns_of_a_split_left_without_a_speaker(tmp_path, capsys):
    out = tmp_path / "clips.tsv"
    args = ["build-sheet", str(DATA / "crema_d"), "--names", "--no-probe", "--out", str(out)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"warning: {out}: no speaker in val" in err
    assert f"warning: {out}: no speaker in test" in err and "no speaker in train" not in err


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    assert main(["build-sheet", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.tsv")]) == 2
    assert "nothing: neither a folder nor a labels.csv" in capsys.readouterr().err


def test_named_speakers_go_to_named_splits():
    clips = sheet.from_folder(DATA / "ravdess_speech")
    out = sheet.assign_splits(
        clips,
        {"train": 0.6, "val": 0.2, "test": 0.2},
        seed=1,
        speakers={"01": "test", "02": "test"},
    )
    by_speaker = {c.speaker: c.split for c in out}
    assert by_speaker["01"] == by_speaker["02"] == "test"
    with pytest.raises(ConfigError, match="split 'dev' is not one of"):
        sheet.assign_splits(clips, {"train": 1}, seed=1, speakers={"01": "dev"})
