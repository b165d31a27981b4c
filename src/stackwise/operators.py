"""Growth methods, one definition each: a source map and a depth schedule, in a registry everything else reads.

An operator maps the current depth d and block size b to a *source map*: for each layer of the grown model, the
index of the old layer it starts from (DESIGN.md §1). Its depth schedule lists the depth of every stage. Adding a
method is one decorated function:

    @operator("mine")                      # stage depths b, 2b, ..., n_layers (the default schedule)
    def mine(depth: int, b: int) -> list[int]:
        "One line for --help, `stackwise plan` and the docs."
        return [*range(depth), *range(depth - b, depth)]

and it is then a value of `growth.method` (validation, `--help`, `stackwise plan`, compare and the docs' method table
all read this registry). A file of such definitions outside the package is loaded with `--plugin FILE.py` (see
docs/growth.md). `growth.method: none` (the fixed-depth baseline) is the one method without an operator.

This module imports nothing heavier than the standard library: the config validates against it without torch.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from stackwise.errors import UserError

BASELINE = "none"
Schedule = Callable[[int, int, "int | None"], list[int]]  # (n_layers, block_size, start_layers) -> stage depths


def by_blocks(n_layers: int, b: int, start: int | None) -> list[int]:
    """Stage depths s, s + b, ..., n_layers (s = growth.start_layers, default b): one block per growth event.

    (s is a checkpoint's depth when growing one: init.from.)"""
    s = start or b
    if (n_layers - s) % b or s > n_layers:
        name = "growth.block_size" if start is None else "growth.start_layers"
        raise UserError(f"{name}: {b} does not divide model.n_layers {n_layers}" if start is None else
                        f"{name}: {s} plus blocks of {b} never reaches model.n_layers {n_layers} exactly")
    return list(range(s, n_layers + 1, b))


def doubling(n_layers: int, b: int, start: int | None) -> list[int]:
    """Stage depths s, 2s, 4s, ..., n_layers, from s = growth.start_layers (default: the block size)."""
    s = start or b
    if n_layers % s or (n_layers // s) & (n_layers // s - 1):
        raise UserError(f"growth.start_layers: {s} doubled never reaches model.n_layers {n_layers} exactly")
    depths = [s]
    while depths[-1] < n_layers:
        depths.append(depths[-1] * 2)
    return depths


@dataclass(frozen=True)
class Operator:
    name: str
    source_map: Callable[[int, int], list[int]]
    schedule: Schedule
    summary: str


OPERATORS: dict[str, Operator] = {}


def operator(name: str, schedule: Schedule = by_blocks):
    """Register `fn(depth, b) -> source map` as growth method `name`, with its depth schedule."""
    def register(fn: Callable[[int, int], list[int]]):
        old = OPERATORS.get(name)
        same = old is not None and (old.source_map.__code__.co_filename, old.source_map.__code__.co_firstlineno) == \
            (fn.__code__.co_filename, fn.__code__.co_firstlineno)  # the same file imported twice
        assert name != BASELINE and (old is None or same), f"growth method {name!r} is already defined"
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else name
        OPERATORS[name] = Operator(name, fn, schedule, summary)
        return fn
    return register


def methods() -> tuple[str, ...]:
    """Every value growth.method accepts."""
    return (BASELINE, *OPERATORS)


def stage_depths(method: str, n_layers: int, b: int, start: int | None) -> list[int]:
    if method == BASELINE:
        return [n_layers]
    if method not in OPERATORS:
        raise UserError(f"growth.method: '{method}' is not defined here (choose from {', '.join(methods())}; a "
                        "method from a plugin needs --plugin FILE)")
    return OPERATORS[method].schedule(n_layers, b, start)


def stage_bounds(total_steps: int, k: int, alpha: float, fractions: list[float] | None) -> list[int]:
    """PROP-α: cumulative-floor boundaries B_0 = 0 < … < B_k = T, stage i's share proportional to i^α (or to the
    explicit fractions), so rounding never accumulates and the last stage ends exactly at T. Computed in exact
    rational arithmetic on the weights as written (0.1 is 1/10, not the nearest binary float), so a boundary is
    never floored one step short by float sums (e.g. fractions [0.1, 0.7, 0.2] of T = 10 give 0, 1, 8, 10)."""
    weights = [Fraction(str(w)) for w in (fractions or [i ** alpha for i in range(1, k + 1)])]
    total = sum(weights)
    out, acc = [0], Fraction(0)
    for w in weights[:-1]:
        acc += w
        out.append(math.floor(total_steps * acc / total))
    return [*out, total_steps]


def load_plugin(path: str) -> None:
    """Import a Python file that registers operators (`--plugin`). Only the command line names plugins: a config
    file or checkpoint never makes stackwise import code."""
    file = Path(path).expanduser()
    if not file.is_file() or file.suffix != ".py":
        raise UserError(f"--plugin: {path} is not a Python file")
    name = f"stackwise_plugin_{abs(hash(str(file.resolve())))}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


@operator("midas")
def midas(depth: int, b: int) -> list[int]:
    """MIDAS: duplicate the middle block j = ceil(n/2) (the lower middle when n is even); the copy goes right after."""
    n = depth // b
    start = (math.ceil(n / 2) - 1) * b
    return [*range(start + b), *range(start, start + b), *range(start + b, depth)]


@operator("lidas")
def lidas(depth: int, b: int) -> list[int]:
    """LIDAS: copy the b layers centred on the middle layer (lo = ceil(d/2) - ceil(b/2)); the copy goes after them."""
    lo = math.ceil(depth / 2) - math.ceil(b / 2)
    return [*range(lo + b), *range(lo, lo + b), *range(lo + b, depth)]


@operator("gradstack")
def gradstack(depth: int, b: int) -> list[int]:
    """GradStack: copy the last b layers on top."""
    return [*range(depth), *range(depth - b, depth)]


@operator("progressive", schedule=doubling)
def progressive(depth: int, b: int) -> list[int]:
    """Progressive stacking: stack the whole model on itself, f ∘ f (depth doubles; b is unused)."""
    return [*range(depth), *range(depth)]


BUILTIN = tuple(OPERATORS)


def table(names: tuple[str, ...] = BUILTIN) -> str:
    """The methods as a markdown table (docs/growth.md holds this very text for the built-in ones; a test checks)."""
    rows = ["| `growth.method` | what a growth event does | stage depths | example (b = 4) |", "|---|---|---|---|",
            f"| `{BASELINE}` | no growth: the fixed-depth baseline, the same code path | n_layers | |"]
    for op in (OPERATORS[n] for n in names):
        schedule = (op.schedule.__doc__ or "").strip().splitlines()[0].removeprefix("Stage depths ").rstrip(".")
        depths = op.schedule(16, 4, None)
        d = depths[1] if len(depths) > 3 else depths[0]
        src = op.source_map(d, 4)
        rows.append(f"| `{op.name}` | {op.summary} | {schedule} | {d} → {len(src)}: `{' '.join(map(str, src))}` |")
    return "\n".join(rows)
