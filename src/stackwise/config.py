"""Typed run configuration: dataclasses, YAML load/save, dotted overrides, validation.

The `Config` object is the single source of truth for a run. It is saved as `config.yaml` in every run directory
and inside every checkpoint, and everything else (data, model, trainer) is built from it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stackwise import operators
from stackwise.errors import UserError

RECIPES_DIR = Path(__file__).parent / "recipes"


@dataclass
class ModelConfig:
    n_layers: int = 6  # target depth
    d_model: int = 256
    n_heads: int = 4
    n_kv_heads: int | None = None  # None = n_heads (no grouped-query attention)
    d_ff: int | None = None  # None = Llama rule: 8/3·d_model rounded up to a multiple of 64
    vocab_size: int = 8192
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    init_std: float = 0.02
    # Canon layers (Allen-Zhu 2025), any of four sites: "A" before attention, "B" on the query/key/value projections,
    # "C" before the MLP, "D" on the MLP's gate/up projections ("AC", "ABCD", ...); "" = none
    canon: str = ""
    canon_kernel: int = 4  # tokens each Canon layer mixes (the current one and kernel-1 before it)
    canon_init: str = "zero"  # "zero": each Canon layer starts as the identity; "conv": PyTorch's Conv1d default


@dataclass
class TrainConfig:
    steps: int = 500
    batch_size: int = 16  # sequences per optimizer step (global, across accumulation and ranks)
    grad_accum: int = 1  # micro-batches per step; batch_size must be divisible by it
    seq_len: int = 128
    lr: float = 3e-3
    lr_min_ratio: float = 0.1  # the schedule decays to lr·lr_min_ratio at the last step
    schedule: str = "cosine"  # cosine (from the warmup's end) | wsd (warmup-stable-decay: the peak LR until the
    # last decay_frac of the steps, then a linear decay; MiniCPM, Hu et al. 2024; Hägele et al. 2024)
    decay_frac: float = 0.2  # wsd: the share of train.steps that the final decay takes
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # 0 disables clipping
    seed: int = 0
    dtype: str = "float32"  # float32 | bfloat16 (autocast; under fsdp a bf16 MixedPrecisionPolicy instead)
    compile: bool = False  # torch.compile each block
    device: str = "auto"  # auto | cpu | cuda
    parallel: str = "none"  # none | ddp | fsdp (under torchrun; each rank a disjoint slice of the same global batch)
    log_every: int = 10


@dataclass
class OptimConfig:
    name: str = "adamw"  # adamw | adafactor | sophia | muon | soap | shampoo | psgd (the last four: hidden
    #                      matrices only, AdamW on the rest)
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    muon_momentum: float = 0.95


@dataclass
class DataConfig:
    train: str = "bundled"  # bundled | file.txt | file.jsonl | folder | hf:NAME[:SPLIT] | synthetic[:SEED[:MB[:KINDS]]]
    mix: str | None = None  # instead of train: sources by weight, e.g. "bundled:0.8,synthetic:0.2" (docs/data.md)
    stages: str | None = None  # instead of train: a mix per stage of training, "0=MIX;STEP=MIX;..." (docs/data.md)
    val: str = "bundled"  # as train; for hf: datasets, hf:NAME:SPLIT
    tokenizer: str | None = None  # path to a tokenizer.json; None trains a byte-level BPE on the train split
    tokenizer_sample_mb: float | None = 16.0  # BPE trains on N MB of the train split, spread over its files; None=all
    split_digits: bool = False  # trained BPE: every digit its own token (" 457" and "457" share the digits 4 5 7)
    split_names: bool = False  # trained BPE: a one-letter word's leading space apart (" x" and "x" share the x)
    max_tokens: int | None = None  # keep only the first N tokens of the train split (a slice of a huge source)
    text_field: str = "text"  # field read from .jsonl files and Hugging Face datasets
    cache_dir: str = "~/.cache/stackwise"  # tokenizers and token files, keyed by content and settings


@dataclass
class EvalConfig:
    every: int = 100  # validation every N steps (and always at the end); 0 = only at the end
    batches: int = 8  # validation batches of train.batch_size × train.seq_len tokens, fixed across the run
    sample_tokens: int = 48  # length of the generated sample printed at the end; 0 disables
    primitives_every: int = 0  # score reasoning primitives every N steps, beside val loss (isoplots); 0 = never
    primitives_n: int = 50  # queries per task at each of those steps
    primitives_shots: int = 5
    primitives_tasks: str | None = None  # comma-separated subset (default: every task)


@dataclass
class GrowthConfig:
    method: str = "none"  # none (fixed-depth baseline) | midas | lidas | gradstack | progressive
    block_size: int = 2  # b: layers added per growth event (midas, lidas, gradstack); n_layers must be divisible
    alpha: float = 1.0  # PROP-α: stage i gets a share of the steps proportional to i^α (0 = uniform)
    stage_fractions: list[float] | None = None  # explicit share of each stage instead of alpha; sums to 1
    start_layers: int | None = None  # depth of stage 1 (default block_size); progressive doubles it, others add b
    init: str = "copy"  # new layers: copy | random | identity (copy with zeroed output projections)
    optimizer_state: str = "auto"  # at growth: copy (new params take their source's state) | reset-new | reset-all;
    # auto = copy under init copy, reset-new under random or identity (config.optimizer_state_policy)
    rewarmup_steps: int = 0  # optional linear LR re-warmup after each growth event (ablations; 0 = off)
    lr_drop: float = 1.0  # the LR schedule after the k-th growth event is multiplied by lr_drop^k (1 = off)
    depth_lr_exponent: float = 0.0  # blocks' LR x (n_layers / depth)^e at each stage (0 = off; 0.5 = Depth-muP rule)
    freeze_old: bool = False  # LLaMA Pro: after growth only new layers train (original ones, embeddings, head frozen)
    copy_noise: float = 0.0  # noise on copied layers, relative to each weight's std (symmetry breaking; 0 = off)


@dataclass
class CheckpointConfig:
    every: int = 0  # write a checkpoint every N steps; 0 = only at the end
    keep: int = 2  # keep the newest N periodic checkpoints


@dataclass
class InitConfig:
    checkpoint: str | None = None  # (flag --init.from) a Hugging Face Llama/Mistral folder to start from


@dataclass
class LogConfig:
    tensorboard: bool = False  # also write TensorBoard event files to RUN/tensorboard (pip install -e ".[tensorboard]")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    growth: GrowthConfig = field(default_factory=GrowthConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    init: InitConfig = field(default_factory=InitConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


CHOICES: dict[str, tuple[str, ...]] = {
    "train.dtype": ("float32", "bfloat16"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.parallel": ("none", "ddp", "fsdp"),
    "train.schedule": ("cosine", "wsd"),
    "optim.name": ("adamw", "adafactor", "muon", "soap", "shampoo", "psgd", "sophia"),
    "growth.init": ("copy", "random", "identity"),
    "growth.optimizer_state": ("auto", "copy", "reset-new", "reset-all"),
    "model.canon_init": ("zero", "conv"),
}


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric field: lo ≤ v ≤ hi, with either end excluded (open) or absent (None)."""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, v: float) -> bool:
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            return False
        return self.hi is None or (v < self.hi or (not self.hi_open and v == self.hi))

    def __str__(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"


POSITIVE, NON_NEGATIVE, POSITIVE_REAL = Range(1), Range(0), Range(0, lo_open=True)
FRACTION, MOMENTUM = Range(0, 1), Range(0, 1, hi_open=True)
MAX_SEED = 2**63 - 1
CANON_SITES = "ABCD"  # where a block may hold a Canon layer (model.canon): see ModelConfig.canon
# Bounds of every numeric field (None, where a field allows it, always passes). Float fields must also be finite.
RANGES: dict[str, Range] = {
    "model.n_layers": POSITIVE, "model.d_model": POSITIVE, "model.n_heads": POSITIVE, "model.n_kv_heads": POSITIVE,
    "model.d_ff": POSITIVE, "model.vocab_size": Range(1, 2**32), "model.rope_theta": POSITIVE_REAL,
    "model.norm_eps": Range(0, 1, lo_open=True), "model.init_std": Range(0, 1, lo_open=True),
    "model.canon_kernel": Range(2),
    "train.steps": POSITIVE, "train.batch_size": POSITIVE, "train.grad_accum": POSITIVE, "train.seq_len": POSITIVE,
    "train.lr": POSITIVE_REAL, "train.lr_min_ratio": FRACTION, "train.warmup_steps": NON_NEGATIVE,
    "train.decay_frac": Range(0, 1, lo_open=True),
    "train.weight_decay": NON_NEGATIVE, "train.grad_clip": NON_NEGATIVE, "train.seed": Range(0, MAX_SEED),
    "train.log_every": POSITIVE, "data.tokenizer_sample_mb": POSITIVE_REAL,
    "data.max_tokens": POSITIVE,
    "optim.beta1": MOMENTUM, "optim.beta2": MOMENTUM, "optim.eps": POSITIVE_REAL, "optim.muon_momentum": MOMENTUM,
    "eval.every": NON_NEGATIVE, "eval.batches": POSITIVE, "eval.sample_tokens": NON_NEGATIVE,
    "eval.primitives_every": NON_NEGATIVE, "eval.primitives_n": POSITIVE, "eval.primitives_shots": NON_NEGATIVE,
    "growth.block_size": POSITIVE, "growth.alpha": Range(0, 10), "growth.stage_fractions": Range(0, 1, lo_open=True),
    "growth.start_layers": POSITIVE, "growth.rewarmup_steps": NON_NEGATIVE, "growth.copy_noise": FRACTION,
    "growth.lr_drop": Range(0, 1, lo_open=True), "growth.depth_lr_exponent": Range(0, 2),
    "checkpoint.every": NON_NEGATIVE, "checkpoint.keep": POSITIVE,
}

# What `--resume` may change: how the run is observed, saved and executed, never what it computes. Every other field
# defines the model, the data and its order, the optimizer or the plan, and must equal the checkpoint's value.
RESUMABLE_CHANGES = frozenset({
    "train.log_every", "train.device", "train.compile", "train.parallel", "train.grad_accum", "data.cache_dir",
    "eval.every", "eval.batches", "eval.sample_tokens", "eval.primitives_every", "eval.primitives_n",
    "eval.primitives_shots", "eval.primitives_tasks", "checkpoint.every", "checkpoint.keep", "log.tensorboard",
})


def defining_differences(stored: Config, new: Config) -> list[tuple[str, Any, Any]]:
    """(field, stored value, new value) for every field that defines the run (not in RESUMABLE_CHANGES) and differs."""
    new_fields = fields_of(new)
    out = []
    for key, (obj, _) in fields_of(stored).items():
        if key in RESUMABLE_CHANGES:
            continue
        name = key.split(".", 1)[1]
        old, value = getattr(obj, name), getattr(new_fields[key][0], name)
        if old != value:
            out.append((key, old, value))
    return out


def check_resume(stored: Config, new: Config) -> None:
    """Refuse, with one line naming the field, a resumed config that differs from its checkpoint's in a field that
    defines the run. train.steps included: the LR schedule and the growth plan are laid out over it, so a run cannot
    be lengthened (or shortened) in place; train a new run instead."""
    for key, old, value in defining_differences(stored, new)[:1]:
        why = ("its LR schedule and growth plan are laid out over it; start a new run to train longer"
               if key == "train.steps" else "it defines the model, the data order or the plan")
        raise UserError(f"{key}: the run was trained with {old!r}; --resume cannot change it to {value!r} ({why})")


# The fields that change what one training step costs at a given depth: arms that differ in one of them (another
# optimizer, width or batch) are timed separately; arms that differ only in LR, seed or plan share one table.
COST_FIELDS = ("model.d_model", "model.n_heads", "model.n_kv_heads", "model.d_ff", "model.vocab_size",
               "model.tie_embeddings", "model.canon", "model.canon_kernel", "train.batch_size", "train.grad_accum",
               "train.seq_len", "train.dtype", "train.compile", "train.device", "train.parallel", "optim.name")


def cost_key(cfg: Config) -> tuple[str, ...]:
    fields = fields_of(cfg)
    return tuple(repr(getattr(fields[k][0], k.split(".", 1)[1])) for k in COST_FIELDS)


def optimizer_state_policy(g: GrowthConfig) -> str:
    """The optimizer-state policy at growth. `auto` copies the source's state only when the new layers are copies
    of their source (init copy): a fresh random layer, or one whose output projections were zeroed (identity), is
    not the parameter whose gradients the source's moments describe, so it starts with fresh state (reset-new)."""
    if g.optimizer_state != "auto":
        return g.optimizer_state
    return "copy" if g.init == "copy" else "reset-new"


def choices(key: str) -> tuple[str, ...] | None:
    """The allowed values of a field that has a fixed set (growth.method's come from the operator registry)."""
    return operators.methods() if key == "growth.method" else CHOICES.get(key)


def fields_of(cfg: Config) -> dict[str, tuple[Any, Any]]:
    """Every leaf field as {'section.name': (section object, type)}."""
    out = {}
    for sec in dataclasses.fields(cfg):
        obj = getattr(cfg, sec.name)
        hints = typing.get_type_hints(type(obj))
        for f in dataclasses.fields(obj):
            out[f"{sec.name}.{f.name}"] = (obj, hints[f.name])
    return out


def _coerce(key: str, value: Any, typ: Any) -> Any:
    """Convert a YAML or command-line value to the field's type, or raise a UserError naming the field."""
    if isinstance(value, str) and not (typ is str or _optional_of(typ) is str):
        with contextlib.suppress(yaml.YAMLError):
            value = yaml.safe_load(value) if value.strip() else None
    inner = _optional_of(typ)
    if inner is not None and typing.get_origin(inner) is list:
        return _coerce_list(key, value)
    if inner is not None:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        typ = inner
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            raise ValueError
        if typ is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if typ is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if typ is str:
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError, OverflowError):
        pass
    else:
        raise AssertionError(f"unsupported field type {typ} for {key}")
    raise UserError(f"{key}: expected {typ.__name__}, got {value!r}")


def _coerce_list(key: str, value: Any) -> list[float] | None:
    """A list of numbers from YAML ([0.2, 0.8]) or a flag ('0.2,0.8' or '[0.2, 0.8]'); None/null clears it."""
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
        return None
    if isinstance(value, str):
        value = value.strip().removeprefix("[").removesuffix("]").split(",")
    if isinstance(value, (int, float)):
        value = [value]
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{key}: expected a list of numbers, got {value!r}") from None


def _optional_of(typ: Any) -> Any:
    if isinstance(typ, types.UnionType) and type(None) in typ.__args__:
        return next(a for a in typ.__args__ if a is not type(None))
    return None


ALIASES = {"init.from": "init.checkpoint"}  # `from` is a Python keyword: the field is init.checkpoint


def apply(cfg: Config, values: dict[str, Any]) -> Config:
    """Set dotted fields ('train.steps': 500) on cfg; unknown names raise a UserError."""
    known = fields_of(cfg)
    for key, value in values.items():
        key = ALIASES.get(key, key)
        if key not in known:
            sections = [f.name for f in dataclasses.fields(cfg)]
            hint = "" if key.split(".")[0] in sections else f" (sections: {', '.join(sections)})"
            raise UserError(f"unknown config field '{key}'{hint}")
        obj, typ = known[key]
        setattr(obj, key.split(".", 1)[1], _coerce(key, value, typ))
    return cfg


def flatten(tree: dict[str, Any], where: str) -> dict[str, Any]:
    """{'train': {'steps': 5}} -> {'train.steps': 5}; the tree must be two levels deep."""
    if not isinstance(tree, dict):
        raise UserError(f"{where}: expected a mapping of sections, got {type(tree).__name__}")
    flat = {}
    for section, body in tree.items():
        if not isinstance(body, dict):
            raise UserError(f"{where}: section '{section}' must be a mapping of fields")
        for name, value in body.items():
            flat[f"{section}.{name}"] = value
    return flat


def resolve_recipe(path: str | Path) -> Path:
    """A recipe is a YAML path, or the name of a bundled recipe ('default', 'cpu-small')."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    bundled = RECIPES_DIR / f"{path}.yaml"
    if bundled.is_file():
        return bundled
    raise UserError(f"config file not found: {path}")


# Fields added after runs were first saved, with the value that reproduces the older behaviour: a saved (fully
# resolved) config that lacks one gets this value, not today's default, so an older run resumes as it ran.
SAVED_BEFORE = {"data.tokenizer_sample_mb": None}


def _saved(flat: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in SAVED_BEFORE.items() if k not in flat}, **flat}


def load(path: str | Path | None = None, overrides: dict[str, Any] | None = None, saved: bool = False) -> Config:
    """Defaults, then the recipe (YAML), then dotted overrides; validated. saved=True: the YAML is a run's own
    config.yaml (fields it lacks are older than it: SAVED_BEFORE)."""
    cfg = Config()
    if path is not None:
        p = resolve_recipe(path)
        try:
            tree = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
        except UnicodeDecodeError:
            raise UserError(f"{p}: not UTF-8 text") from None
        except OSError as e:
            raise UserError(f"{p}: cannot read ({e.strerror})") from None
        try:
            flat = flatten(tree, str(p))
            apply(cfg, _saved(flat) if saved else flat)
        except UserError as e:
            raise UserError(f"{p}: {e}") from None
    apply(cfg, overrides or {})
    if not saved:
        resolve_init(cfg, {ALIASES.get(k, k) for k in overrides or {}})
    validate(cfg)
    return cfg


def resolve_init(cfg: Config, explicit: set[str] = frozenset()) -> None:
    """With init.from DIR, the model's shape and tokenizer come from the checkpoint: every model.* field but
    n_layers (the target depth) and data.tokenizer are set from it (a recipe's values yield), and a value given
    explicitly (`explicit`: the flags) that differs is refused. The plan starts at the checkpoint's depth d0: a
    fixed-depth run stays at d0, a growth method grows from d0 (growth.start_layers = d0) to model.n_layers."""
    if not cfg.init.checkpoint:
        return
    from stackwise import llama_config

    folder = Path(cfg.init.checkpoint).expanduser()
    fields = llama_config.model_fields(llama_config.read_config(folder), f"init.from: {folder}")
    d0 = fields.pop("n_layers")
    for name, value in fields.items():
        ours = getattr(cfg.model, name)
        if f"model.{name}" in explicit and ours != value:
            raise UserError(f"model.{name}: {ours!r} conflicts with the checkpoint's {value!r} (init.from takes the "
                            "model's shape from the checkpoint; leave it unset)")
        setattr(cfg.model, name, value)
    tokenizer = str(folder / "tokenizer.json")
    if "data.tokenizer" in explicit and cfg.data.tokenizer != tokenizer:
        raise UserError(f"data.tokenizer: {cfg.data.tokenizer} conflicts with init.from (the checkpoint's own "
                        f"tokenizer, {tokenizer}, is used)")
    cfg.data.tokenizer = tokenizer
    g = cfg.growth
    if g.method == "none":
        if "model.n_layers" in explicit and cfg.model.n_layers != d0:
            raise UserError(f"model.n_layers: {cfg.model.n_layers} differs from the checkpoint's {d0} layers and "
                            "growth.method is none; choose a growth method to grow it")
        cfg.model.n_layers = d0
        return
    if cfg.model.n_layers <= d0:
        raise UserError(f"model.n_layers: {cfg.model.n_layers} is not deeper than the checkpoint's {d0} layers "
                        f"(growth.method {g.method} grows it to model.n_layers)")
    if g.start_layers not in (None, d0):
        raise UserError(f"growth.start_layers: {g.start_layers} conflicts with the checkpoint's depth {d0}")
    g.start_layers = d0


def from_dict(tree: dict[str, Any]) -> Config:
    """A saved config (a run's or a checkpoint's config.yaml, parsed)."""
    cfg = apply(Config(), _saved(flatten(tree, "config")))
    validate(cfg)
    return cfg


def write_atomic(path: Path, text: str) -> None:
    """Replace a file's text in one step (a temporary file, fsynced, then renamed): a reader sees the old text or
    the new, never a torn one."""
    tmp = path.with_name(f".tmp-{path.name}")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save(cfg: Config, path: Path) -> None:
    write_atomic(path, cfg.to_yaml())


def _bounds_error(key: str, value: Any) -> str | None:
    values = value if isinstance(value, list) else [value]
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
        return f"{key}: must be a finite number, got {value!r}"
    rng = RANGES.get(key)
    if rng is not None and any(v not in rng for v in values):
        return f"{key}: must be {rng}, got {value!r}"
    return None


def parse_mix(mix: str, key: str = "data.mix") -> list[tuple[str, float]]:
    """[(source spec, weight)] of a mix 'SRC:W,SRC:W' (weights positive, normalized to sum to 1)."""
    parts = []
    for item in mix.split(","):
        spec, sep, weight = item.strip().rpartition(":")
        try:
            w = float(weight)
        except ValueError:
            w = float("nan")
        if not sep or not spec or not 0 < w < float("inf"):
            raise UserError(f"{key}: '{item.strip()}' is not SOURCE:WEIGHT with a positive weight "
                            "(e.g. bundled:0.8,synthetic:0.2)")
        if spec.startswith("mix:"):
            raise UserError(f"{key}: a mix cannot hold another mix ({item.strip()})")
        parts.append((spec, w))
    total = sum(w for _, w in parts)
    return [(spec, w / total) for spec, w in parts]


def parse_stages(stages: str, key: str = "data.stages") -> list[tuple[int, str]]:
    """[(first step, mix)] of 'STEP=MIX;STEP=MIX;...': each stage trains on its mix from its first step until the
    next stage's; the first starts at step 0 and the steps increase."""
    parts = []
    for item in stages.split(";"):
        start, sep, mix = item.strip().partition("=")
        if not sep or not start.strip().isdigit() or not mix.strip():
            raise UserError(f"{key}: '{item.strip()}' is not STEP=MIX (e.g. 0=bundled:0.7,synthetic:0.3;"
                            "2000=bundled:1)")
        parse_mix(mix.strip(), f"{key} (stage from step {int(start)})")
        parts.append((int(start), mix.strip()))
    starts = [s for s, _ in parts]
    if starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])):
        raise UserError(f"{key}: the stages must start at step 0 and in increasing order (got steps "
                        f"{', '.join(map(str, starts))})")
    return parts


def validate(cfg: Config) -> None:
    """Raise a one-line UserError naming the first invalid field."""
    m, t = cfg.model, cfg.train

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise UserError(msg)

    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        need(value in allowed, f"{key}: unknown value '{value}' (choose from {', '.join(allowed)})")
    for key, (obj, _) in fields_of(cfg).items():
        value = getattr(obj, key.split(".", 1)[1])
        error = None if value is None else _bounds_error(key, value)
        if error:
            raise UserError(error)
    need(m.d_model % m.n_heads == 0, f"model.n_heads: {m.n_heads} does not divide model.d_model {m.d_model}")
    need((m.d_model // m.n_heads) % 2 == 0, "model.n_heads: head dimension d_model/n_heads must be even for RoPE")
    kv = m.n_kv_heads or m.n_heads
    need(m.n_heads % kv == 0, f"model.n_kv_heads: {kv} does not divide model.n_heads {m.n_heads}")
    need(set(m.canon) <= set(CANON_SITES) and len(set(m.canon)) == len(m.canon),
         f"model.canon: '{m.canon}' is not a set of Canon sites from '{CANON_SITES}' (A: before attention, B: on the "
         "query/key/value projections, C: before the MLP, D: on the MLP's gate/up projections; '' for none)")
    need(t.batch_size % t.grad_accum == 0,
         f"train.grad_accum: {t.grad_accum} does not divide train.batch_size {t.batch_size}")
    need(not cfg.growth.freeze_old or cfg.growth.method != "none",
         "growth.freeze_old: freezes the layers a model had before growing; it needs a growth method")
    need(not cfg.growth.freeze_old or t.parallel != "fsdp",
         "growth.freeze_old: frozen layers under FSDP are not supported (use train.parallel none or ddp)")
    need(t.parallel != "fsdp" or cfg.optim.name != "sophia", "optim.name: sophia is not supported on FSDP shards "
         "(its Hessian estimate is untested there); use train.parallel ddp or none, or adamw with fsdp")
    need(t.parallel != "fsdp" or cfg.optim.name in ("adamw", "sophia"),
         f"optim.name: {cfg.optim.name} does not run on FSDP shards (its updates need whole matrices); "
         "use adamw with train.parallel fsdp")
    for rule in ("split_digits", "split_names"):
        need(not (getattr(cfg.data, rule) and cfg.data.tokenizer), f"data.{rule}: applies to the tokenizer stackwise "
             "trains; a given data.tokenizer keeps its own rules (drop one of the two)")
    if cfg.data.mix is not None:
        parse_mix(cfg.data.mix)
        need(cfg.data.train == "bundled", f"data.train: {cfg.data.train} would be ignored: data.mix is set "
             f"({cfg.data.mix}) and trains instead; put the source in the mix, or pass --data.mix null")
    if cfg.data.stages is not None:
        stages = parse_stages(cfg.data.stages)
        need(cfg.data.mix is None, "data.mix: would be ignored: data.stages is set and gives each stage its own mix; "
             "pass --data.mix null")
        need(cfg.data.train == "bundled", f"data.train: {cfg.data.train} would be ignored: data.stages is set and "
             "trains instead; put the source in a stage's mix")
        need(stages[-1][0] < t.steps, f"data.stages: the stage from step {stages[-1][0]} would never train "
             f"(train.steps is {t.steps})")
    if cfg.eval.primitives_tasks:
        from stackwise.evals.primitives import TASKS

        bad = [x for x in cfg.eval.primitives_tasks.split(",") if x.strip() not in TASKS]
        need(not bad, f"eval.primitives_tasks: unknown task(s) {', '.join(bad)}")
    g = cfg.growth
    depths = operators.stage_depths(g.method, m.n_layers, g.block_size, g.start_layers)  # names a bad field
    if g.stage_fractions is not None:
        need(len(g.stage_fractions) == len(depths),
             f"growth.stage_fractions: {len(g.stage_fractions)} values for {len(depths)} stages")
        need(abs(sum(g.stage_fractions) - 1) <= 1e-6, "growth.stage_fractions: must be positive and sum to 1")
    bounds = operators.stage_bounds(t.steps, len(depths), g.alpha, g.stage_fractions)
    need(all(b > a for a, b in zip(bounds, bounds[1:])),
         f"train.steps: {t.steps} steps leave an empty stage among {len(depths)} stages; use more steps")
