"""Command line: `stackwise train [--config FILE] [--section.field VALUE ...] [--out DIR] [--resume DIR]`.

Thin by design: parse, build the config, call the library. Every config field is a dotted flag listed in --help
with its default. A UserError prints one line and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from rich.console import Console

from stackwise import config as config_mod
from stackwise import operators
from stackwise.errors import UserError

DEFAULT_RECIPE = "default"
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR,
                      errno.EISDIR, errno.EIO, errno.ENAMETOOLONG}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    defaults = config_mod.Config()
    for section_name, (section, _typ) in config_mod.fields_of(defaults).items():
        name = section_name.split(".", 1)[1]
        default = getattr(section, name)
        choices = config_mod.choices(section_name)
        help_text = f"default: {default}" + (f"; one of {', '.join(choices)}" if choices else "")
        if section_name == "growth.method":
            help_text += "".join(f"; {op.name}: {op.summary}" for op in operators.OPERATORS.values())
        aliases = [f"--{a}" for a, key in config_mod.ALIASES.items() if key == section_name]
        parser.add_argument(*aliases, f"--{section_name}", dest=section_name, default=argparse.SUPPRESS,
                            metavar="V", help=help_text)


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other stackwise error (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"stackwise: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="stackwise", description="Pretrain language models while growing them in depth.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("train", help="train a model (default recipe: recipes/default.yaml)",
                       description="Train a model. Config: defaults < recipe (--config) < dotted flags.")
    p.add_argument("--config", help=f"YAML recipe, a path or a bundled name (default: {DEFAULT_RECIPE})")
    p.add_argument("--out", help="run directory (default: runs/<time>-<method>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its newest valid checkpoint")
    _add_config_flags(p)
    p = sub.add_parser("plan", help="print a run's growth stages and predicted speedup, without training",
                       description="Print the stage plan of a config (same config and flags as train).")
    p.add_argument("--config", help=f"YAML recipe, a path or a bundled name (default: {DEFAULT_RECIPE})")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    _add_config_flags(p)
    p = sub.add_parser("compare", help="train several methods x seeds and report speedups at equal quality",
                       description=compare_doc(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help=f"YAML recipe shared by every method (default: {DEFAULT_RECIPE})")
    p.add_argument("--methods", default="none,gradstack,midas",
                   help="comma-separated method specs, each NAME[:field=value...] (default: none,gradstack,midas)")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per method (default: 1)")
    p.add_argument("--equal-compute", action="store_true", help="add the equal-compute (NTNG) baseline")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs trained at once, sharing the CPU threads or one GPU each (default: 1)")
    p.add_argument("--out", required=True, help="comparison directory (runs/, summary.json, report.md, plots)")
    _add_config_flags(p)
    p = sub.add_parser("report", help="rebuild a comparison's summary, report and plots from its runs")
    p.add_argument("dir", help="a directory written by stackwise compare")
    p = sub.add_parser("eval", help="score reasoning primitives on a run (or --dump the examples)")
    p.add_argument("run", nargs="?", help="run directory (not needed with --dump)")
    p.add_argument("--suite", default="primitives", choices=["primitives"])
    p.add_argument("--shots", type=int, default=5, help="solved examples before each query (default: 5)")
    p.add_argument("--n", type=int, default=200, help="queries per task (default: 200)")
    p.add_argument("--seed", type=int, default=0, help="example generator seed (default: 0)")
    p.add_argument("--tasks", help="comma-separated subset of tasks (default: all)")
    p.add_argument("--checkpoint", default="final", choices=["final", "latest", "all"])
    p.add_argument("--dump", metavar="DIR", help="write the examples as jsonl (one file per task) plus lm-eval YAML "
                   "tasks reading them, and exit")
    p.add_argument("--lm-eval", metavar="TASKS", help="run lm-evaluation-harness tasks (comma-separated; our "
                   "primitives are stackwise_<task>, stackwise_mc_<task>, or the tag stackwise_primitives)")
    p.add_argument("--include-path", metavar="DIR", help="extra lm-eval task folder (default: our primitives, "
                   "dumped with --n/--shots/--seed into RUN/eval/lm_eval_tasks)")
    p.add_argument("--limit", type=int, help="lm-eval: at most this many examples per task")
    p.add_argument("--loop", metavar="START:END:K", help="run layers START..END-1 K times at inference (weights "
                   "shared; K=1 is the model itself); writes eval/primitives-loop-START-END-K.json")
    p = sub.add_parser("grow", help="grow a Hugging Face Llama/Mistral checkpoint offline and write it back "
                       "(docs/grow-existing.md)")
    p.add_argument("checkpoint", help="a local Hugging Face folder: config.json, safetensors, tokenizer.json")
    p.add_argument("--method", default="midas", help="growth operator: midas, lidas, gradstack, progressive, or a "
                   "--plugin's (default: midas)")
    p.add_argument("--to", type=int, required=True, help="target depth")
    p.add_argument("--block-size", type=int, help="layers added per growth event (default: all at once)")
    p.add_argument("--init", default="identity", choices=["identity", "copy", "random"],
                   help="new layers: identity (copies with zeroed output projections: the same function; default), "
                   "copy (as stacking does) or random")
    p.add_argument("--copy-noise", type=float, default=0.0, help="noise on copied layers, relative to each weight's "
                   "std (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of random init and noise (default: 0)")
    p.add_argument("--out", required=True, help="output folder (a Hugging Face folder transformers loads)")
    p = sub.add_parser("analyze", help="depth analyses: looping the middle block, layer similarity, depth use")
    p.add_argument("run", help="run directory, or a comparison directory (every run, plus per-method means)")
    p.add_argument("--loop", metavar="START:END", help="the block to loop (default: the middle growth.block_size "
                   "layers)")
    p.add_argument("--k-max", type=int, default=3, help="loop the block K = 1..k-max times (default: 3)")
    p.add_argument("--n", type=int, default=50, help="queries per primitive task at each K (default: 50)")
    p.add_argument("--tasks", help="comma-separated primitive tasks (default: var0/var1 basic, var0 code, copying)")
    p.add_argument("--batches", type=int, default=8, help="validation batches for losses and similarities")
    p = sub.add_parser("probe", help="fine-tuning probe: learn variable assignment from 64 examples")
    p.add_argument("run", help="run directory, or a comparison directory (every run)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seeds", type=int, default=3, help="data seeds per run")
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--window", type=int, default=5, help="late evaluations averaged")
    p.add_argument("--n-train", type=int, default=64, help="training examples, half depth 1, half depth 2 "
                   "(default: 64, the paper's)")
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=None, help="training examples per fine-tuning step, drawn by "
                   "seeded shuffles (default: all of them, full batch as in the paper)")
    p.add_argument("--checkpoint", default="final", choices=["final", "latest"])
    p.add_argument("--run-seeds", metavar="S,S", help="on a comparison: probe only the runs of these training seeds "
                   "(default: all)")
    p = sub.add_parser("export", help="write a Hugging Face Llama folder (config, safetensors, tokenizer)")
    p.add_argument("run", help="run directory")
    p.add_argument("--out", required=True, help="output folder for transformers' from_pretrained")
    p.add_argument("--checkpoint", default="final", choices=["final", "latest"])
    for command in sub.choices.values():
        command.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                             help="import a Python file that defines growth operators (docs/growth.md); repeatable")
    return parser


def compare_doc() -> str:
    from stackwise import compare

    return compare.__doc__


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    return {k: v for k, v in vars(args).items() if "." in k}


def cmd_train(args: argparse.Namespace, console: Console) -> None:
    from stackwise.train import train  # torch import deferred so --help stays fast

    if args.resume:
        if args.config:
            raise UserError("--resume: the run's own config.yaml is used; drop --config")
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise UserError(f"--resume: {run_dir} is not a run directory (no config.yaml)")
        if args.out and Path(args.out) != run_dir:
            raise UserError("--out: a resumed run continues in its own directory; drop --out")
        cfg = config_mod.load(run_dir / "config.yaml", _overrides(args), saved=True)
        result = train(cfg, run_dir, resume=True, console=console)
    else:
        cfg = config_mod.load(args.config or DEFAULT_RECIPE, _overrides(args))
        result = train(cfg, Path(args.out) if args.out else None, console=console)
    from stackwise import parallel

    parallel.shutdown()
    if int(os.environ.get("RANK", "0")) != 0:
        return
    console.print(
        f"\n[bold]final validation loss {result.final_val_loss:.4f}[/bold]  perplexity {result.perplexity:.2f}  "
        f"(unigram entropy of the validation text: {result.unigram_entropy:.4f} nats/token)\n"
        f"{result.steps} steps, {result.tokens:,} tokens, {result.flops:.3e} FLOPs, {result.wall_s:.1f} s training\n"
        f"sample: {result.sample!r}\n"
        f"run directory: {result.run_dir}  (config.yaml, metrics.jsonl, checkpoints/, final/, result.json)"
    )


def plan_dict(cfg: config_mod.Config) -> dict:
    from stackwise import growth

    stages = growth.plan(cfg)
    return {
        "method": cfg.growth.method,
        "n_layers": cfg.model.n_layers,
        "block_size": cfg.growth.block_size,
        "total_steps": cfg.train.steps,
        "stages": [{"stage": s.index, "depth": s.depth, "start_step": s.start_step, "end_step": s.end_step,
                    "source_layers": None if s.source_layers is None else list(s.source_layers)} for s in stages],
        "speedup": growth.speedup(cfg, stages),
    }


def cmd_plan(args: argparse.Namespace, console: Console) -> None:
    from rich.table import Table

    cfg = config_mod.load(args.config or DEFAULT_RECIPE, _overrides(args))
    plan = plan_dict(cfg)
    if args.json:
        print(json.dumps(plan))
        return
    table = Table(title=f"{plan['method']}: {plan['n_layers']} layers, block {plan['block_size']}, "
                        f"{plan['total_steps']} steps")
    for col in ("stage", "depth", "start step", "end step", "steps", "source layers"):
        table.add_column(col, justify="left" if col == "source layers" else "right")
    for s in plan["stages"]:
        src = "-" if s["source_layers"] is None else " ".join(map(str, s["source_layers"]))
        table.add_row(str(s["stage"]), str(s["depth"]), str(s["start_step"]), str(s["end_step"]),
                      str(s["end_step"] - s["start_step"]), src)
    op = operators.OPERATORS.get(plan["method"])
    console.print(op.summary if op else "no growth: the fixed-depth baseline")
    console.print(table)
    sp = plan["speedup"]
    console.print(f"predicted speedup vs the full-depth baseline over the same steps: "
                  f"layer-FLOPs {sp['layer_flops']:.3f}x, total-FLOPs {sp['total_flops']:.3f}x")


def _print_summary(rows: list[dict], console: Console) -> None:
    for row in rows:
        for f in row["failed"]:
            console.print(f"{row['method']:>28}: seed {f['seed']} FAILED: {f['error']}")
        if "final_val_loss" not in row:
            continue
        iso = row["iso_loss_speedup"]["flops"]["mean"]
        wall = row["iso_loss_speedup"]["calibrated_wall"]["mean"]
        console.print(f"{row['method']:>28}: final val {row['final_val_loss']['mean']:.4f}  "
                      f"iso-loss speedup FLOPs {'not reached' if iso is None else f'{iso:.3f}x'}, "
                      f"calibrated wall {'not reached' if wall is None else f'{wall:.3f}x'}")


def cmd_compare(args: argparse.Namespace, console: Console) -> None:
    from stackwise import compare

    if args.seeds < 1:
        raise UserError("--seeds: must be at least 1")
    if args.jobs < 1:
        raise UserError("--jobs: must be at least 1")
    out = Path(args.out)
    rows = compare.run(args.config, args.methods, args.seeds, args.equal_compute, out, _overrides(args),
                       command="stackwise " + " ".join(args.argv), log=console.print,
                       plugins=[str(Path(p).resolve()) for p in args.plugin], jobs=args.jobs)
    _print_summary(rows, console)
    console.print(f"report: {out / 'report.md'}  summary: {out / 'summary.json'}")
    failures = [f"{row['method']} seed {f['seed']}" for row in rows for f in row["failed"]]
    if failures:
        raise UserError(f"compare: {len(failures)} run(s) failed ({', '.join(failures)}); see {out / 'report.md'}")


def cmd_report(args: argparse.Namespace, console: Console) -> None:
    from stackwise import report

    rows = report.build(Path(args.dir), log=console.print)
    _print_summary(rows, console)
    console.print(f"report: {Path(args.dir) / 'report.md'}")


def cmd_eval(args: argparse.Namespace, console: Console) -> None:
    from rich.table import Table

    from stackwise.evals import runner

    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    if args.n < 1 or args.shots < 0:
        raise UserError("--n must be >= 1 and --shots >= 0")
    if args.dump:
        paths = runner.dump(Path(args.dump), args.n, args.shots, args.seed, tasks)
        console.print(f"wrote {len(paths)} files to {args.dump}")
        return
    if not args.run:
        raise UserError("eval: give a run directory, or --dump DIR")
    if args.lm_eval:
        _lm_eval(args, console)
        return
    if (Path(args.run) / "compare.json").is_file():  # a comparison: every run's final model, one table per method
        runner.run_comparison(Path(args.run), args.shots, args.n, args.seed, tasks, log=console.print)
        console.print((Path(args.run) / "eval" / "primitives.md").read_text())
        return
    loop = None
    if args.loop:
        from stackwise.analysis import parse_loop

        loop = parse_loop(args.loop)
    report = runner.run(Path(args.run), args.checkpoint, args.shots, args.n, args.seed, tasks, log=console.print,
                        loop=loop)

    def cell(score: dict | None) -> str:
        if not score:
            return "-"
        lo, hi = score["ci95"]
        return f"{score['accuracy']:.1%} [{lo:.0%}, {hi:.0%}]"

    for result in report["results"]:
        table = Table(title=f"{result['checkpoint']} (step {result['step']}, depth {result['depth']}, "
                            f"{report['shots']}-shot, n={report['n']}, 95% intervals)")
        for col in ("task", "greedy exact match", "multiple choice", "chance (MC)"):
            table.add_column(col)
        for name, r in result["tasks"].items():
            mc = r.get("multiple_choice")
            table.add_row(name, cell(r["generation"]), cell(mc), f"{mc['chance']:.0%}" if mc else "-")
        console.print(table)
        if result["truncated_prompts"]:
            console.print(f"note: {result['truncated_prompts']} prompts exceeded the model's {report['context']}-token "
                          "context and kept only their end")
    console.print(f"wrote {Path(args.run) / 'eval' / runner.result_name(loop)}")


def cmd_grow(args: argparse.Namespace, console: Console) -> None:
    import torch

    from stackwise import checkpoint, hf, hf_import
    from stackwise.grow import grow_layers

    if not 0 <= args.copy_noise <= 1:
        raise UserError("--copy-noise: must be in [0, 1]")
    out = Path(args.out)
    if out.exists():
        raise UserError(f"--out: {out} already exists")
    model, tok, hf_cfg = hf_import.load_llama(args.checkpoint)
    depth = model.depth
    torch.manual_seed(args.seed)
    for source_map in hf_import.growth_maps(args.method, depth, args.to, args.block_size):
        model.layers = torch.nn.ModuleList(grow_layers(list(model.layers), source_map, args.init,
                                                       model.cfg.init_std, args.to, args.copy_noise))
    positions = hf_cfg.get("max_position_embeddings", 2048)
    checkpoint.write_folder(out, lambda folder: hf.save_pretrained(model, folder, positions, tok))
    console.print(f"grew {args.checkpoint} from {depth} to {model.depth} layers ({args.method}, init {args.init}); "
                  f"wrote {out}")


def cmd_analyze(args: argparse.Namespace, console: Console) -> None:
    from stackwise import analysis, analyze

    if args.k_max < 1 or args.n < 1 or args.batches < 1:
        raise UserError("analyze: --k-max, --n and --batches must be >= 1")
    kwargs = {"loop": analysis.parse_loop(args.loop, with_k=False) if args.loop else None, "k_max": args.k_max,
              "n": args.n, "tasks": [t.strip() for t in args.tasks.split(",")] if args.tasks else None,
              "batches": args.batches, "log": console.print}
    path = Path(args.run)
    if (path / "compare.json").is_file():
        summary = analyze.analyze_comparison(path, **kwargs)
        for label, s in summary.items():
            console.print(f"{label}: mean primitive accuracy at K=1..{args.k_max}: "
                          + ", ".join(f"{a:.1%}" for a in s["looping_mean_accuracy"])
                          + f"; depth score {s['depth_score']:.2f}")
        if (path / "summary.json").is_file():
            from stackwise import report

            report.build(path, log=lambda *_: None)
        console.print(f"wrote {path / 'analysis'} and each run's analysis/")
        return
    if not (path / "config.yaml").is_file():
        raise UserError(f"{path}: not a run or comparison directory")
    results = analyze.analyze_run(path, **kwargs)
    looping = results["looping"]
    console.print(f"looping layers {looping['start']}..{looping['end'] - 1}: mean primitive accuracy "
                  + ", ".join(f"K={r['k']}: {r['mean_accuracy']:.1%}" for r in looping["results"]))
    console.print(f"depth score {results['depth_use']['lens_depth_score']:.2f}; wrote {path / 'analysis'}")


def cmd_probe(args: argparse.Namespace, console: Console) -> None:
    from stackwise.evals import runner
    from stackwise.evals.probe import ProbeConfig

    if min(args.steps, args.seeds, args.eval_every, args.window, args.n_train, args.n_test,
           1 if args.batch_size is None else args.batch_size) < 1 or args.lr <= 0:
        raise UserError("probe: --steps, --seeds, --eval-every, --window, --n-train, --n-test, --batch-size and --lr "
                        "must be positive")
    cfg = ProbeConfig(steps=args.steps, lr=args.lr, seeds=args.seeds, eval_every=args.eval_every,
                      window=args.window, n_train=args.n_train, n_test=args.n_test, batch_size=args.batch_size)
    path = Path(args.run)
    run_seeds = None
    if args.run_seeds is not None:
        try:
            run_seeds = [int(x) for x in args.run_seeds.split(",")]
        except ValueError:
            raise UserError(f"probe: --run-seeds must be comma-separated integers, got {args.run_seeds!r}") from None
    result = runner.probe(path, cfg, args.checkpoint, log=console.print, run_seeds=run_seeds)
    if (path / "compare.json").is_file():
        console.print((path / "eval" / "probe.md").read_text())
    else:
        acc = result["late_accuracy"]
        console.print(f"probe: late held-out accuracy {acc['mean']:.1%} ± {acc['std']:.1%} over {acc['n']} data "
                      f"seeds (chance 20%); wrote {path / 'eval' / 'probe.json'}")


def _lm_eval(args: argparse.Namespace, console: Console) -> None:
    from rich.table import Table

    from stackwise.evals import lm_eval_tasks, runner

    run = Path(args.run)
    hf_dir = run / "eval" / "hf"
    cmd_export(argparse.Namespace(run=str(run), out=str(hf_dir), checkpoint="final"), console)
    include = Path(args.include_path) if args.include_path else run / "eval" / "lm_eval_tasks"
    if not args.include_path:
        runner.dump(include, args.n, args.shots, args.seed)
    tasks = [t.strip() for t in args.lm_eval.split(",") if t.strip()]
    results = lm_eval_tasks.run(hf_dir, tasks, include, args.limit)
    lm_eval_tasks.save(results, run / "eval" / "lm_eval.json")
    table = Table(title=f"lm-evaluation-harness on {run}")
    table.add_column("task")
    table.add_column("metrics")
    for task, metrics in results.items():
        table.add_row(task, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    console.print(table)
    console.print(f"wrote {run / 'eval' / 'lm_eval.json'}")


def cmd_export(args: argparse.Namespace, console: Console) -> None:
    import yaml

    from stackwise import checkpoint, hf
    from stackwise.data.tokenizer import load as load_tokenizer
    from stackwise.evals.runner import models

    run = Path(args.run)
    (name, step, model), = models(run, args.checkpoint)
    cfg = config_mod.from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    tok_path = run / "tokenizer.json" if (run / "tokenizer.json").is_file() else run / "final" / "tokenizer.json"
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / checkpoint.MANIFEST).is_file())):
        raise UserError(f"--out: {out} exists and is not an earlier export; choose a new or empty folder")
    hf.export(model, out, cfg, load_tokenizer(tok_path))
    console.print(f"exported {name} (step {step}, depth {model.depth}) to {out}: "
                  "AutoModelForCausalLM.from_pretrained / AutoTokenizer.from_pretrained load it as Llama")


COMMANDS = {"train": cmd_train, "plan": cmd_plan, "compare": cmd_compare, "report": cmd_report, "eval": cmd_eval,
            "export": cmd_export, "probe": cmd_probe, "analyze": cmd_analyze,
            "grow": cmd_grow}


def main(argv: list[str] | None = None) -> int:
    code = _main(argv)
    parallel = sys.modules.get("stackwise.parallel")  # imported (with torch) only by commands that need it
    if parallel is not None and parallel.joined():
        parallel.end_process(code)
    return code


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.argv = argv
    if args.command is None:
        parser.print_help()
        return 2
    console = Console()
    try:
        for path in args.plugin:
            operators.load_plugin(path)
        COMMANDS[args.command](args, console)
    except UserError as e:
        print(f"stackwise: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine's, not ours: a full disk, a read-only or vanished path
        if e.errno not in ENVIRONMENT_ERRNOS:
            raise
        where = f": {e.filename}" if e.filename else ""
        print(f"stackwise: error: {e.strerror}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stackwise: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
