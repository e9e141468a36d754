"""profiles/slurm on a real Slurm: Debian's slurm-wlm and munge, one node on localhost.

The test installs the packages when they are missing (apt-get, hence root: CI runs as root),
starts munged, slurmctld and slurmd of its own (temporary key, ports and state), runs the demo
clips through `snakemake --workflow-profile profiles/slurm` to results/qc.tsv, and asks Slurm
itself (scontrol, the slurmctld log, the jobs' Slurm logs) which jobs ran where.

There is no slurmdbd, so no sacct: the plugin polls squeue, which keeps finished jobs for
MinJobAge seconds. Every command has a time limit, so a stuck cluster fails the test, and the
daemons are stopped by process id when the module ends, also after a failure.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
import yte

from msff.shards import shard_of

from .conftest import REPO

pytestmark = pytest.mark.workflow

PACKAGES = ("slurm-wlm", "munge")
SBIN = Path("/usr/sbin")
# The jobstep plugin (0.6.1) drops every SLURM_* variable, SLURM_CONF too, before the `srun` it
# runs inside each job, so `srun` reads Slurm's default configuration file, as on a real cluster.
# The test links it to its own slurm.conf for the duration of the module, never over a real one.
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# written by msff tests/test_slurm.py"
PARTITION = "msff"  # not the default partition: the profile's partition has to reach sbatch
AV = ("align_faces", "extract_audio", "spectrograms", "opensmile")
SPEECH = ("extract_audio", "spectrograms", "opensmile")
CLIPS = {
    # clip id in demo/clips.tsv (its split there): the per-clip rules it runs
    "01-01-03-01-01-02-05": AV,  # train, RAVDESS actor 05, happy
    "01-01-04-01-01-01-05": AV,  # train, sad
    "03-01-05-02-01-01-01": SPEECH,  # train, RAVDESS actor 01 speech only, angry
    "03-01-04-02-01-01-01": SPEECH,  # train, sad
    "1001_DFA_ANG_XX": AV,  # val, CREMA-D actor 1001
    "1001_DFA_HAP_XX": AV,  # val
    "03-01-05-02-01-01-02": SPEECH,  # test, RAVDESS actor 02
    "03-01-03-02-01-01-02": SPEECH,  # test
}
# One Slurm job each, after the preprocessing batch: the models, fusion and evaluation.
MODEL_RULES = {
    "qc",
    "finetune_cnn",
    "train_blstm",
    "train_c3d",
    "train_hog_svm",
    "finetune_audio_cnn",
    "audio_features",
    "train_blstm_audio",
    "svm_opensmile",
    "fuse",
    "evaluate",
    "class_weighting",
    # the models' own rules with train.class_weighted flipped (config class_weighting)
    "weighted_finetune_cnn",
    "weighted_train_blstm",
    "weighted_train_c3d",
    "weighted_train_hog_svm",
    "weighted_train_blstm_audio",
    "weighted_svm_opensmile",
}
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.")


def run(cmd, *, timeout: float = 60, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kwargs
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{shlex.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def install_slurm() -> None:
    """Install slurm-wlm and munge with apt-get unless dpkg already has both."""
    if os.geteuid() != 0:
        pytest.fail(
            "tests/test_slurm.py needs root: it installs slurm-wlm and munge with apt-get and "
            "starts munged, slurmctld and slurmd (CI runs the tests as root)",
            pytrace=False,
        )
    status = run(["dpkg-query", "-W", "-f=${Status}\\n", *PACKAGES], check=False).stdout
    if status.count("install ok installed") == len(PACKAGES):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], timeout=600, env=env)
    run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
        timeout=900,
        env=env,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def profile() -> dict:
    """profiles/slurm/config.yaml as Snakemake reads it (YTE applied)."""
    text = (REPO / "profiles" / "slurm" / "config.yaml").read_text()
    return yte.process_yaml(io.StringIO(text), require_use_yte=True)


def claim_default_conf(conf: Path) -> None:
    if DEFAULT_CONF.is_symlink() or DEFAULT_CONF.exists():
        try:
            ours = DEFAULT_CONF.read_text().startswith(MARKER)
        except OSError:  # a link into the temporary folder of an earlier, interrupted run
            ours = DEFAULT_CONF.is_symlink()
        if not ours:
            pytest.fail(
                f"{DEFAULT_CONF} exists: this machine has a Slurm configuration of its own, "
                "which the test will not replace",
                pytrace=False,
            )
        DEFAULT_CONF.unlink()
    DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
    DEFAULT_CONF.symlink_to(conf)


def write_conf(root: Path, cpus: int) -> Path:
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    conf = root / "slurm.conf"
    conf.write_text(
        f"""{MARKER}
ClusterName=msfftest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root / "munge.sock"}
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "slurmd"}
SlurmctldPidFile={root / "slurmctld.pid"}
SlurmdPidFile={root / "slurmd.pid"}
SlurmctldLogFile={root / "slurmctld.log"}
SlurmdLogFile={root / "slurmd.log"}
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups, no accounting daemon: the least a job needs
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# a cancelled job's processes get SIGKILL 5 s after SIGTERM
KillWait=5
# finished jobs stay visible to squeue (the plugin's status command) and scontrol for a day:
# with 600 s, a slow machine purged job records before the test read them
MinJobAge=86400
# the node as declared here, even where the machine has fewer CPUs or less memory
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={max(mem_mb, 8000)} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName={PARTITION} Nodes=localhost MaxTime=INFINITE State=UP
"""
    )
    for name in ("state", "slurmd"):
        (root / name).mkdir()
    return conf


class Cluster:
    """munged, slurmctld and slurmd in the foreground, each a child process of the test."""

    def __init__(self, root: Path):
        self.root = root
        self.env = dict(os.environ)
        self.daemons: list[subprocess.Popen] = []

    def start(self, name: str, *args: str) -> None:
        with open(self.root / f"{name}.out", "w") as out:
            self.daemons.append(
                subprocess.Popen(
                    [str(SBIN / name), *args],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    # A Ctrl-C (or a CI's SIGINT to the process group) reaches pytest only, so
                    # the daemons are still there to cancel the jobs when the fixture ends.
                    start_new_session=True,
                )
            )

    def wait_for(self, what: str, ready, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p.args[0] for p in self.daemons if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise AssertionError(f"{what}: {dead or 'timed out'}\n{self.logs()}")
            time.sleep(0.5)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}"
            for p in sorted(self.root.glob("*.out")) + sorted(self.root.glob("*.log"))
        )

    def node_state(self) -> str:
        proc = run(["sinfo", "-h", "-N", "-p", PARTITION, "-o", "%T"], env=self.env, check=False)
        return proc.stdout.strip()

    def cancel_jobs(self) -> None:
        """Cancel every job and wait until slurmd has ended them: no job outlives the test."""
        run(["scancel", "--full", "--user", "root"], env=self.env, check=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            queue = ["squeue", "-h", "-t", "PENDING,RUNNING,COMPLETING"]
            if not run(queue, env=self.env, check=False).stdout.strip():
                return
            time.sleep(1)

    def stop(self) -> None:
        try:
            if len(self.daemons) == 3 and all(p.poll() is None for p in self.daemons):
                self.cancel_jobs()
        finally:
            for proc in reversed(self.daemons):  # slurmd, slurmctld, munged
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    install_slurm()
    root = tmp_path_factory.mktemp("slurm")
    root.chmod(0o700)  # munged refuses a key in a folder that others may write to
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = write_conf(root, cpus=max(os.cpu_count() or 1, int(profile()["cores"])))
    cluster = Cluster(root)
    cluster.env["SLURM_CONF"] = str(conf)
    try:
        claim_default_conf(conf)
        cluster.start(
            "munged",
            "--foreground",
            "--force",  # as root
            f"--key-file={key}",
            f"--socket={root / 'munge.sock'}",
            f"--pid-file={root / 'munged.pid'}",
            f"--seed-file={root / 'munged.seed'}",
            f"--log-file={root / 'munged.log'}",
        )
        cluster.wait_for("munged", (root / "munge.sock").exists)
        cluster.start("slurmctld", "-D", "-f", str(conf))
        cluster.start("slurmd", "-D", "-N", "localhost", "-f", str(conf))
        cluster.wait_for("slurmctld and slurmd", lambda: cluster.node_state() == "idle")
        yield cluster
    finally:
        cluster.stop()
        if DEFAULT_CONF.is_symlink() and DEFAULT_CONF.readlink() == conf:
            DEFAULT_CONF.unlink()


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """Demo clips through `snakemake --workflow-profile profiles/slurm`, to the predictions."""
    work = tmp_path_factory.mktemp("slurm_work")
    sheet = pd.read_csv(REPO / "demo" / "clips.tsv", sep="\t", dtype=str)
    sheet = sheet[sheet["clip"].isin(list(CLIPS))].copy()
    sheet["path"] = [str(REPO / "demo" / p) for p in sheet["path"]]
    sheet.to_csv(work / "clips.tsv", sep="\t", index=False)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["samples"] = str(work / "clips.tsv")
    config["class_weighting"] = True  # its rule too (off by default: it trains every head twice)
    config["gpus_per_job"] = 0  # no cards on this cluster
    (work / "config.yaml").write_text(yaml.safe_dump(config))

    env = dict(cluster.env, MSFF_SLURM_PARTITION=PARTITION)
    env.pop("MSFF_SLURM_ACCOUNT", None)  # no accounts without slurmdbd
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        REPO / "Snakefile",
        "-d",
        work,
        "--workflow-profile",
        REPO / "profiles" / "slurm",
        # This cluster has no slurmdbd, hence no sacct; squeue keeps jobs for MinJobAge.
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--slurm-keep-successful-logs",
    ]
    # Only a guard against a hung cluster: on 2 loaded cores the jobs, one at a time, took
    # over 15 minutes (CI's limit is 90).
    proc = run(cmd, timeout=3600, check=False, cwd=work, env=env)
    if proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-8000:]}\n{cluster.logs()}"
        )
    jobs = {}
    for jobid, log in SUBMITTED.findall(proc.stderr):
        fields = run(["scontrol", "-o", "show", "job", jobid], env=cluster.env).stdout.split()
        jobs[jobid] = dict(f.split("=", 1) for f in fields if "=" in f)
        jobs[jobid]["log"] = Path(log)
    return work, proc, jobs


def test_workflow_completes_on_slurm(slurm_run):
    work, _, _ = slurm_run
    qc = pd.read_csv(work / "results" / "qc.tsv", sep="\t", index_col="clip", dtype=str)
    assert set(qc.index) == set(CLIPS)
    assert (qc.status == "ok").all(), qc.to_dict("index")
    assert qc.loc["03-01-05-02-01-01-01", "branches"] == "audio"
    predictions = pd.read_csv(work / "results" / "predictions.tsv", sep="\t", dtype=str)
    assert set(predictions["clip"]) == {"03-01-05-02-01-01-02", "03-01-03-02-01-01-02"}
    assert (work / "results" / "evaluation" / "table1.tsv").is_file()
    for clip, rules in CLIPS.items():
        for rule in rules:
            assert (work / "logs" / rule / f"{clip}.log").exists(), (rule, clip)


def test_every_job_was_a_slurm_job_in_the_profiles_partition(cluster, slurm_run):
    work, proc, jobs = slurm_run
    assert jobs, proc.stderr[-3000:]
    run_id = re.search(r"SLURM run ID: (\S+)", proc.stderr).group(1)
    controller_log = (cluster.root / "slurmctld.log").read_text()
    for jobid, job in jobs.items():
        assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", job
        assert job["Partition"] == PARTITION, job
        assert job["JobName"] == run_id and job["WorkDir"] == str(work), job
        # started by the main scheduler ("sched: Allocate") or by backfill ("Started")
        started = rf"(sched: Allocate JobId={jobid} NodeList=localhost|Started JobId={jobid}\b)"
        assert re.search(started, controller_log), jobid
        assert f"_job_complete: JobId={jobid} done" in controller_log
        # the plugin's Slurm log of the job (kept with --slurm-keep-successful-logs)
        assert job["log"].is_file() and job["StdOut"] == str(job["log"]), job
        assert job["log"].is_relative_to(work / ".snakemake" / "slurm_logs")


def executed(slurm_log: Path) -> set[tuple[str, str]]:
    """(rule, shard) of every job that Snakemake ran inside a Slurm job, from its Slurm log."""
    blocks = re.findall(r"^localrule (\w+):\n((?:[ \t]+.*\n)+)", slurm_log.read_text(), re.M)
    return {
        (rule, m.group(1)) if (m := re.search(r"wildcards: shard=(\S+)", body)) else (rule, "")
        for rule, body in blocks
    }


def job_of(jobs: dict, prefix: str) -> dict:
    """The one Slurm job whose log folder (group_<name>..., rule_<name>) starts with prefix."""
    found = [job for job in jobs.values() if job["log"].parent.name.startswith(prefix)]
    assert len(found) == 1, [str(job["log"]) for job in jobs.values()]
    return found[0]


def slurm_time(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def test_per_clip_rules_are_batched_into_one_job(slurm_run):
    _, _, jobs = slurm_run
    # Every per-clip job of the 8 clips (one per stage and shard) in one Slurm job, then one
    # job per model rule.
    assert len(jobs) == 1 + len(MODEL_RULES), [str(job["log"]) for job in jobs.values()]
    group = job_of(jobs, "group_preprocess")
    shards = yaml.safe_load((REPO / "config.yaml").read_text())["preprocess_shards"]
    assert executed(group["log"]) == {
        (rule, str(shard_of(clip, shards))) for clip, rules in CLIPS.items() for rule in rules
    }
    # .snakemake/slurm_logs/rule_<name>[/<wildcards>]/<jobid>.log
    by_folder = {
        job["log"].parts[job["log"].parts.index("slurm_logs") + 1]: job for job in jobs.values()
    }
    for rule in MODEL_RULES:
        assert executed(by_folder[f"rule_{rule}"]["log"]) == {(rule, "")}, rule


def test_the_rules_resources_reach_slurm(slurm_run):
    """What each rule declares (workflow/rules/common.smk) is what sbatch asks for."""
    _, _, jobs = slurm_run
    group = job_of(jobs, "group_preprocess")
    qc = job_of(jobs, "rule_qc")
    c3d = job_of(jobs, "rule_train_c3d")
    # qc: one thread, SMALL_JOB_RESOURCES
    assert qc["NumCPUs"] == "1"
    assert qc["MinMemoryNode"] == "4000M"
    assert qc["TimeLimit"] == slurm_time(10)
    # a training rule: its threads, TRAINING_RESOURCES, and no card (gpus_per_job: 0)
    assert c3d["NumCPUs"] == "2"
    assert c3d["MinMemoryNode"] == "8000M"
    assert c3d["TimeLimit"] == slurm_time(60)
    asked = {k: v for k, v in c3d.items() if k.upper().startswith("TRES")}  # TRES, TresPerJob...
    assert "TRES" in asked and not any("gpu" in v for v in asked.values()), asked
    # the batch: no wider than `cores`, and the memory of the jobs it runs side by side:
    # two align_faces (one thread each) on its 2 CPUs
    assert group["NumCPUs"] == str(profile()["cores"])
    assert group["MinMemoryNode"] == "8000M"


def test_predict_on_held_back_clips_agrees_with_the_workflow(slurm_run):
    """`python -m msff predict` on clips of the run: the label and scores fusion gave them.

    (Here because this module's Slurm run is the test suite's one full workflow run.)
    """
    work, _, _ = slurm_run
    fused = pd.read_csv(work / "results" / "scores" / "fusion.tsv", sep="\t", index_col="clip")
    classes = list(fused.columns[1:8])
    clips = ["03-01-03-02-01-01-02", "1001_DFA_ANG_XX"]  # a test clip (speech), a val clip (video)
    sheet = pd.read_csv(work / "clips.tsv", sep="\t", index_col="clip", dtype=str)
    # One call per clip, naming its speaker: the cpu preset's audio models standardise a
    # clip by its speaker's statistics in the run (a clip alone would get others).
    lines, tables = [], []
    for clip in clips:
        out = work / f"held_back_{clip}.tsv"
        proc = run(
            [
                sys.executable,
                "-m",
                "msff",
                "predict",
                sheet.loc[clip, "path"],
                "--speaker",
                sheet.loc[clip, "speaker"],
                "--results",
                work / "results",
                "--config",
                work / "config.yaml",
                "--out",
                out,
            ],
            cwd=work,
            timeout=300,
        )
        lines += proc.stdout.strip().splitlines()
        tables.append(pd.read_csv(out, sep="\t", index_col="clip", keep_default_na=False))
    assert len(lines) == 2, lines
    table = pd.concat(tables)
    assert list(table.index) == clips
    for clip, line in zip(clips, lines, strict=True):
        row, want = table.loc[clip], fused.loc[clip, classes].to_numpy(float)
        for name, value in zip(classes, want, strict=True):
            # Same models, same weights; features were stored as float16.
            assert abs(float(row[name]) - value) < 0.01, (clip, name)
        if row["label"]:
            assert row["label"] == classes[int(want.argmax())]
            assert line.split("\t")[1] == row["label"]
        else:  # no model the fusion weighs could see the clip: the fused row is uniform
            assert row["models_used"] == "" and np.allclose(want, 1 / len(classes), atol=1e-6)
            assert line.split("\t")[1].startswith("no label: no fused model could score it")
    # The speech clip has no video: the fused face model is listed as unable to score it.
    # (C3D is not fused in the cpu preset, so predict does not load it.)
    unable = table.loc[clips[0], "models_unable"].split(",")
    assert "fer2013_blstm" in unable and "c3d" not in unable


def test_predict_learns_a_speaker_the_run_never_saw_from_its_clips(slurm_run):
    """`msff predict <a speaker's clips> --speaker NEW`: each clip is standardised by the
    speaker's statistics over all of them, as the workflow did, not alone.

    Actor 02's clips of the run, under a name the run does not know: the speaker-normalised
    audio models (the SVM, the spectrogram CNN and its BLSTM) learn its statistics from
    them, and every clip gets the scores fusion gave it in the run.
    """
    work, _, _ = slurm_run
    fused = pd.read_csv(work / "results" / "scores" / "fusion.tsv", sep="\t", index_col="clip")
    classes = list(fused.columns[1:8])
    sheet = pd.read_csv(work / "clips.tsv", sep="\t", index_col="clip", dtype=str)
    of_02 = [clip for clip in sheet.index[sheet["speaker"] == "02"] if clip in fused.index]
    assert len(of_02) >= 2  # a speaker the run kept statistics of
    out = work / "learnt_02.tsv"
    proc = run(
        [sys.executable, "-m", "msff", "predict", *sheet.loc[of_02, "path"], "--speaker", "new"]
        + ["--results", work / "results", "--config", work / "config.yaml", "--out", out],
        cwd=work,
        timeout=600,
    )
    assert (
        "speaker new is not in the run: vgg19_blstm_audio, opensmile_svm standardise by its "
        f"statistics over these {len(of_02)} files" in proc.stderr
    ), proc.stderr[-2000:]
    table = pd.read_csv(out, sep="\t", index_col="clip", keep_default_na=False)
    for clip in of_02:
        got = table.loc[clip, classes].to_numpy(float)
        np.testing.assert_allclose(got, fused.loc[clip, classes].to_numpy(float), atol=0.01)


def test_predict_without_a_run_says_what_is_missing(tmp_path):
    proc = run(
        [
            sys.executable,
            "-m",
            "msff",
            "predict",
            REPO / "demo" / "crema_d" / "1001_DFA_ANG_XX.flv",
            "--results",
            tmp_path,
            "--config",
            REPO / "config.yaml",
        ],
        timeout=600,
        check=False,
    )
    # A results folder named but holding no run: an error before any clip, not zero-shot.
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "fusion/weights.json: no fusion weights; run the workflow first" in proc.stderr


def test_report_holds_the_tables_and_the_fusion_is_no_worse_than_one_model(slurm_run):
    """`snakemake --report` on the run: the tables and confusion matrices are in the HTML."""
    work, _, _ = slurm_run
    run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            REPO / "Snakefile",
            "-d",
            work,
            "--report",
            work / "report.html",
        ],
        cwd=work,
        timeout=300,
    )
    html = (work / "report.html").read_text()
    embedded = {
        name: base64.b64decode(data).decode()
        for name, data in re.findall(
            r"data:text/tab-separated-values;charset=utf8;filename=([\w.]+);base64,([\w+/=]+)",
            html,
        )
    }
    assert {"qc.tsv", "table1.tsv", "table2.tsv", "predictions.tsv"} <= set(embedded)
    table1 = pd.read_csv(io.StringIO(embedded["table1.tsv"]), sep="\t")
    assert {"fusion", "opensmile_svm", "c3d"} <= set(table1["model"])
    assert {"accuracy", "uar", "macro_f1", "recall_disgust", "recall_surprise"} <= set(table1)
    weighting = pd.read_csv(io.StringIO(embedded["class_weighting.tsv"]), sep="\t")
    assert set(weighting["class_weighted"]) == {True, False}  # every model, on and off
    assert set(weighting["model"]) == set(table1["model"]) - {"fusion"}
    assert {"recall_disgust", "recall_surprise"} <= set(weighting)
    assert "filename=fusion.val.png" in html and "Confusion matrices" in html
    # The grid holds every single model (weight 1), so on validation fusion is at least as
    # accurate as the best of them.
    weights = json.loads((work / "results" / "fusion" / "weights.json").read_text())
    assert weights["val_accuracy"] >= max(weights["val_accuracy_per_model"].values())
    # The cpu preset's fusion leaves C3D out: trained and in Table 1, recorded as not fused.
    fused = ["fer2013_frames", "fer2013_blstm", "hog_svm", "vgg19_blstm_audio", "opensmile_svm"]
    assert weights["models"] == fused
    assert weights["not_fused"] == ["c3d"]
    confusion = pd.read_csv(
        work / "results" / "evaluation" / "confusion" / "fusion.val.tsv", sep="\t", index_col=0
    )
    assert confusion.to_numpy().sum() == weights["n_val_clips"] == 2


def test_submission_files_follow_the_predictions(slurm_run):
    """`fusion.submission`: one EmotiW file per test clip, named after it, its label inside."""
    work, _, _ = slurm_run
    overlay = work / "submission.yaml"  # merged over config.yaml, key by key
    overlay.write_text("fusion:\n  submission: true\n")
    run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            REPO / "Snakefile",
            "-d",
            work,
            "--cores",
            "1",
            "--configfile",
            work / "config.yaml",
            overlay,
        ],
        cwd=work,
        timeout=300,
    )
    predictions = pd.read_csv(work / "results" / "predictions.tsv", sep="\t", dtype=str)
    # (Snakemake marks a directory output with a hidden .snakemake_timestamp file.)
    files = sorted(p for p in (work / "results" / "submission").iterdir() if p.name[0] != ".")
    assert [f.name for f in files] == sorted(f"{clip}.txt" for clip in predictions["clip"])
    for clip, label in zip(predictions["clip"], predictions["predicted"], strict=True):
        text = (work / "results" / "submission" / f"{clip}.txt").read_text()
        assert text == label.capitalize() + "\n"
        assert text.strip() in {"Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"}
