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

The loop (`_train`) reads as its steps: find the resume point, set up a `Trainer` (data, model, optimizer, loader,
logs; the checkpoint's state loaded), then for every step `maybe_grow`, `step`, `log_and_evaluate`,
`maybe_checkpoint`, and at the end `finish`. Parallelism (parallel.py) and growth (grow.py) are applied from
outside the model; the loop only calls them.
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
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from stackwise import checkpoint, growth, hf, parallel, rundir, sophia
from stackwise import config as config_mod
from stackwise import data as data_mod
from stackwise.data.loader import TrainLoader, val_batches
from stackwise.errors import UserError
from stackwise.flops import flops_per_step
from stackwise.grow import freeze, grow
from stackwise.model import Transformer, count_parameters
from stackwise.optim import build_optimizer, depth_lr_factor, lr_at, set_lr
from stackwise.telemetry import GrowthTelemetry


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


def _accumulate(run_model, x: torch.Tensor, loss_of, grad_accum: int, autocast) -> torch.Tensor:
    """Backward of loss_of(micro-batch slice) over train.grad_accum micro-batches of x, gradients synchronised across
    ranks after the last one only (DDP no_sync, FSDP2 gradient sync). Returns the mean loss (a detached tensor)."""
    micro = x.shape[0] // grad_accum  # this rank's slice of the global batch, split into micro-batches
    loss_sum = torch.zeros((), device=x.device)
    for i in range(grad_accum):
        last = i == grad_accum - 1
        sync = contextlib.nullcontext() if last or not hasattr(run_model, "no_sync") else run_model.no_sync()  # DDP
        if hasattr(run_model, "set_requires_gradient_sync"):  # FSDP2: reduce-scatter after the last micro-batch only
            run_model.set_requires_gradient_sync(last)
        with sync, autocast():
            loss = loss_of(slice(i * micro, (i + 1) * micro)) / grad_accum
        with sync:
            loss.backward()
        loss_sum += loss.detach()
    return loss_sum


def train_step(model, run_model, optimizer, batch, cfg: config_mod.Config, device: torch.device,
               autocast) -> tuple[float, torch.Tensor]:
    """One optimizer step over a global batch (split into train.grad_accum micro-batches).

    `model` holds the parameters; `run_model` is what is called (the compiled/wrapped model). Returns the mean loss
    (a Python float: reading it synchronises the device, so a caller's timing is honest) and the gradient norm.
    With Sophia, on the steps that refresh its Hessian estimate, a first pass backpropagates the loss on labels
    sampled from the model (stackwise.sophia) and its squared gradients become the estimate.
    """
    t = cfg.train
    x, y = (b.to(device, non_blocking=True) for b in batch)
    hessian = None
    if optimizer.hessian_due():
        opt = optimizer.optimizers[0]
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        step, row0 = sophia.steps_taken(opt), rank * x.shape[0]  # row0: this rank's first row in the global batch
        _accumulate(run_model, x, lambda s: sophia.sampled_loss(run_model(x[s]), t.seed, step, row0 + s.start),
                    t.grad_accum, autocast)
        hessian = sophia.estimate(opt, x.numel() * world)
        optimizer.zero_grad(set_to_none=True)
    loss_sum = _accumulate(run_model, x, lambda s: run_model(x[s], y[s]), t.grad_accum, autocast)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip if t.grad_clip > 0 else math.inf)
    if hasattr(grad_norm, "full_tensor"):  # a DTensor under FSDP
        grad_norm = grad_norm.full_tensor()
    optimizer.step(hessian)
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

    def update(self, step: int, fields: dict[str, Any]) -> None:
        """Fill in fields of the record of `step` (e.g. a growth event's recovery, known later); atomic."""
        lines = self.path.read_text().splitlines()
        for i, line in enumerate(lines):
            if _step_of(line) == step:
                lines[i] = json.dumps({**json.loads(line), **fields})
        config_mod.write_atomic(self.path, "".join(ln + "\n" for ln in lines))

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
    """The loop, as named steps: resume point, set up, then per step maybe grow, step, log and evaluate, maybe
    checkpoint; then finish."""
    console = console if console is not None and world.main else Console(quiet=not world.main)
    loaded = _resume_point(cfg, out, resume, world, console.print)
    run = Trainer(cfg, out, world, console, loaded)
    with _progress(console) as bar:
        run.bar, run.task = bar, bar.add_task("train", total=cfg.train.steps, completed=run.counters["step"],
                                             loss="-", tps="-")
        for step in range(run.counters["step"], cfg.train.steps):
            t0 = time.perf_counter()  # the step's wall time includes a growth event before it
            stage = growth.stage_at(run.stages, step)
            run.maybe_grow(stage, step, t0)
            grad_norm = run.step(stage, step, t0)
            run.log_and_evaluate(stage, step, grad_norm)
            run.maybe_checkpoint(stage, step + 1)
            bar.update(run.task, completed=step + 1)
    return run.finish()


def _resume_point(cfg: config_mod.Config, out: Path, resume: bool, world: parallel.World,
                  log) -> checkpoint.Loaded | None:
    """The checkpoint to resume from (None for a new run), checked against cfg before anything is written."""
    if not resume:
        return None
    loaded = checkpoint.latest(out, warn=log)
    config_mod.check_resume(loaded.cfg, cfg)
    data_mod.check_identity(out, cfg, "resume")
    log(f"resuming from {loaded.path} at step {loaded.trainer['step']} with {world.size} process(es)")
    return loaded


class Trainer:
    """A run in progress: its data, model, optimizer, loader, counters and logs, and the steps the loop calls."""

    def __init__(self, cfg: config_mod.Config, out: Path, world: parallel.World, console: Console,
                 loaded: checkpoint.Loaded | None):
        t = cfg.train
        self.cfg, self.out, self.world, self.console = cfg, out, world, console
        self.device = parallel.device_for(cfg, world)
        parallel.check_fits(cfg, world, self.device)
        if world.main:
            config_mod.save(cfg, out / "config.yaml")
            if not (out / data_mod.IDENTITY_FILE).is_file():  # (a resumed run's was checked in _resume_point)
                data_mod.save_identity(cfg, out)
        parallel.configure_backend(self.device)
        torch.manual_seed(t.seed)
        if not world.main:
            parallel.barrier(world)  # rank 0 builds the tokenizer and token caches first; the others then read them
        self.data = data_mod.prepare(cfg, log=console.print, console=console)
        if world.main:
            self.data.tokenizer.save(str(out / "tokenizer.json"))  # checkpoints are evaluated before final/ exists
            parallel.barrier(world)
        self.stages = growth.plan(cfg)
        depth = loaded.trainer["depth"] if loaded is not None else self.stages[0].depth
        self.model = Transformer(cfg.model, n_layers=depth).to(self.device)
        if loaded is None and cfg.init.checkpoint:  # grow-existing: start from the checkpoint's weights
            from stackwise.hf_import import load_llama

            self.model.load_state_dict(load_llama(cfg.init.checkpoint)[0].state_dict())
        stage = next(s for s in self.stages if s.depth == depth)
        if self.frozen_layers(stage) is not None:  # resumed after a growth event under growth.freeze_old
            freeze(self.model, self.frozen_layers(stage))
        self.optimizer = build_optimizer(self.model, cfg)
        self.loader = TrainLoader(self.data.train_stages, t.batch_size, t.seq_len, t.seed, world.rank, world.size)
        # data.stages: the steps at which the next stage's data begins, and that stage's number
        self.data_switches = {start: i + 1 for i, (start, _) in enumerate(self.data.train_stages) if start}
        self.counters = {"step": 0, "tokens": 0, "flops": 0, "wall_s": 0.0}
        self.window = {"loss": 0.0, "steps": 0, "wall_s": 0.0}  # what the next metrics line averages over
        self.telemetry = GrowthTelemetry()  # loss jump and recovery of each growth event (events.jsonl)
        if loaded is not None:
            checkpoint.load_state(loaded, self.model, self.optimizer)
            self.loader.load_state_dict(loaded.trainer["loader"])
            self.counters = {k: loaded.trainer[k] for k in self.counters}
            self.window = dict(loaded.trainer["window"])
            checkpoint.set_rng_state(loaded.trainer["rng"])
            if "telemetry" in loaded.trainer:
                self.telemetry.load_state_dict(loaded.trainer["telemetry"])
        self.sharded = parallel.sharded(cfg, world)
        self.run_model, self.optimizer = parallel.wrap_for_training(self.model, self.optimizer, cfg, world)
        self.autocast = autocast_for(cfg, self.device, self.sharded)
        self.val = val_batches(self.data.val, cfg.eval.batches, t.batch_size, t.seq_len)
        self.last_val: float | None = None
        self._open_logs(None if loaded is None else self.counters["step"])
        if loaded is None:
            console.print(f"model: {count_parameters(self.model):,} parameters at depth {self.model.depth} (target "
                          f"{cfg.model.n_layers}), d_model {cfg.model.d_model}; {t.steps} steps of {t.batch_size}×"
                          f"{t.seq_len} tokens on {self.device.type}; growth {cfg.growth.method} in "
                          f"{len(self.stages)} stage(s); {world.size} process(es); run dir {out}")
        self.model.train()

    def _open_logs(self, resume_step: int | None) -> None:
        self.metrics = self.events = self.primitives_log = self.tensorboard = None
        if not self.world.main:
            return
        self.metrics = MetricsLog(self.out / "metrics.jsonl", resume_step)
        if self.cfg.log.tensorboard:
            from stackwise.tensorboard_log import TensorBoardLog

            self.tensorboard = TensorBoardLog(self.out, None if resume_step is None else resume_step + 1)
        # a growth event's step is the number of steps done before it, and the checkpoint of a boundary step is
        # written before the growth: resuming from step R replays the events at steps >= R
        self.events = MetricsLog(self.out / "events.jsonl", None if resume_step is None else resume_step - 1)
        if self.cfg.eval.primitives_every:
            (self.out / "eval").mkdir(exist_ok=True)
            self.primitives_log = MetricsLog(self.out / "eval" / "primitives_during_training.jsonl", resume_step)

    def frozen_layers(self, stage: growth.Stage) -> set[int] | None:
        """growth.freeze_old: from the first growth event on, the original layers' positions (else None)."""
        if not self.cfg.growth.freeze_old or stage.index == 1:
            return None
        return growth.original_positions(self.stages)[stage.index - 1]

    def maybe_grow(self, stage: growth.Stage, step: int, t0: float) -> None:
        """Grow to the stage's depth if the model is shallower: unwrap, grow, wrap again, log the event."""
        if self.model.depth == stage.depth:
            return
        cfg, world = self.cfg, self.world
        self.model, self.optimizer = parallel.unwrap_for_growth(self.model, self.optimizer, cfg, world)
        self.optimizer = grow(self.model, self.optimizer, stage, cfg, self.frozen_layers(stage))
        self.run_model, self.optimizer = parallel.wrap_for_training(self.model, self.optimizer, cfg, world)
        self._note(self.telemetry.event(step))
        if world.main:
            self.events.write({"event": "growth", "step": step, "stage": stage.index, "depth": self.model.depth,
                               "seconds": time.perf_counter() - t0, "loss_jump": None, "recovery_steps": None})
            if self.tensorboard:
                self.tensorboard.event(step, self.model.depth)
        self.bar.console.print(f"step {step:>6}  grew to depth {self.model.depth} "
                               f"(stage {stage.index}/{len(self.stages)})")

    def step(self, stage: growth.Stage, step: int, t0: float) -> torch.Tensor:
        """One optimizer step at the scheduled LR; counts it; stops on a non-finite loss. Returns the grad norm."""
        cfg, t = self.cfg, self.cfg.train
        lr = lr_at(step, cfg, stage.start_step, stage.index)
        set_lr(self.optimizer, lr, lr * depth_lr_factor(cfg, self.model.depth))
        if step in self.data_switches:
            n = len(self.data.train_stages)
            self.bar.console.print(f"step {step:>6}  data stage {self.data_switches[step]}/{n}")
        loss, grad_norm = train_step(self.model, self.run_model, self.optimizer, self.loader.next(), cfg,
                                     self.device, self.autocast)
        loss = parallel.mean_across_ranks(loss, self.world, self.device)
        dt = time.perf_counter() - t0
        self.counters["step"] = step + 1
        self.counters["tokens"] += t.batch_size * t.seq_len
        self.counters["flops"] += flops_per_step(cfg.model, self.model.depth, t.seq_len, t.batch_size)
        self.counters["wall_s"] += dt
        self.window["loss"] += loss
        self.window["steps"] += 1
        self.window["wall_s"] += dt
        self._note(self.telemetry.record(step, loss))
        if not math.isfinite(loss):
            good = checkpoint.list_checkpoints(self.out / "checkpoints")
            raise UserError(f"train.lr: training diverged at step {step + 1} (loss {loss}, lr {lr:.3g}); "
                            + (f"the last good checkpoint is {good[-1]}" if good else "no checkpoint was written")
                            + "; try a lower train.lr")
        return grad_norm

    def _note(self, updates: list[dict[str, Any]]) -> None:
        """Fill in what the telemetry now knows about earlier growth events."""
        if self.world.main:
            for update in updates:
                self.events.update(update["step"], {k: v for k, v in update.items() if k != "step"})

    def log_and_evaluate(self, stage: growth.Stage, step: int, grad_norm: torch.Tensor) -> None:
        """On logging steps, one metrics line (averaged since the last); on evaluation steps, the validation loss and,
        every eval.primitives_every steps, the reasoning primitives."""
        cfg, t, done = self.cfg, self.cfg.train, step + 1
        is_primitives = bool(cfg.eval.primitives_every) and done % cfg.eval.primitives_every == 0
        is_eval = done == t.steps or (cfg.eval.every and done % cfg.eval.every == 0) or is_primitives
        if not (is_eval or done % t.log_every == 0):
            return
        w = self.window
        record = {"step": done, "tokens": self.counters["tokens"], "flops": self.counters["flops"],
                  "wall_s": round(self.counters["wall_s"], 4), "lr": lr_at(step, cfg, stage.start_step, stage.index),
                  "train_loss": w["loss"] / w["steps"], "depth": self.model.depth, "stage": stage.index,
                  "grad_norm": float(grad_norm), "tokens_per_s": w["steps"] * t.batch_size * t.seq_len / w["wall_s"]}
        if is_eval:
            self.last_val = record["val_loss"] = evaluate(self.model, self.val, self.device, self.autocast)
            self.bar.console.print(f"step {done:>6}  train {record['train_loss']:.4f}  val {self.last_val:.4f}  "
                                   f"lr {record['lr']:.2e}")
        if self.world.main:
            self.metrics.write(record)
            if self.tensorboard:
                self.tensorboard.write(record)
        if is_primitives:
            whole = parallel.gather_model(self.model, cfg) if self.sharded else self.model  # collective under FSDP
            if self.world.main:
                _score_primitives(whole, self.data.tokenizer, cfg, done, self.last_val, self.primitives_log)
                self.model.train()
        self.bar.update(self.task, loss=f"{record['train_loss']:.3f}", tps=f"{record['tokens_per_s']:,.0f}")
        self.window = {"loss": 0.0, "steps": 0, "wall_s": 0.0}

    def maybe_checkpoint(self, stage: growth.Stage, done: int) -> None:
        """A checkpoint at the end of every growth stage (kept by rotation), every checkpoint.every steps and at the
        end. FSDP: every rank writes its shards; DDP keeps every rank's state identical, so rank 0's is the copy."""
        cfg = self.cfg
        boundary = done == stage.end_step and done < cfg.train.steps
        if not (boundary or done == cfg.train.steps or (cfg.checkpoint.every and done % cfg.checkpoint.every == 0)):
            return
        if self.world.main or self.sharded:
            trainer_state = {**self.counters, "window": dict(self.window), "depth": self.model.depth,
                             "loader": self.loader.state_dict(), "telemetry": self.telemetry.state_dict()}
            checkpoint.save(self.out / "checkpoints", done, self.model, self.optimizer, trainer_state, cfg,
                            keep=cfg.checkpoint.keep, protect=boundary, sharded=self.sharded)
        parallel.barrier(self.world)

    def finish(self) -> Result:
        """Final validation loss, final/ (the gathered model, sealed), result.json and a sample."""
        cfg, c = self.cfg, self.counters
        if self.last_val is None:  # resumed a run that had already finished
            self.last_val = evaluate(self.model, self.val, self.device, self.autocast)
        self._note(self.telemetry.close_all())
        stats = {"stages": [{"depth": s.depth, "start_step": s.start_step, "end_step": s.end_step}
                            for s in self.stages],
                 "final_val_loss": self.last_val, "perplexity": math.exp(self.last_val),
                 "unigram_entropy": data_mod.unigram_entropy(self.data.val, cfg.model.vocab_size),
                 "steps": c["step"], "tokens": c["tokens"], "flops": c["flops"], "wall_s": c["wall_s"]}
        model = parallel.gather_model(self.model, cfg) if self.sharded else self.model  # the full weights, on rank 0
        if not self.world.main:
            parallel.barrier(self.world)
            return Result(self.out, **stats, sample="")

        hf.export(model, self.out / "final", cfg, self.data.tokenizer)
        if self.tensorboard:
            self.tensorboard.close()
        result = Result(self.out, **stats, sample=_sample(model, self.data.tokenizer, cfg, self.device))
        config_mod.write_atomic(self.out / "result.json", json.dumps(result.to_dict(), indent=2) + "\n")
        parallel.barrier(self.world)
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
