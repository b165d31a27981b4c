"""`stackwise eval`: score reasoning primitives on a run's final model or checkpoints, or dump the examples.

Writes RUN_DIR/eval/primitives.json:
  {"shots", "n", "seed", "results": [{"checkpoint", "step", "depth", "val_loss", "truncated_prompts",
                                      "tasks": {task: {"generation": {...}, "multiple_choice": {...}}}}]}
each score being {"accuracy", "n", "correct", "chance", "ci95": [lo, hi]} (95% Wilson interval).
"""

from __future__ import annotations

import json
import random
import statistics
import sys
from pathlib import Path

import yaml

from stackwise import checkpoint, hf
from stackwise import config as config_mod
from stackwise.data.tokenizer import load as load_tokenizer
from stackwise.errors import UserError
from stackwise.evals.primitives import TASKS, kshot
from stackwise.evals.scoring import StackwiseLM, evaluate, wilson
from stackwise.model import Transformer


def dump(out: Path, n: int, shots: int, seed: int, tasks: list[str] | None = None) -> list[Path]:
    """One jsonl file per task, each line {"task", "prompt", "answer"} with the full k-shot prompt."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in tasks or list(TASKS):
        rng = random.Random(f"{seed}:{name}")  # the same stream evaluate_task draws
        path = out / f"{name}.jsonl"
        with path.open("w") as f:
            for _ in range(n):
                prompt, ex = kshot(TASKS[name], rng, shots)
                row = {"task": name, "prompt": prompt, "answer": ex.answer}
                if ex.candidates:
                    row["candidates"] = list(ex.candidates)
                if ex.expression is not None:
                    row["expression"] = ex.expression
                f.write(json.dumps(row) + "\n")
        written.append(path)
    from stackwise.evals.lm_eval_tasks import write_tasks

    write_tasks(out, tasks)  # lm-eval YAML tasks reading these very files
    return written


def _val_losses(run: Path) -> dict[int, float]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["step"]: r["val_loss"] for r in rows if "val_loss" in r}


def _warn(message: str) -> None:
    print(f"stackwise: warning: {message}", file=sys.stderr)


def models(run: Path, which: str, warn=_warn):
    """Yield (name, step, model) for `final`, the newest valid checkpoint (`latest`; damaged newer ones are skipped
    with a warning), or every valid checkpoint (`all`, oldest first; damaged ones skipped with a warning)."""
    if not (run / "config.yaml").is_file():
        raise UserError(f"{run}: not a run directory (no config.yaml)")
    if which == "final":
        if not (run / "final").is_dir():
            raise UserError(f"{run}: no final/ model yet (use --checkpoint latest)")
        checkpoint.verify(run / "final")
        cfg = config_mod.from_dict(yaml.safe_load((run / "final" / "stackwise.yaml").read_text()))
        yield "final", cfg.train.steps, hf.load_pretrained(run / "final", cfg.model)
        return
    if which == "latest":
        found = [checkpoint.latest(run, warn=warn)]
    else:
        found = []
        for path in checkpoint.list_checkpoints(run / "checkpoints"):
            try:
                found.append(checkpoint.read(path))
            except UserError as e:
                warn(f"skipping damaged checkpoint: {e}")
        if not found:
            raise UserError(f"{run}: no readable checkpoint")
    for loaded in found:
        model = Transformer(loaded.cfg.model, n_layers=loaded.trainer["depth"])
        checkpoint.load_weights(model, loaded.path)
        yield loaded.path.name, loaded.trainer["step"], model


def result_name(loop: tuple[int, int, int] | None) -> str:
    return "primitives.json" if loop is None else f"primitives-loop-{loop[0]}-{loop[1]}-{loop[2]}.json"


def run(run_dir: Path, which: str = "final", shots: int = 5, n: int = 200, seed: int = 0,
        tasks: list[str] | None = None, log=print, loop: tuple[int, int, int] | None = None) -> dict:
    """Score the primitives on a run's model(s); with loop (START, END, K), layers START..END-1 run K times."""
    run_dir = Path(run_dir)
    unknown = [t for t in tasks or [] if t not in TASKS]
    if unknown:
        raise UserError(f"--tasks: unknown task(s) {', '.join(unknown)} (known: {', '.join(TASKS)})")
    tok_path = run_dir / "tokenizer.json"
    if not tok_path.is_file():
        tok_path = run_dir / "final" / "tokenizer.json"
    tok = load_tokenizer(tok_path)
    cfg = config_mod.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    vals = _val_losses(run_dir)
    results = []
    for name, step, model in models(run_dir, which):
        if loop is not None:
            from stackwise.analysis import looped, parse_loop

            parse_loop(":".join(map(str, loop)), model.depth)
            model = looped(model, *loop)
        log(f"evaluating {name} (step {step}, depth {model.depth}) on {len(tasks or TASKS)} tasks × {n} ...")
        lm = StackwiseLM(model, tok, context=cfg.train.seq_len)
        scores = evaluate(lm, tasks, n=n, shots=shots, seed=seed)
        results.append({"checkpoint": name, "step": step, "depth": model.depth,
                        "val_loss": vals.get(step) if loop is None else None,  # (training logged the plain model)
                        "truncated_prompts": lm.truncated, "tasks": scores})
    report = {"shots": shots, "n": n, "seed": seed, "tasks": tasks or list(TASKS), "context": cfg.train.seq_len,
              "results": results, **({"loop": list(loop)} if loop else {})}
    (run_dir / "eval").mkdir(exist_ok=True)
    (run_dir / "eval" / result_name(loop)).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _stored(path: Path, settings: dict) -> dict | None:
    """A run's earlier result file when it was made with exactly these settings (so a comparison can be evaluated
    again, or across sittings, from results whose models are no longer at hand), else None."""
    if not path.is_file():
        return None
    stored = json.loads(path.read_text())
    return stored if all(stored.get(k) == v for k, v in settings.items()) else None


def _stored_final(path: Path, shots: int, n: int, seed: int, tasks: list[str]) -> dict | None:
    """A run's stored eval/primitives.json when it scores the final model alone with these settings, whether
    `stackwise eval` wrote it for the run or for its comparison (files older than the "tasks" key name their tasks
    in the results), else None."""
    stored = _stored(path, {"shots": shots, "n": n, "seed": seed})
    if stored is None or [r.get("checkpoint") for r in stored["results"]] != ["final"]:
        return None
    return stored if stored.get("tasks", list(stored["results"][0]["tasks"])) == tasks else None


def run_comparison(cmp_dir: Path, shots: int = 5, n: int = 200, seed: int = 0, tasks: list[str] | None = None,
                   log=print) -> dict:
    """Evaluate the final model of every run of a `stackwise compare` directory; per-method table over seeds.

    Writes CMP_DIR/eval/primitives.json ({method: {task: {...per seed..., mean}}}) and eval/primitives.md.
    Per-run results also land in each run's own eval/primitives.json; a run whose file was made with the same
    shots, n, seed and tasks is not evaluated again (its model need not be at hand).
    """
    spec = json.loads((cmp_dir / "compare.json").read_text())
    table: dict[str, dict] = {}
    for arm in spec["arms"]:
        for s in spec["seeds"]:
            run_dir = cmp_dir / "runs" / arm["label"] / f"seed{s}"
            report = _stored_final(run_dir / "eval" / "primitives.json", shots, n, seed, tasks or list(TASKS))
            if report is None and not (run_dir / "final" / "model.safetensors").is_file():
                continue
            if report is None:
                report = run(run_dir, "final", shots, n, seed, tasks, log)
            else:
                log(f"reusing {run_dir / 'eval' / 'primitives.json'}")
            result = report["results"][-1]
            for name, scores in result["tasks"].items():
                entry = table.setdefault(arm["label"], {}).setdefault(name, {"seeds": []})
                entry["seeds"].append({"seed": s, "val_loss": result["val_loss"], **scores})
    for per_task in table.values():
        for entry in per_task.values():
            for kind in ("generation", "multiple_choice"):
                accs = [e[kind]["accuracy"] for e in entry["seeds"] if kind in e]
                if accs:
                    correct = sum(e[kind]["correct"] for e in entry["seeds"] if kind in e)
                    total = sum(e[kind]["n"] for e in entry["seeds"] if kind in e)
                    lo, hi = wilson(correct, total)
                    entry[kind] = {"accuracy": correct / total, "n": total, "ci95": [lo, hi],
                                   "chance": entry["seeds"][0][kind]["chance"], "seeds": len(accs)}
    (cmp_dir / "eval").mkdir(exist_ok=True)
    (cmp_dir / "eval" / "primitives.json").write_text(json.dumps(table, indent=2) + "\n")
    methods = list(table)
    names = list(next(iter(table.values()))) if table else []
    lines = [f"# Reasoning primitives ({shots}-shot, {n} queries per task and run, seeds pooled; 95% Wilson "
             "intervals; multiple-choice accuracy, greedy exact match in parentheses)", "",
             "| task | chance | " + " | ".join(methods) + " |", "|---|---:|" + "---|" * len(methods)]
    for name in names:
        first = table[methods[0]][name]
        chance = f"{first['multiple_choice']['chance']:.0%}" if "multiple_choice" in first else "-"
        cells = []
        for m in methods:
            e = table[m].get(name, {})
            mc, gen = e.get("multiple_choice"), e.get("generation")
            cell = f"{mc['accuracy']:.1%} [{mc['ci95'][0]:.0%}, {mc['ci95'][1]:.0%}]" if mc else "-"
            cells.append(cell + (f" ({gen['accuracy']:.0%})" if gen else ""))
        lines.append(f"| {name} | {chance} | " + " | ".join(cells) + " |")
    (cmp_dir / "eval" / "primitives.md").write_text("\n".join(lines) + "\n")
    return table


def probe(path: Path, cfg, which: str = "final", log=print, run_seeds: list[int] | None = None) -> dict:
    """The fine-tuning probe on a run (eval/probe.json), or on every run of a comparison (eval/probe.{json,md}); there,
    `run_seeds` limits it to the runs of those training seeds."""
    from stackwise.data.tokenizer import eos_id
    from stackwise.evals.probe import run_probe

    def one(run_dir: Path) -> dict:
        stored = _stored(run_dir / "eval" / "probe.json", {"config": cfg.__dict__})
        if stored is not None:
            log(f"reusing {run_dir / 'eval' / 'probe.json'}")
            return stored
        tok_path = run_dir / "tokenizer.json"
        tok = load_tokenizer(tok_path if tok_path.is_file() else run_dir / "final" / "tokenizer.json")
        (name, step, model), = models(run_dir, which)
        result = {"checkpoint": name, "step": step, **run_probe(model, tok, eos_id(tok), cfg, log)}
        (run_dir / "eval").mkdir(exist_ok=True)
        (run_dir / "eval" / "probe.json").write_text(json.dumps(result, indent=2) + "\n")
        return result

    if not (path / "compare.json").is_file():
        if run_seeds is not None:
            raise UserError(f"probe: --run-seeds applies to a comparison directory, and {path} has no compare.json")
        return one(path)
    spec = json.loads((path / "compare.json").read_text())
    seeds = spec["seeds"] if run_seeds is None else run_seeds
    if set(seeds) - set(spec["seeds"]):
        raise UserError(f"probe: --run-seeds {sorted(set(seeds) - set(spec['seeds']))} not among the comparison's "
                        f"seeds {spec['seeds']}")
    table = {}
    for arm in spec["arms"]:
        accs = []
        for s in seeds:
            run_dir = path / "runs" / arm["label"] / f"seed{s}"
            if (run_dir / "final" / "model.safetensors").is_file() or _stored(run_dir / "eval" / "probe.json",
                                                                             {"config": cfg.__dict__}):
                log(f"probe: {arm['label']} seed {s}")
                accs += [x["late_accuracy"] for x in one(run_dir)["per_seed"]]
        if accs:
            table[arm["label"]] = {"mean": statistics.fmean(accs), "n": len(accs),
                                   "std": statistics.stdev(accs) if len(accs) > 1 else 0.0}
    (path / "eval").mkdir(exist_ok=True)
    (path / "eval" / "probe.json").write_text(json.dumps(table, indent=2) + "\n")
    lines = [f"# Fine-tuning probe ({cfg.steps} steps, LR {cfg.lr}, {cfg.seeds} data seeds per run, runs of training "
             f"seeds {', '.join(map(str, seeds))}; late held-out accuracy, chance 20%)", "",
             "| method | accuracy (mean ± std) | n (runs × data seeds) |", "|---|---:|---:|"]
    lines += [f"| {m} | {r['mean']:.1%} ± {r['std']:.1%} | {r['n']} |" for m, r in table.items()]
    (path / "eval" / "probe.md").write_text("\n".join(lines) + "\n")
    return table
