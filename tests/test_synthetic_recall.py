"""benchmarks/synthetic_recall.py: recall and copy diagnostics read the generator's documents of every version."""

import random
import re

import pytest
import torch

import benchmark_module

synthetic_recall = benchmark_module.load("synthetic_recall")


def test_it_measures_repl_sessions_and_from_a_word_repeats():
    rng = random.Random(0)
    for _ in range(50):
        assert synthetic_recall.repl_session(rng).startswith(">>> ")
        assert "\nFrom " in synthetic_recall.repeat_from(rng)


def test_a_quiz_query_asks_the_last_problems_first_question_among_its_own_numbers():
    rng = random.Random(1)
    for _ in range(50):
        prompt, answer, others = synthetic_recall.quiz_query(rng)
        last = prompt.rsplit("\n\n", 1)[-1]
        assert prompt.endswith("\nAnswer:") and answer.isdigit() and answer not in others
        assert last.count("Question:") == 1
        assert re.fullmatch(r"([a-z]=(\d+|[a-z])(\n|, ))+Question:\n[^\n]+\nAnswer:", last), last
        bound = re.findall(r"=(\d+)\b", last)  # the numbers bound in the last problem
        assert answer in bound and others and set(others) == set(bound) - {answer}


def test_a_quiz_query_of_a_problem_asking_several_names_stops_at_its_first_question(monkeypatch):
    text = ("k=21\nQuestion:\nWhat is k?\nAnswer: 21\n\n"
            "b=30\nc=b\nd=45\nQuestion:\nGive c.\nAnswer: 30\nQuestion:\nGive d.\nAnswer: 45")
    monkeypatch.setattr(synthetic_recall, "quiz", lambda rng: text)
    prompt, answer, others = synthetic_recall.quiz_query(random.Random(0))
    assert prompt == text[:text.index("Give c.") + len("Give c.\nAnswer:")] and answer == "30" and others == ["45"]


def test_recall_and_token_losses_run_on_a_model(tiny_cfg):
    from stackwise import data as data_mod
    from stackwise.evals.scoring import StackwiseLM
    from stackwise.model import Transformer
    cfg = tiny_cfg()
    tok, _ = data_mod.tokenizer_for(cfg, log=lambda *_: None)
    torch.manual_seed(0)
    model = Transformer(cfg.model).eval()
    got = synthetic_recall.recall(StackwiseLM(model, tok, context=cfg.train.seq_len), n=6, seed=0)
    assert got["all"]["n"] == 6 and 0 < got["all"]["chance"] < 1 and 0 <= got["all"]["accuracy"] <= 1
    # every session ends in one of the two look-up forms, counted apart
    assert got["echo"]["n"] + got["print"]["n"] == 6
    assert got["echo"]["accuracy"] * got["echo"]["n"] + got["print"]["accuracy"] * got["print"]["n"] == \
        pytest.approx(got["all"]["accuracy"] * 6)
    quizzes = synthetic_recall.quiz_recall(StackwiseLM(model, tok, context=cfg.train.seq_len), n=4, seed=0)
    quizzes = quizzes["all"]
    assert quizzes["n"] == 4 and 0 < quizzes["chance"] < 1 and 0 <= quizzes["accuracy"] <= 1
    losses = synthetic_recall.token_diagnostics(model, tok, n=3, seed=0)
    assert set(losses) == {"looked_up", "assigned", "run", "list"} and all(v > 0 for v in losses.values())


def test_a_quiz_question_is_told_apart_as_asking_a_number_or_an_alias():
    assert synthetic_recall.quiz_asks_a_number("k=21\na=986\nQuestion:\nWhat is the value of a?\nAnswer:")
    assert not synthetic_recall.quiz_asks_a_number("k=21, a=k\nQuestion:\nWhat does a hold?\nAnswer:")
    # only the last problem counts, whatever earlier ones bound
    earlier = "a=k\nQuestion:\nGive a.\nAnswer: 5\n\n"
    assert synthetic_recall.quiz_asks_a_number(earlier + "a=55\nQuestion:\nGive a.\nAnswer:")
    rng = random.Random(3)
    kinds = {synthetic_recall.quiz_asks_a_number(synthetic_recall.quiz_query(rng)[0]) for _ in range(50)}
    assert kinds == {True, False}  # fresh quizzes ask both
