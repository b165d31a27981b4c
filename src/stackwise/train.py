"""The training loop: data, model, optimizer, schedule, evaluation, logging, checkpoints and resume.

`train(cfg, out)` runs a whole run into a run directory:
  config.yaml     the fully resolved config
  tokenizer.json  the tokenizer the run trains with
  metrics.jsonl   one JSON object per logged step (step, tokens, flops, wall_s, lr, train_loss, depth, stage,
                  grad_norm, tokens_per_s; val_loss on evaluation steps)
  checkpoints/    step_NNNNNNN folders (see checkpoint.py)
  final/          safetensors weights + HF config.json + tokenizer, loadable as a Llama model
  result.json     final validation loss, perplexity, unigram entropy, totals

`wall_s` counts training steps only: evaluation, checkpointing and sampling are excluded.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from stackwise import checkpoint, growth, hf, parallel, rundir
from stackwise import config as config_mod
from stackwise import data as data_mod
from stackwise.data.loader import TrainLoader, val_batches
from stackwise.errors import UserError
from stackwise.flops import flops_per_step
from stackwise.grow import grow
from stackwise.model import Transformer, count_parameters
from stackwise.optim import build_optimizer, lr_at, set_lr


@dataclass
class Result:
    run_dir: Path
    stages: list[dict[str, int]]  # the plan the run trained through: depth, start_step, end_step
    final_val_loss: float
    perplexity: float
    unigram_entropy: float
    steps: int
    tokens: int
    flops: int
    wall_s: float
    sample: str

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["run_dir"] = str(self.run_dir)
        return d


def autocast_for(cfg: config_mod.Config, device: torch.device, sharded: bool = False):
    """A context-manager factory: bf16 autocast when train.dtype is bfloat16, else a no-op (also under FSDP, whose
    MixedPrecisionPolicy casts the parameters instead)."""
    enabled = cfg.train.dtype == "bfloat16" and not sharded
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def train_step(model, run_model, optimizer, batch, cfg: config_mod.Config, device: torch.device,
               autocast) -> tuple[float, torch.Tensor]:
    """One optimizer step over a global batch (split into train.grad_accum micro-batches).

    `model` holds the parameters; `run_model` is what is called (the compiled/wrapped model). Returns the mean loss
    (a Python float: reading it synchronises the device, so a caller's timing is honest) and the gradient norm.
    """
    t = cfg.train
    x, y = (b.to(device, non_blocking=True) for b in batch)
    micro = x.shape[0] // t.grad_accum  # this rank's slice of the global batch, split into micro-batches
    loss_sum = torch.zeros((), device=device)
    for i in range(t.grad_accum):
        last = i == t.grad_accum - 1
        sync = contextlib.nullcontext() if last or not hasattr(run_model, "no_sync") else run_model.no_sync()  # DDP
        if hasattr(run_model, "set_requires_gradient_sync"):  # FSDP2: reduce-scatter after the last micro-batch only
            run_model.set_requires_gradient_sync(last)
        with sync, autocast():
            loss = run_model(x[i * micro:(i + 1) * micro], y[i * micro:(i + 1) * micro]) / t.grad_accum
        with sync:
            loss.backward()
        loss_sum += loss.detach()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip if t.grad_clip > 0 else math.inf)
    if hasattr(grad_norm, "full_tensor"):  # a DTensor under FSDP
        grad_norm = grad_norm.full_tensor()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum.item(), grad_norm


def default_out(cfg: config_mod.Config) -> Path:
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.growth.method}"


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches, device: torch.device, autocast) -> float:
    """Mean loss over the fixed validation batches (all the same size, so the mean of means is exact)."""
    was_training = model.training
    model.eval()
    total = 0.0
    for x, y in batches:
        with autocast():
            total += model(x.to(device), y.to(device)).item()
    model.train(was_training)
    return total / len(batches)


def _step_of(line: str) -> int | None:
    """The step of a log line; None for a line torn by a kill."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None


class MetricsLog:
    """An append-only JSON-lines log (metrics.jsonl, events.jsonl). On resume, records with a step past
    `keep_through` are dropped first (and a line torn by a kill), so the log reads as if the run had never stopped;
    the trimmed file replaces the old one atomically. A new run starts it empty."""

    def __init__(self, path: Path, keep_through: int | None):
        self.path = path
        if keep_through is not None and path.exists():
            kept = [ln for ln in path.read_text().splitlines()
                    if (step := _step_of(ln)) is not None and step <= keep_through]
            config_mod.write_atomic(path, "".join(ln + "\n" for ln in kept))
        elif path.exists():
            path.unlink()

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
        TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
    )


def train(cfg: config_mod.Config, out: Path | None = None, resume: bool = False,
          console: Console | None = None) -> Result:
    """Train per cfg into `out`. With resume=True, continue `out` from its newest valid checkpoint.

    Under torchrun with train.parallel ddp or fsdp, every rank runs this function; rank 0 alone writes what is
    not sharded, and holds the run directory's lock (rundir.claim) for the whole run."""
    world = parallel.init_world(cfg)
    t = cfg.train
    if t.batch_size % (t.grad_accum * world.size):
        raise UserError(f"train.batch_size: {t.batch_size} is not divisible by train.grad_accum × processes "
                        f"({t.grad_accum} × {world.size})")
    out = Path(out) if out is not None else default_out(cfg)
    if world.size > 1:  # every rank must agree on a default directory's timestamp
        names = [str(out)]
        torch.distributed.broadcast_object_list(names, src=0)
        out = Path(names[0])
    claim = rundir.claim(out, resume) if world.main else None
    try:
        return _train(cfg, out, resume, console, world)
    finally:
        if claim is not None:
            claim.release()


def _train(cfg: config_mod.Config, out: Path, resume: bool, console: Console | None,
           world: parallel.World) -> Result:
    console = console or Console()
    if not world.main:
        console = Console(quiet=True)
    log = console.print
    t = cfg.train
    loaded = checkpoint.latest(out, warn=log) if resume else None
    if loaded is not None:
        config_mod.check_resume(loaded.cfg, cfg)  # before anything is written
        log(f"resuming from {loaded.path} at step {loaded.trainer['step']} with {world.size} process(es)")
    device = parallel.device_for(cfg, world)
    parallel.check_fits(cfg, world, device)
    if world.main:
        config_mod.save(cfg, out / "config.yaml")
    parallel.configure_backend(device)
    torch.manual_seed(cfg.train.seed)
    if not world.main:
        parallel.barrier(world)  # rank 0 builds the tokenizer and token caches first; the others then read them
    data = data_mod.prepare(cfg, log=log)
    if world.main:
        data.tokenizer.save(str(out / "tokenizer.json"))  # checkpoints are evaluated with it before final/ exists
        parallel.barrier(world)

    arch = loaded.cfg if loaded is not None else cfg  # the architecture is the one the checkpoint recorded
    stages = growth.plan(cfg)
    depth = loaded.trainer["depth"] if loaded is not None else stages[0].depth
    model = Transformer(arch.model, n_layers=depth).to(device)
    optimizer = build_optimizer(model, cfg)
    loader = TrainLoader(data.train, cfg.train.batch_size, cfg.train.seq_len, cfg.train.seed, world.rank, world.size)
    counters = {"step": 0, "tokens": 0, "flops": 0, "wall_s": 0.0}
    window = {"loss": 0.0, "steps": 0, "wall_s": 0.0}  # what the next metrics line averages over
    if loaded is not None:
        checkpoint.load_state(loaded, model, optimizer)
        loader.load_state_dict(loaded.trainer["loader"])
        counters = {k: loaded.trainer[k] for k in counters}
        window = dict(loaded.trainer["window"])
        checkpoint.set_rng_state(loaded.trainer["rng"])
    sharded = parallel.sharded(cfg, world)
    run_model, optimizer = parallel.wrap_for_training(model, optimizer, cfg, world)

    autocast = autocast_for(cfg, device, sharded)
    val = val_batches(data.val, cfg.eval.batches, t.batch_size, t.seq_len)
    resume_step = counters["step"] if loaded is not None else None
    metrics = MetricsLog(out / "metrics.jsonl", resume_step) if world.main else None
    # a growth event's step is the number of steps done before it, and the checkpoint of a boundary step is written
    # before the growth: resuming from step R replays the events at steps >= R
    events = MetricsLog(out / "events.jsonl", None if resume_step is None else resume_step - 1) \
        if world.main else None
    if cfg.eval.primitives_every and world.main:
        (out / "eval").mkdir(exist_ok=True)
        primitives_log = MetricsLog(out / "eval" / "primitives_during_training.jsonl", resume_step)

    def save_checkpoint(step: int, protect: bool = False) -> None:
        # FSDP: every rank writes its shards. DDP keeps every rank's model and optimizer identical: rank 0's copy
        # is the checkpoint.
        if world.main or sharded:
            trainer_state = {**counters, "window": dict(window), "depth": model.depth, "loader": loader.state_dict()}
            checkpoint.save(out / "checkpoints", step, model, optimizer, trainer_state, cfg,
                            keep=cfg.checkpoint.keep, protect=protect, sharded=sharded)
        parallel.barrier(world)

    if loaded is None:
        log(f"model: {count_parameters(model):,} parameters at depth {model.depth} (target {cfg.model.n_layers}), "
            f"d_model {cfg.model.d_model}; {t.steps} steps of {t.batch_size}×{t.seq_len} tokens on {device.type}; "
            f"growth {cfg.growth.method} in {len(stages)} stage(s); {world.size} process(es); run dir {out}")
    last_val = None
    model.train()
    with _progress(console) as bar:
        task = bar.add_task("train", total=t.steps, completed=counters["step"], loss="-", tps="-")
        for step in range(counters["step"], t.steps):
            t0 = time.perf_counter()
            stage = growth.stage_at(stages, step)
            if model.depth != stage.depth:
                model, optimizer = parallel.unwrap_for_growth(model, optimizer, cfg, world)
                optimizer = grow(model, optimizer, stage, cfg)
                run_model, optimizer = parallel.wrap_for_training(model, optimizer, cfg, world)
                seconds = time.perf_counter() - t0
                if world.main:
                    events.write({"event": "growth", "step": step, "stage": stage.index, "depth": model.depth,
                                  "seconds": seconds})
                bar.console.print(f"step {step:>6}  grew to depth {model.depth} (stage {stage.index}/{len(stages)})")
            set_lr(optimizer, lr_at(step, cfg, stage.start_step))
            loss_value, grad_norm = train_step(model, run_model, optimizer, loader.next(), cfg, device, autocast)
            loss_value = parallel.mean_across_ranks(loss_value, world, device)
            dt = time.perf_counter() - t0

            done = step + 1
            counters["step"] = done
            counters["tokens"] += t.batch_size * t.seq_len
            counters["flops"] += flops_per_step(cfg.model, model.depth, t.seq_len, t.batch_size)
            counters["wall_s"] += dt
            window["loss"] += loss_value
            window["steps"] += 1
            window["wall_s"] += dt
            if not math.isfinite(loss_value):
                good = checkpoint.list_checkpoints(out / "checkpoints")
                raise UserError(f"train.lr: training diverged at step {done} (loss {loss_value}, lr "
                                f"{lr_at(step, cfg, stage.start_step):.3g}); "
                                + (f"the last good checkpoint is {good[-1]}" if good else "no checkpoint was written")
                                + "; try a lower train.lr")

            is_primitives = bool(cfg.eval.primitives_every) and done % cfg.eval.primitives_every == 0
            is_eval = done == t.steps or (cfg.eval.every and done % cfg.eval.every == 0) or is_primitives
            if is_eval or done % t.log_every == 0:
                record = {
                    "step": done, "tokens": counters["tokens"], "flops": counters["flops"],
                    "wall_s": round(counters["wall_s"], 4), "lr": lr_at(step, cfg, stage.start_step),
                    "train_loss": window["loss"] / window["steps"], "depth": model.depth, "stage": stage.index,
                    "grad_norm": float(grad_norm),
                    "tokens_per_s": window["steps"] * t.batch_size * t.seq_len / window["wall_s"],
                }
                if is_eval:
                    last_val = evaluate(model, val, device, autocast)
                    record["val_loss"] = last_val
                    bar.console.print(f"step {done:>6}  train {record['train_loss']:.4f}  val {last_val:.4f}  "
                                      f"lr {record['lr']:.2e}")
                if world.main:
                    metrics.write(record)
                if is_primitives:
                    whole = parallel.gather_model(model, cfg) if sharded else model  # collective under FSDP
                    if world.main:
                        _score_primitives(whole, data.tokenizer, cfg, done, last_val, primitives_log)
                        model.train()
                bar.update(task, loss=f"{record['train_loss']:.3f}", tps=f"{record['tokens_per_s']:,.0f}")
                window = {"loss": 0.0, "steps": 0, "wall_s": 0.0}
            boundary = done == stage.end_step and done < t.steps
            if boundary or done == t.steps or (cfg.checkpoint.every and done % cfg.checkpoint.every == 0):
                save_checkpoint(done, protect=boundary)
            bar.update(task, completed=done)

    if last_val is None:  # resumed a run that had already finished
        last_val = evaluate(model, val, device, autocast)
    stats = {"stages": [{"depth": s.depth, "start_step": s.start_step, "end_step": s.end_step} for s in stages],
             "final_val_loss": last_val, "perplexity": math.exp(last_val),
             "unigram_entropy": data_mod.unigram_entropy(data.val, cfg.model.vocab_size), "steps": counters["step"],
             "tokens": counters["tokens"], "flops": counters["flops"], "wall_s": counters["wall_s"]}
    if sharded:
        model = parallel.gather_model(model, cfg)  # the full weights, on rank 0
    if not world.main:
        parallel.barrier(world)
        return Result(out, **stats, sample="")
    def write_final(folder: Path) -> None:
        hf.save_pretrained(model, folder, max_positions=t.seq_len, tok=data.tokenizer)
        config_mod.save(cfg, folder / "stackwise.yaml")

    checkpoint.write_folder(out / "final", write_final)
    result = Result(out, **stats, sample=_sample(model, data.tokenizer, cfg, device))
    config_mod.write_atomic(out / "result.json", json.dumps(result.to_dict(), indent=2) + "\n")
    parallel.barrier(world)
    return result


def _score_primitives(model: Transformer, tok, cfg: config_mod.Config, step: int, val_loss: float,
                      log: MetricsLog) -> None:
    """Reasoning primitives on the current model, appended to eval/primitives_during_training.jsonl (isoplots)."""
    from stackwise.evals.scoring import StackwiseLM, evaluate

    tasks = [x.strip() for x in cfg.eval.primitives_tasks.split(",")] if cfg.eval.primitives_tasks else None
    lm = StackwiseLM(model, tok, context=cfg.train.seq_len)
    scores = evaluate(lm, tasks, n=cfg.eval.primitives_n, shots=cfg.eval.primitives_shots, seed=cfg.train.seed)
    log.write({"step": step, "val_loss": val_loss, "depth": model.depth, "tasks": scores})


def _sample(model: Transformer, tok, cfg: config_mod.Config, device: torch.device) -> str:
    if cfg.eval.sample_tokens == 0:
        return ""
    prompt = "The"
    idx = torch.tensor([tok.encode(prompt).ids], device=device)
    gen = torch.Generator(device=device).manual_seed(cfg.train.seed)
    model.eval()
    out = model.generate(idx, cfg.eval.sample_tokens, context=cfg.train.seq_len, generator=gen)
    return tok.decode(out[0].tolist())
