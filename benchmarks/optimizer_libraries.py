"""pytorch-optimizer against heavyball for the second-order optimizers, on CPU: agreement and step cost.

    pip install heavyball==3.2.1   # not a stackwise dependency: only for this comparison
    python benchmarks/optimizer_libraries.py

For SOAP and PSGD-Kron from each library: one 128 x 128 matrix (the size of the study models' hidden matrices),
loss sum(p^2), 8 steps at LR 1e-3 from the same start. Prints the first step's time (heavyball compiles its steps with
torch.compile), the median of the later steps, and the loss after 8 steps (SOAP is deterministic: the two libraries
should agree; Kron updates its preconditioner at random steps, so only the trend is comparable). Timings are of one
run on a shared machine: read them as ratios within the run.
"""

from __future__ import annotations

import statistics
import time

import heavyball
import pytorch_optimizer
import torch


def main() -> None:
    torch.set_flush_denormal(True)
    rows = []
    for lib, name, cls in (("heavyball", "SOAP", heavyball.SOAP), ("heavyball", "PSGDKron", heavyball.PSGDKron),
                           ("pytorch-optimizer", "SOAP", pytorch_optimizer.SOAP),
                           ("pytorch-optimizer", "Kron", pytorch_optimizer.Kron)):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(128, 128))
        opt = cls([p], lr=1e-3)
        times = []
        for _ in range(8):
            t0 = time.perf_counter()
            (p ** 2).sum().backward()
            opt.step()
            opt.zero_grad()
            times.append(time.perf_counter() - t0)
        rows.append((lib, name, times[0], statistics.median(times[1:]) * 1000, float((p ** 2).sum())))
    print("| library | optimizer | first step (s) | later steps (ms, median) | loss after 8 steps |")
    print("|---|---|---:|---:|---:|")
    for lib, name, first, later, loss in rows:
        print(f"| {lib} | {name} | {first:.2f} | {later:.1f} | {loss:.2f} |")


if __name__ == "__main__":
    main()
