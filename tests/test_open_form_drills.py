"""benchmarks/open_form_drills.py: drills whose questions come in open-ended forms, the primitives' kept out."""

import random
import re

import benchmark_module
from stackwise.data import synthetic

open_form_drills = benchmark_module.load("open_form_drills")


def test_forms_are_open_ended_and_keep_the_name_its_own_word():
    rng = random.Random(0)
    forms = [open_form_drills.open_question_form(rng) for _ in range(2000)]
    assert len(set(forms)) > 1900  # too many to learn one by one
    for form in forms:
        assert form.count("{n}") == 1 and form.endswith("{v}") and form.count("{v}") == 1
        assert not re.search(r"\{n\}[a-z]", form) and not re.search(r"[a-z]\{n\}", form)
        assert not any(f in form for f in open_form_drills.FORBIDDEN)


def _binding_re(bind):
    return re.escape(bind).replace(re.escape("{n}"), "([a-z])").replace(re.escape("{v}"), r"([a-z]|\d+)")


def test_drills_answer_the_asked_name_and_the_rest_is_the_generator():
    docs = list(open_form_drills.documents(3, 300_000))
    assert docs == list(open_form_drills.documents(3, 300_000))  # seeded
    assert synthetic.question_form is not open_form_drills.open_question_form  # the generator is left as it was
    text = "\n\n".join(docs)
    assert not any(f in text for f in open_form_drills.FORBIDDEN)
    drills = 0
    for doc in docs:
        first = doc.splitlines()[0].strip().split(", ")[0]
        binds = [b for b in synthetic.DRILL_BINDINGS if re.fullmatch(_binding_re(b), first)]
        if doc.startswith((">>>", "Words:")) or "print(" in doc or not binds:  # not a drill
            continue
        drills += 1
        for problem in doc.split("\n\n"):
            env, question = {}, []
            for line in problem.splitlines():
                parts = [re.fullmatch(_binding_re(binds[0]), p.strip()) for p in line.split(", ")]
                if all(parts) and not question:
                    for m in parts:
                        env[m[1]] = int(m[2]) if m[2].isdigit() else env[m[2]]
                else:
                    question.append(line)
            asked = re.findall(r"(?<![a-z])[a-z](?![a-z])", " ".join(question))
            assert len(asked) == 1 and int(re.findall(r"\d+", question[-1])[-1]) == env[asked[0]]
    assert drills > 20


def test_scoring_asks_the_last_problem_among_its_bound_numbers():
    rng = random.Random(5)
    for _ in range(200):
        prompt, answer, candidates = open_form_drills.drill_query(rng)
        assert answer in candidates and len(set(candidates)) == len(candidates) >= 2
        assert not prompt.endswith(" ") and re.fullmatch(r" ?\d+", answer)

    class Oracle:  # knows the answer: reads it back from the same fresh drill
        def __init__(self):
            self.rng = random.Random("open-form-drills-score|7")

        def loglik(self, prompt, candidates):
            _, answer, _ = open_form_drills.drill_query(self.rng)
            return [float(c == answer) for c in candidates]

    right, chance = open_form_drills.score(Oracle(), n=30, seed=7)
    assert right == 30 and 30 / 6 <= chance <= 30 / 2
