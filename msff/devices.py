"""Which device a job runs on: the GPU it was given, a free card of several, or the CPU.

Snakemake's ``--resources gpu=N`` counts cards but does not say which one a job may use,
so two GPU jobs started side by side on a workstation would both take card 0. A job that
sees several cards therefore claims one with an exclusive lock file (held until the job's
process ends), and the next job takes the next free card. A job that sees one card (Slurm
sets CUDA_VISIBLE_DEVICES to the card it granted) uses it; with no card, the CPU.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from pathlib import Path

import torch

log = logging.getLogger("msff")

# Open lock files of the cards this process holds: closing one would release its card.
_held: dict[str, object] = {}


def _card_ids(n_devices: int) -> list[str]:
    """Physical ids of the visible cards, so jobs with different visible sets agree."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    return ids[:n_devices] if len(ids) >= n_devices else [str(i) for i in range(n_devices)]


def claim_gpu(n_devices: int, lock_dir: str | Path | None = None) -> int:
    """Index (among the visible cards) of a card no other msff process holds; claim it.

    When every card is held, card 0 is shared and a warning says so.
    """
    lock_dir = Path(lock_dir or os.environ.get("MSFF_GPU_LOCKS", tempfile.gettempdir()))
    lock_dir.mkdir(parents=True, exist_ok=True)
    for index, card in enumerate(_card_ids(n_devices)):
        if card in _held:
            return index
        handle = open(lock_dir / f"msff-gpu-{card}.lock", "a+")  # noqa: SIM115 - held open
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _held[card] = handle
        log.info("GPU %s claimed (lock %s)", card, handle.name)
        return index
    log.warning("all %d GPUs are held by other msff jobs: sharing GPU 0", n_devices)
    return 0


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: the job's GPU (a free one when it sees several), else the CPU."""
    if name != "auto":
        return torch.device(name)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    n_devices = torch.cuda.device_count()
    return torch.device("cuda:0" if n_devices == 1 else f"cuda:{claim_gpu(n_devices)}")


def set_cpu_threads(threads: int | None = None) -> None:
    """Give torch ``threads`` CPU threads (None: torch's default), denormals flushed to zero.

    Weights that training drives toward zero end up denormal (below 1.2e-38), and x86
    arithmetic on denormals is many times slower: the cpu preset's VGG-19 after 15 epochs
    on RAVDESS held 405k of them, its training step took 1.6-1.8x as long as a fresh one's
    (bench/denormals.py) and its epochs grew from 194 s to 487 s. Flushed, it is within
    1.01-1.12x of a fresh one's; values under 1.2e-38 change no prediction.
    It must come first: torch's worker threads inherit the flag when they are created,
    so set after the first parallel operation it reaches only the calling thread.
    """
    torch.set_flush_denormal(True)
    if threads is not None:
        torch.set_num_threads(threads)
