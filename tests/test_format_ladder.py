"""benchmarks/format_ladder.py: look-ups in a ladder of surface forms, from the generator's REPL to var0_basic."""

import random
import re

import benchmark_module
from stackwise.evals import primitives

format_ladder = benchmark_module.load("format_ladder")


def test_each_rung_asks_a_bound_name_and_answers_with_its_value():
    rng = random.Random(0)
    for rung, (bind, _, prefix, values) in format_ladder.RUNGS.items():
        for _ in range(50):
            prompt, answer, candidates = format_ladder.problem(rng, rung)
            bound = dict(re.findall(format_ladder.re_binding(bind), prompt))
            asked = format_ladder.asked_name(rung, prompt)
            assert answer == f"{prefix}{bound[asked]}" and sorted(candidates) == sorted(f"{prefix}{v}" for v in
                                                                                      bound.values())
            assert len(bound) == 5 and all(int(v) in values for v in bound.values())


def test_the_last_rung_is_the_primitive_itself():
    rng = random.Random(1)
    prompt, answer, candidates = format_ladder.problem(rng, "var0_basic")
    example = primitives.variable_assignment(random.Random(1), 0, "basic")
    shape = r"Fill in blank:\n( [a-z]=\d+\n){5} [a-z]=__ ->"
    assert re.fullmatch(shape, prompt) and re.fullmatch(shape, example.prompt)
    assert re.fullmatch(r" \d+", answer) and len(candidates) == len(example.candidates) == 5


class _Oracle:
    """A model that knows the answer: the highest log-likelihood goes to the asked name's value."""

    def __init__(self, rung):
        self.rung = rung

    def loglik(self, prompt, candidates):
        last = prompt.split("\n\n")[-1]
        bind, _, prefix, _ = format_ladder.RUNGS[self.rung]
        value = dict(re.findall(format_ladder.re_binding(bind), last))[format_ladder.asked_name(self.rung, last)]
        return [float(c == f"{prefix}{value}") for c in candidates]


def test_accuracy_scores_the_asked_value_and_shots_are_solved_problems():
    for rung in format_ladder.RUNGS:
        acc, (lo, hi) = format_ladder.accuracy(_Oracle(rung), rung, n=20, shots=2, seed=0)
        assert acc == 1.0 and lo > 0.8
