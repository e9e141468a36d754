"""Training-step time of a trained VGG-19 with and without denormal floats flushed to zero.

Run from the repository root, after ``bench/audio_ravdess.py`` has trained its VGG-19::

    python bench/denormals.py [--checkpoint /tmp/msff-audio-ravdess/cpu-e15/vgg19_audio_cnn.pt]
        [--threads 2] [--steps 20]

Each case runs in a fresh process (torch's worker threads take the flush flag when they
are created, see :func:`msff.devices.set_cpu_threads`): a fresh network and the trained
one, each with ``torch.set_num_threads`` alone (how the rules ran before) and with
``set_cpu_threads`` (how they run now). A step is forward, backward and an Adam update
on a batch of 8 spectrogram-sized inputs, the cpu preset's training step. Printed: ms
per step and the ratio of each case to the fresh network without flushing, one run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch

CHILD = """
import json, sys, time, torch
checkpoint, threads, steps, flush, trained = sys.argv[1:6]
if flush == "1":
    from msff.devices import set_cpu_threads
    set_cpu_threads(int(threads))
else:
    torch.set_num_threads(int(threads))
from msff.models.vgg19 import build as audio_cnn
saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
meta = saved["meta"]
# The network finetune_audio_cnn starts from; the trained one gets the checkpoint's weights.
model = audio_cnn(len(meta["classes"]), meta["fc_width"], meta["width"], None,
                  meta["input_size"], meta["batch_norm"]).model
if trained == "1":
    model.load_state_dict(saved["state_dict"])
torch.manual_seed(0)
size = meta["input_size"]
x, y = torch.rand(8, 3, size, size) * 255, torch.randint(0, len(meta["classes"]), (8,))
opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=5e-4)
model.train()
def step():
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
for _ in range(3):
    step()
start = time.perf_counter()
for _ in range(int(steps)):
    step()
print((time.perf_counter() - start) / int(steps) * 1e3)
"""


def main() -> None:
    """Time the four cases, print ms per step and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=Path("/tmp/msff-audio-ravdess/cpu-e15/vgg19_audio_cnn.pt"),
        help="a VGG-19 written by finetune_audio_cnn",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    if not args.checkpoint.is_file():
        sys.exit(f"{args.checkpoint}: no such checkpoint; run bench/audio_ravdess.py first")
    rows = []
    for trained in ("0", "1"):
        for flush in ("0", "1"):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(args.checkpoint), str(args.threads)]
                + [str(args.steps), flush, trained],
                capture_output=True,
                text=True,
                check=True,
            )
            rows.append((trained == "1", flush == "1", float(out.stdout)))
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    tiny = torch.finfo(torch.float32).tiny  # this process does not flush: denormals count
    denormal = sum(
        int(((t.abs() < tiny) & (t != 0)).sum()) for t in state.values() if t.is_floating_point()
    )
    print(f"checkpoint {args.checkpoint}: {denormal} denormal weights")
    print(f"{args.threads} threads, {args.steps} steps of batch 8 (forward, backward, Adam)")
    base = rows[0][2]
    print("network   denormals flushed   ms/step   ratio to fresh, unflushed")
    for trained, flush, ms in rows:
        name = "trained" if trained else "fresh"
        print(f"{name:9} {'yes' if flush else 'no':19} {ms:7.1f}   {ms / base:.2f}")


if __name__ == "__main__":
    main()
