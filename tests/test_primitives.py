import random
import re

import pytest

from stackwise.evals import primitives as P
from stackwise.evals.scoring import evaluate, evaluate_task, is_correct, wilson


class Scripted:
    """A stand-in for random.Random that returns scripted values, to reproduce the paper's printed examples."""

    def __init__(self, choices=(), samples=(), ranges=()):
        self.choices, self.samples, self.ranges = list(choices), list(samples), list(ranges)

    def choice(self, seq):
        v = self.choices.pop(0)
        assert v in seq
        return v

    def sample(self, population, k):
        v = self.samples.pop(0)
        assert len(v) == k
        return v

    def randrange(self, *a):
        return self.ranges.pop(0)


def test_copying_matches_the_paper_character_for_character():
    words = "pum nyj gdq ocu rzk jbw mlz eny kyx uni".split()
    ex = P.copying(Scripted(choices=list("".join(words)), ranges=[4]))
    assert ex.prompt == "Fill in blank:\n pum nyj gdq ocu rzk jbw mlz eny kyx uni rzk jbw mlz eny kyx ___. ->"
    assert ex.answer == " uni" and len(ex.candidates) == 10 and " uni" in ex.candidates


def test_psm_matches_the_paper_character_for_character():
    ex = P.psm(Scripted(samples=[["k", "j", "l"]], ranges=[1, 8], choices=["-", "+"]))
    assert ex.prompt == "Fill in blank:\n k=1\n j=8\n l=-k+j\n l=_ ->"
    assert ex.answer == " -1+8=7" and ex.expression == "-1+8"
    assert is_correct(P.TASKS["psm_calc"], " -1+8=9", ex.answer, ex.expression)  # calc scores the expression only
    assert not is_correct(P.TASKS["psm"], " -1+8=9", ex.answer, ex.expression)


def test_variable_assignment_wordings():
    rng = lambda: Scripted(samples=[list("omsvx"), [14, 7, 3, 9, 1]], choices=["m"])  # noqa: E731
    basic = P.variable_assignment(rng(), 0, "basic")
    assert basic.prompt == "Fill in blank:\n o=14\n m=7\n s=3\n v=9\n x=1\n m=__ ->" and basic.answer == " 7"
    math = P.variable_assignment(rng(), 0, "math")
    assert math.prompt == ("The following is a set of simple mathematical equations.\no=14\nm=7\ns=3\nv=9\nx=1\n"
                           "What is the numerical value of m?\nAnswer:")
    code = P.variable_assignment(rng(), 0, "code")
    assert code.prompt == ("The following is a very short Python program. Use the program to resolve the value of "
                           "the variable in the question.\nProgram:\no=14\nm=7\ns=3\nv=9\nx=1\n"
                           "Question:\nWhat is the value of m?\nAnswer:")
    assert code.candidates == (" 14", " 7", " 3", " 9", " 1")


def _resolve(lines, query):
    env = {}
    for line in lines:
        name, value = line.split("=")
        env[name] = int(value) if value.lstrip("-").isdigit() else env[value]
    return env[query]


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_assignment_answers_are_correct_by_construction(depth):
    rng = random.Random(1)
    for _ in range(200):
        lines, query, value, values = P.assignment_chain(rng, depth)
        assert len(lines) == 5 * (depth + 1) and len(set(values)) == 5
        assert _resolve(lines, query) == value and value in values
        names = [line.split("=")[0] for line in lines]
        assert len(set(names)) == len(names) and all(len(n) == 1 and n.islower() for n in names)
        if depth:  # the query is an alias at the deepest level
            assert re.fullmatch(r"[a-z]=[a-z]", lines[names.index(query)])


def test_psm_and_arithmetic_answers_are_correct():
    rng = random.Random(2)
    for _ in range(300):
        ex = P.psm(rng)
        assignments = dict(line.strip().split("=") for line in ex.prompt.splitlines()[1:3])
        formula = ex.prompt.splitlines()[3].strip().split("=")[1]
        substituted = "".join(assignments.get(ch, ch) for ch in formula)
        assert ex.expression == substituted and ex.answer == f" {substituted}={eval(substituted)}"
        a = P.arithmetic(rng)
        assert re.fullmatch(r"[+-]\d[+-]\d=", a.prompt) and int(a.answer) == eval(a.prompt[:-1])


def test_kshot_separates_examples_with_a_blank_line():
    prompt, query = P.kshot(P.TASKS["arithmetic"], random.Random(0), 5)
    blocks = prompt.split("\n\n")
    assert len(blocks) == 6 and blocks[-1] == query.prompt
    assert all(re.fullmatch(r"[+-]\d[+-]\d=-?\d+", b) for b in blocks[:-1])


def test_chance_levels():
    assert P.TASKS["copy_random"].chance == 0.1 and P.TASKS["var2_code"].chance == 0.2
    assert P.TASKS["psm"].chance == 0.0
    assert len(P.TASKS) == 2 + 9 + 3


class Oracle:
    """A fake model that reads the answer off the generator (always right) or avoids it (always wrong)."""

    def __init__(self, right: bool):
        self.right, self.answers = right, {}

    def remember(self, task, n, shots, seed):
        rng = random.Random(f"{seed}:{task.name}")
        for _ in range(n):
            prompt, ex = P.kshot(task, rng, shots)
            self.answers[prompt] = ex

    def generate(self, prompt, max_new_tokens, stop):
        return self.answers[prompt].answer if self.right else " nonsense"

    def loglik(self, prompt, continuations):
        answer = self.answers[prompt].answer
        return [float((c == answer) == self.right) for c in continuations]


@pytest.mark.parametrize("right", [True, False])
def test_scoring_on_fake_models(right):
    for name, task in P.TASKS.items():
        lm = Oracle(right)
        lm.remember(task, 20, 3, 7)
        result = evaluate_task(lm, task, 20, 3, 7)
        assert result["generation"]["accuracy"] == (1.0 if right else 0.0), name
        if task.chance:
            assert result["multiple_choice"]["accuracy"] == (1.0 if right else 0.0)
            assert result["multiple_choice"]["chance"] == task.chance
        else:
            assert "multiple_choice" not in result


def test_wilson_interval():
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0


def test_evaluate_on_a_real_tiny_model(tiny_cfg):
    import torch

    from stackwise import data as data_mod
    from stackwise.evals.scoring import MAX_NEW_TOKENS, StackwiseLM
    from stackwise.model import Transformer
    cfg = tiny_cfg()
    tok, _ = data_mod.tokenizer_for(cfg, log=lambda *_: None)
    torch.manual_seed(0)
    lm = StackwiseLM(Transformer(cfg.model), tok, context=cfg.train.seq_len)
    out = evaluate(lm, ["var1_code", "arithmetic"], n=3, shots=2)
    assert out["var1_code"]["multiple_choice"]["n"] == 3 and out["arithmetic"]["generation"]["n"] == 3
    # 2-shot code prompts exceed a 32-token context (the end is kept): each counts once, though generation and
    # multiple choice both read it
    import random

    from stackwise.evals.primitives import TASKS, kshot
    too_long = 0
    for name in ("var1_code", "arithmetic"):
        rng = random.Random(f"0:{name}")
        for _ in range(3):
            prompt, _ = kshot(TASKS[name], rng, 2)
            too_long += len(tok.encode(prompt, add_special_tokens=False).ids) > cfg.train.seq_len - MAX_NEW_TOKENS
    assert lm.truncated == too_long >= 3


def test_stackwise_lm_scores_equal_a_full_forward_per_candidate(tiny_cfg):
    """loglik (prompt cached once, candidates of different lengths in one batch) and greedy generate (decoded with
    the cache) equal a plain full forward pass per candidate / per generated token."""
    import torch
    import torch.nn.functional as F

    from stackwise import data as data_mod
    from stackwise.evals.scoring import StackwiseLM
    from stackwise.model import Transformer
    cfg = tiny_cfg()
    tok, _ = data_mod.tokenizer_for(cfg, log=lambda *_: None)
    torch.manual_seed(0)
    model = Transformer(cfg.model)
    lm = StackwiseLM(model, tok, context=cfg.train.seq_len)
    prompt, conts = "x = 4\ny = x\nprint(y)", [" 4", " 17 and more", " y"]
    ids = lambda text: tok.encode(text, add_special_tokens=False).ids  # noqa: E731
    assert len({len(ids(c)) for c in conts}) > 1
    expected = []
    with torch.no_grad():
        for c in conts:
            seq = ids(prompt) + ids(c)
            logp = F.log_softmax(model(torch.tensor([seq[:-1]]))[0], dim=-1)
            expected.append(sum(float(logp[len(seq) - 2 - j, seq[len(seq) - 1 - j]]) for j in range(len(ids(c)))))
    assert lm.loglik(prompt, conts) == pytest.approx(expected, abs=1e-4)
    greedy = ids(prompt)
    with torch.no_grad():
        for _ in range(6):
            greedy.append(int(model(torch.tensor([greedy]))[0, -1].argmax()))
    assert lm.generate(prompt, max_new_tokens=6, stop="") == tok.decode(greedy[len(ids(prompt)):])
