"""`stackwise analyze RUN|CMP_DIR`: the depth analyses of stackwise.analysis on a run's final model (or on every run
of a comparison), each written as JSON + PNG into the run's analysis/ folder:

  looping.json/png       primitives accuracy and validation loss with layers START..END-1 looped K = 1..k_max times
  similarity.json/png    layer-to-layer cosine similarity of weights and of residual updates
  depth_use.json/png     validation-loss increase when each layer is skipped; logit-lens loss per layer; the
                         early-exit depth score
On a comparison, CMP_DIR/analysis/ also gets the per-method means over seeds (analysis.json, analysis.png: accuracy
against K, skip increase against relative depth, depth score), which `stackwise report` includes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from stackwise import analysis
from stackwise import config as config_mod
from stackwise.errors import UserError

DEFAULT_TASKS = ("var0_basic", "var1_basic", "var0_code", "copy_words", "copy_random")


def _val_batches(run: Path, cfg, n_batches: int):
    from stackwise import data
    from stackwise.data.loader import val_batches
    from stackwise.data.tokenizer import load as load_tokenizer

    tok_path = run / "tokenizer.json"
    tok = load_tokenizer(tok_path)
    val = data.token_file(cfg, tok, tok_path, "val", log=lambda *_: None)
    return tok, val_batches(val, n_batches, cfg.train.batch_size, cfg.train.seq_len)


def _model_sha256(run: Path) -> str | None:
    """The final model's SHA-256 from its manifest (verified when the model loads), None when it is not at hand:
    stored analyses are reused only for the model they were made from."""
    if not (run / "final").is_dir():
        return None
    from stackwise import checkpoint

    manifest = run / "final" / checkpoint.MANIFEST
    if not manifest.is_file():
        raise UserError(f"{run / 'final'}: no {checkpoint.MANIFEST}; cannot tell which model it holds")
    entry = json.loads(manifest.read_text())["files"].get("model.safetensors")
    if entry is None:
        raise UserError(f"{manifest}: lists no model.safetensors")
    return entry["sha256"]


def analyze_run(run: Path, loop: tuple[int, int] | None = None, k_max: int = 3, n: int = 50,
                tasks: list[str] | None = None, batches: int = 8, log=print) -> dict[str, Any]:
    from stackwise.evals import runner
    from stackwise.evals.scoring import StackwiseLM, evaluate

    run = Path(run)
    settings = {"loop": list(loop) if loop else None, "k_max": k_max, "n": n, "tasks": list(tasks or DEFAULT_TASKS),
                "batches": batches}
    names = ("looping", "similarity", "depth_use")
    path = run / "analysis" / "settings.json"
    stored = json.loads(path.read_text()) if path.is_file() else None
    if stored is not None and not all((run / "analysis" / f"{name}.json").is_file() for name in names):
        stored = None
    model_sha = _model_sha256(run)
    if stored is not None and model_sha is None:
        if {k: v for k, v in stored.items() if k != "model_sha256"} != settings:
            raise UserError(f"{run}: its analysis was made with other settings, and its model is not at hand")
        log(f"reusing {run / 'analysis'} (made with the same settings; the model is not at hand)")
    elif stored is not None and stored == {**settings, "model_sha256": model_sha}:
        log(f"reusing {run / 'analysis'} (made with the same settings from this model)")
    else:
        stored = None
    if stored is not None:
        return {name: json.loads((run / "analysis" / f"{name}.json").read_text()) for name in names}
    cfg = config_mod.from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    (_, _, model), = runner.models(run, "final")
    model.eval()
    tok, val = _val_batches(run, cfg, batches)
    start, end = loop or analysis.default_loop(model.depth, cfg.growth.block_size)
    analysis.parse_loop(f"{start}:{end}", model.depth, with_k=False)
    out = run / "analysis"
    out.mkdir(exist_ok=True)
    log(f"analyzing {run} (depth {model.depth}): looping layers {start}..{end - 1} up to {k_max} times, "
        f"similarity, depth use")
    looping = []
    for k in range(1, k_max + 1):
        view = analysis.looped(model, start, end, k)
        scores = evaluate(StackwiseLM(view, tok, context=cfg.train.seq_len), list(tasks or DEFAULT_TASKS), n=n)
        acc = {t: (s.get("multiple_choice") or s["generation"])["accuracy"] for t, s in scores.items()}
        looping.append({"k": k, "val_loss": analysis.val_loss(view, val), "accuracy": acc,
                        "mean_accuracy": float(np.mean(list(acc.values())))})
    results = {
        "looping": {"start": start, "end": end, "n": n, "results": looping},
        "similarity": {"weights": analysis.weight_similarity(model), "updates": analysis.update_similarity(model, val)},
        "depth_use": {**analysis.skip_losses(model, val), **{f"lens_{k}": v for k, v in
                                                             analysis.logit_lens(model, val).items()}},
    }
    for name, value in results.items():
        (out / f"{name}.json").write_text(json.dumps(value, indent=2) + "\n")
    (out / "settings.json").write_text(json.dumps({**settings, "model_sha256": model_sha}, indent=2) + "\n")
    _plot_run(results, out, model.depth)
    return results


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_run(results: dict[str, Any], out: Path, depth: int) -> None:
    plt = _pyplot()
    lp = results["looping"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ks = [r["k"] for r in lp["results"]]
    for task in lp["results"][0]["accuracy"]:
        ax.plot(ks, [r["accuracy"][task] for r in lp["results"]], marker="o", label=task)
    ax.set(xlabel=f"K: layers {lp['start']}..{lp['end'] - 1} run K times", ylabel="primitive accuracy", xticks=ks)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "looping.png", dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, key in zip(axes, ("weights", "updates")):
        im = ax.imshow(np.array(results["similarity"][key]), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set(title=f"cosine similarity of {key}", xlabel="layer", ylabel="layer")
    fig.colorbar(im, ax=axes.tolist(), shrink=0.8)
    fig.savefig(out / "similarity.png", dpi=110)
    plt.close(fig)
    du = results["depth_use"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].bar(range(depth), du["increase"])
    axes[0].set(xlabel="skipped layer", ylabel="val loss increase (nats)")
    axes[1].plot(range(depth + 1), du["lens_loss"], marker="o")
    axes[1].set(xlabel="exit after layer (0: embeddings)", ylabel="logit-lens loss",
                title=f"early-exit depth score {du['lens_depth_score']:.2f}")
    fig.tight_layout()
    fig.savefig(out / "depth_use.png", dpi=110)
    plt.close(fig)


def analyze_comparison(cmp_dir: Path, **kwargs) -> dict[str, Any]:
    """Every finished run's analyses, then per-method means into CMP_DIR/analysis/analysis.json."""
    cmp_dir = Path(cmp_dir)
    spec = json.loads((cmp_dir / "compare.json").read_text())
    per_method: dict[str, list[dict[str, Any]]] = {}
    for arm in spec["arms"]:
        for seed in spec["seeds"]:
            run = cmp_dir / "runs" / arm["label"] / f"seed{seed}"
            if (run / "final").is_dir() or (run / "analysis" / "settings.json").is_file():
                per_method.setdefault(arm["label"], []).append(analyze_run(run, **kwargs))
    if not per_method:
        raise UserError(f"{cmp_dir}: no finished run to analyze")
    summary = {label: {
        "seeds": len(rs),
        "looping_mean_accuracy": np.mean([[r["mean_accuracy"] for r in x["looping"]["results"]] for x in rs],
                                         axis=0).tolist(),
        "skip_increase": np.mean([x["depth_use"]["increase"] for x in rs], axis=0).tolist(),
        "depth_score": float(np.mean([x["depth_use"]["lens_depth_score"] for x in rs])),
        "lens_loss": np.mean([x["depth_use"]["lens_loss"] for x in rs], axis=0).tolist(),
    } for label, rs in per_method.items() if len({len(x["depth_use"]["increase"]) for x in rs}) == 1}
    out = cmp_dir / "analysis"
    out.mkdir(exist_ok=True)
    (out / "analysis.json").write_text(json.dumps(summary, indent=2) + "\n")
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for label, s in summary.items():
        axes[0].plot(range(1, len(s["looping_mean_accuracy"]) + 1), s["looping_mean_accuracy"], marker="o",
                     label=label)
        axes[1].plot(np.linspace(0, 1, len(s["skip_increase"])), s["skip_increase"], marker="o",
                     label=f"{label} (depth score {s['depth_score']:.2f})")
    axes[0].set(xlabel="K (middle block looped K times)", ylabel="mean primitive accuracy")
    axes[1].set(xlabel="skipped layer (relative depth)", ylabel="val loss increase (nats)")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "analysis.png", dpi=110)
    plt.close(fig)
    return summary
