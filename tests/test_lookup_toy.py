"""benchmarks/lookup_toy.py: its problems answer every asked name with the value it holds, aliases marked."""

import math
import random
import re

import pytest

import benchmark_module

lookup_toy = benchmark_module.load("lookup_toy")


@pytest.mark.parametrize("form", ["short", "quiz"])
@pytest.mark.parametrize("aliases", [False, True])
def test_each_answer_offset_starts_the_value_of_the_asked_name(form, aliases):
    kinds = set()
    for seed in range(50):
        text, answers, alias = lookup_toy.problem(random.Random(seed), form, gap=2 if form == "short" else 0,
                                                  aliases=aliases)
        env = {}
        for n, v in re.findall(r"^([a-z])=([a-z]|\d+)$", text, re.M):
            env[n] = int(v) if v.isdigit() else env[v]
        asked = re.findall(r"^([a-z])\?--" if form == "short" else r"What is the value of ([a-z])\?", text, re.M)
        assert len(asked) == len(answers) == len(alias) == len(env)  # every name asked once
        for name, offset, is_alias in zip(asked, answers, alias):
            assert re.match(r"\d+", text[offset:])[0] == str(env[name])
            assert is_alias == (not re.search(rf"^{name}=\d+$", text, re.M))
            kinds.add(is_alias)
    assert kinds == ({False, True} if aliases else {False})


def test_guessing_is_the_share_of_bound_numbers_that_share_the_answers_first_digit():
    text = "a=123\nb=150\nc=970\nd=a\na?123\nd?123\nc?970\n"
    answers = [text.index("a?") + 2, text.index("d?") + 2, text.index("c?") + 2]
    # numbers 123, 150, 970: the first digit 1 is two of three, 9 one of three; the alias d's answer starts with 1
    assert lookup_toy.guessing([(text, answers, [False, True, False])], seq=256) == pytest.approx((0.5, 2 / 3))
    numbers, aliases = lookup_toy.guessing([(text, answers, [False, True, False])], seq=answers[1])
    assert numbers == pytest.approx(2 / 3) and math.isnan(aliases)  # answers past the window are not counted
