"""GPU selection: a job's own card, distinct cards for jobs side by side, else the CPU."""

import subprocess
import sys
import textwrap

import torch

from msff import devices
from msff.devices import claim_gpu, pick_device

HOLDER = textwrap.dedent(
    """
    import sys
    from msff.devices import claim_gpu
    print(claim_gpu(int(sys.argv[1]), sys.argv[2]), flush=True)
    if sys.argv[3] == "hold":
        sys.stdin.read()  # a running training job holding its card, until the test ends it
    """
)


def start_job(n_devices, lock_dir, hold):
    """A job that claims a card; ``hold``: it keeps it until killed (no clock involved)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(n_devices), str(lock_dir), "hold" if hold else "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, int(proc.stdout.readline())


def test_jobs_side_by_side_get_different_cards(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    first, card_a = start_job(3, tmp_path, hold=True)
    second, card_b = start_job(3, tmp_path, hold=True)
    try:
        assert {card_a, card_b} == {0, 1}
        first.kill()
        first.wait()
        third, card_c = start_job(3, tmp_path, hold=False)  # the first job's card is free again
        assert card_c == card_a
        third.wait()
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait()


def test_cards_are_named_by_their_physical_id(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    _, index = start_job(2, tmp_path, hold=False)
    assert index == 0 and (tmp_path / "msff-gpu-2.lock").exists()


def test_when_every_card_is_held_the_job_shares_card_0(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    holder, _ = start_job(1, tmp_path, hold=True)
    try:
        assert claim_gpu(1, tmp_path) == 0
    finally:
        holder.kill()
        holder.wait()


def test_auto_is_the_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    assert pick_device("cpu") == torch.device("cpu")


def test_auto_takes_the_one_card_or_claims_a_free_one_of_several(tmp_path, monkeypatch):
    # No card here: torch is told of cards; the locks and the other job are real.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(devices, "_held", {})  # this process holds no card yet
    monkeypatch.setenv("MSFF_GPU_LOCKS", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert pick_device("auto") == torch.device("cuda:0")  # Slurm's one granted card
    assert not list(tmp_path.glob("*.lock"))  # one card: nothing to claim
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    holder, card = start_job(3, tmp_path, hold=True)
    try:
        assert card == 0
        assert pick_device("auto") == torch.device("cuda:1")
        assert pick_device("auto") == torch.device("cuda:1")  # a job keeps the card it holds
        assert set(devices._held) == {"1"}
    finally:
        holder.kill()
        holder.wait()
        for handle in devices._held.values():
            handle.close()


DENORMAL_PRODUCT = textwrap.dedent(
    """
    import sys, torch
    from msff.devices import set_cpu_threads
    if sys.argv[1] == "msff":
        set_cpu_threads(2)
    else:
        torch.set_num_threads(2)
    # 4M elements: torch splits the product over both threads, the worker's share included.
    x = torch.full((1 << 22,), 1e-39)  # denormal in float32
    print(torch.count_nonzero(x * 1.5).item(), x.numel())
    """
)


def test_cpu_threads_flush_denormals_on_every_thread():
    def nonzero_products(setup):
        run = subprocess.run(
            [sys.executable, "-c", DENORMAL_PRODUCT, setup],
            capture_output=True,
            text=True,
            check=True,
        )
        return [int(v) for v in run.stdout.split()]

    kept, n = nonzero_products("plain")
    assert kept == n  # without the flag the products stay denormal (and slow)
    flushed, n = nonzero_products("msff")
    assert flushed == 0, f"{flushed} of {n} denormal products survived set_cpu_threads"
