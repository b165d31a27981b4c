"""benchmarks/quiz_proxy.py: quiz-only text that asks every bound name, plain or in its easier variants."""

import json
import re

import pytest

import benchmark_module

quiz_proxy = benchmark_module.load("quiz_proxy")


@pytest.mark.parametrize("spaced,single", [(False, False), (True, False), (True, True)])
def test_every_bound_name_is_asked_once_with_the_value_it_holds(tmp_path, spaced, single):
    path = tmp_path / "quizzes.jsonl"
    quiz_proxy.write(path, spaced, single, mb=0.02)
    docs = [json.loads(line)["text"] for line in path.read_text().splitlines()]
    assert 0.02e6 <= sum(len(d) + 1 for d in docs) < 0.02e6 + 2000
    questions = set()
    for problem in (p for d in docs for p in d.split("\n\n")):
        body, *asks = problem.split("\nQuestion:\n")
        env = {}
        for line in body.splitlines():
            n, v = re.fullmatch(r"( ?)([a-z])=([a-z]|\d+)", line).groups()[1:]
            assert line.startswith(" ") == spaced
            env[n] = int(v) if v.isdigit() else env[v]
        asked = []
        for ask in asks:
            question, answer = ask.split("\nAnswer: ")
            name = re.fullmatch(r"\D*?\b([a-z])\b\D*", question)[1]
            asked.append(name)
            assert env[name] == int(answer)
            questions.add(question.replace(name, "{n}", 1) if not single else question)
        assert sorted(asked) == sorted(env)
    if single:
        assert all(q.startswith("What is the value of ") for q in questions)
    else:
        assert len(questions) > 2


def test_the_transfer_walk_ends_at_the_primitives_var0_code_prompt():
    import random

    from stackwise.evals.primitives import TASKS

    def shape(prompt):  # names and values abstracted
        return re.sub(r"\d+", "V", re.sub(r"\b[a-z]\b", "N", prompt))

    primitive = TASKS["var0_code"].make(random.Random(0))
    rng = random.Random(0)
    prompt, answer, values = quiz_proxy.transfer_example(rng, spaced=False, small=True, header=True)
    assert shape(prompt) == shape(primitive.prompt)
    assert answer in values and len(set(values)) == 5 and max(values) <= 20
    spaced, _, values = quiz_proxy.transfer_example(rng, spaced=True, small=False, header=False)
    bindings = spaced.split("\nQuestion:")[0].splitlines()
    assert len(bindings) == 5 and all(re.fullmatch(r" [a-z]=\d+", line) for line in bindings)
    assert min(values) >= 21
