"""benchmarks/alias_budget.py: alias answers counted by hand, and per step as the windows lay them end to end."""

import random

import pytest

import benchmark_module
from stackwise.data import synthetic

alias_budget = benchmark_module.load("alias_budget")

DOC = """a=12
b=a
c=b
a=7
Question:
What is the value of b?
Answer: 12
Question:
What is the value of a?
Answer: 7
Question:
What is the value of c?
Answer: 12"""


def test_an_alias_answer_is_one_whose_name_was_bound_to_a_name():
    assert alias_budget.alias_answers(DOC) == (2, 3)  # b and c are aliases, a holds a number


def test_generated_alias_exams_ask_every_alias_and_one_number():
    for seed in range(20):
        doc = synthetic.aliases(random.Random(seed))
        aliases, answers = alias_budget.alias_answers(doc)
        problems = doc.count("\n\n") + 1
        assert answers - aliases == problems  # one number asked per problem, the rest aliases
        assert aliases >= 3 * problems


def test_per_step_scales_the_alias_share_of_tokens_to_a_batch():
    # 2 alias answers in 10 + 30 tokens: 2 / 40 per token, x 8 tokens x 5 windows = 2
    assert alias_budget.per_step([DOC, "x=1"], [10, 30], batch=5, seq=8) == pytest.approx(2.0)


@pytest.mark.parametrize("small, low, high", [(False, 100, 200), (True, 60, 140)])
def test_the_toys_count_matches_its_problems_flags(small, low, high):
    rng = random.Random(0)
    problems = [alias_budget.lookup_toy.problem(rng, "short", aliases=True, small=small) for _ in range(50)]
    flags = sum(sum(f) for _, _, f in problems)
    chars = sum(len(t) for t, _, _ in problems)
    assert alias_budget.toy_per_step(50, small) == pytest.approx(flags / chars * 256 * 16)
    assert low < alias_budget.toy_per_step(50, small) < high  # about 150 and 100 per step (docs/results/reasoning)
