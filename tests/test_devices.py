"""GPU selection: a job's own card, distinct cards for jobs side by side, else the CPU."""

import subprocess
import sys
import textwrap

import torch

from msff.devices import claim_gpu, pick_device

HOLDER = textwrap.dedent(
    """
    import sys, time
    from msff.devices import claim_gpu
    print(claim_gpu(int(sys.argv[1]), sys.argv[2]), flush=True)
    time.sleep(float(sys.argv[3]))  # a running training job holding its card
    """
)


def start_job(n_devices, lock_dir, seconds):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(n_devices), str(lock_dir), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, int(proc.stdout.readline())


def test_jobs_side_by_side_get_different_cards(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    first, card_a = start_job(3, tmp_path, 30)
    second, card_b = start_job(3, tmp_path, 30)
    try:
        assert {card_a, card_b} == {0, 1}
        first.kill()
        first.wait(timeout=10)
        third, card_c = start_job(3, tmp_path, 0)  # the first job's card is free again
        assert card_c == card_a
        third.wait(timeout=10)
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait(timeout=10)


def test_cards_are_named_by_their_physical_id(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    _, index = start_job(2, tmp_path, 0)
    assert index == 0 and (tmp_path / "msff-gpu-2.lock").exists()


def test_when_every_card_is_held_the_job_shares_card_0(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    holder, _ = start_job(1, tmp_path, 30)
    try:
        assert claim_gpu(1, tmp_path) == 0
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_auto_is_the_cpu_without_cuda():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected
    assert pick_device("cpu") == torch.device("cpu")


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
