"""Markdown report of benchmarks/gpu.sh: throughput, MFU, growth-event cost and loss curves of baseline vs MIDAS.

    python benchmarks/gpu_report.py runs/gpu > runs/gpu/report.md
Throughput is the median tokens/s of single steps after the first 10% (compilation and warm-up excluded); MFU is
model FLOPs per second (docs/flops.md, at each step's real depth) over the bf16 (or fp32) matmul peak measured here.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from growth_overhead import analyse  # noqa: E402
from throughput import matmul_peak  # noqa: E402


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    out = Path(sys.argv[1])
    runs = {name: out / name for name in ("baseline", "midas") if (out / name / "result.json").is_file()}
    if not runs:
        sys.exit(f"no finished run (baseline/ or midas/ with result.json) in {out}")
    cfg = yaml.safe_load((next(iter(runs.values())) / "config.yaml").read_text())
    bf16 = cfg["train"]["dtype"] == "bfloat16"
    device = torch.device("cuda" if torch.cuda.is_available() and cfg["train"]["device"] != "cpu" else "cpu")
    peak = matmul_peak(device, torch.bfloat16 if bf16 else torch.float32, n=8192 if device.type == "cuda" else 1024)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# GPU benchmark: baseline vs MIDAS on {card}\n")
    print(f"torch {torch.__version__}; model d_model {cfg['model']['d_model']}, {cfg['model']['n_layers']} layers, "
          f"seq {cfg['train']['seq_len']}, batch {cfg['train']['batch_size']}, {cfg['train']['dtype']}, "
          f"compile={cfg['train']['compile']}, {cfg['train']['steps']} steps. Measured matmul peak: "
          f"{peak / 1e12:.1f} TFLOP/s ({'bf16' if bf16 else 'fp32'}).\n")
    print("| run | final val loss | median tokens/s | MFU | training s | growth events (share of training time) |")
    print("|---|---:|---:|---:|---:|---|")
    curves = {}
    for name, run in runs.items():
        m = rows(run)
        steady = m[len(m) // 10:]
        tps = statistics.median(r["tokens_per_s"] for r in steady)
        flops_per_s = [(b["flops"] - a["flops"]) / (b["wall_s"] - a["wall_s"]) for a, b in zip(steady, steady[1:])
                       if b["wall_s"] > a["wall_s"]]
        mfu = statistics.median(flops_per_s) / peak
        result = json.loads((run / "result.json").read_text())
        events = analyse(run) if (run / "events.jsonl").is_file() else []
        ev = "; ".join(f"step {e['step']}→{e['depth']}: {e['event_s'] + e['first_step_extra_s']:.2f} s "
                       f"({e['fraction_of_run']:.2%})" for e in events) or "-"
        if events:
            ev += f"; total {sum(e['fraction_of_run'] for e in events):.2%}"
        print(f"| {name} | {result['final_val_loss']:.4f} | {tps:,.0f} | {mfu:.1%} | {result['wall_s']:.1f} | {ev} |")
        curves[name] = [(r["step"], r["val_loss"]) for r in m if "val_loss" in r]
    print("\nValidation loss by step:\n")
    print("| step | " + " | ".join(curves) + " |")
    print("|---:|" + "---:|" * len(curves))
    for i, (step, _) in enumerate(max(curves.values(), key=len)):
        print(f"| {step} | " + " | ".join(f"{c[i][1]:.4f}" if i < len(c) else "-" for c in curves.values()) + " |")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for name, run in runs.items():
            m = rows(run)
            ax.plot([r["step"] for r in m], [r["train_loss"] for r in m], label=f"{name} (train)", lw=0.8)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "loss.png", dpi=120)
        print("\n![training loss](loss.png)")
    except ImportError:
        pass


if __name__ == "__main__":
    main()
