"""The reasoning-rich generator (seeded, never the evaluation set) and weighted mixes of sources (data.mix)."""

from __future__ import annotations

import collections
import itertools
import json
import random
import re

import numpy as np
import pytest

from stackwise import config as config_mod
from stackwise import data as data_mod
from stackwise.data import sources, synthetic
from stackwise.errors import UserError
from stackwise.evals import primitives


def _docs(spec: str, split: str = "train", n: int = 3000) -> list[str]:
    return list(itertools.islice(sources.documents(spec, split), n))


def _kind(doc: str) -> str:
    """Which of the generator's kinds a document is."""
    if doc.startswith("Words:"):
        return "repeat"
    if "Question:\n" in doc:
        return "quiz"
    if doc.startswith(">>>") or "print(" in doc:
        return "program"
    if _drill_forms(doc) is not None:
        return "drill"
    return "story" if doc.split()[0] in synthetic.NAMES else "arithmetic"


def test_the_generator_is_seeded():
    assert _docs("synthetic", n=200) == _docs("synthetic:0", n=200) == _docs("synthetic:0:16", n=200)
    assert _docs("synthetic:1", n=200) != _docs("synthetic", n=200)
    assert _docs("synthetic", "val", n=200) != _docs("synthetic", n=200)  # the validation split draws its own
    docs = _docs("synthetic", n=4000)
    # documents per kind follow the weights (program 10, arithmetic 1, repeat 34, story 1, drill 1, quiz 12)
    counts = {kind: 0 for kind in ("program", "arithmetic", "repeat", "story", "drill", "quiz")}
    for d in docs:
        counts[_kind(d)] += 1
    for kind, weight in zip(counts, synthetic.WEIGHTS):
        assert counts[kind] / len(docs) == pytest.approx(weight / sum(synthetic.WEIGHTS), abs=0.03), kind
    # repeats: the list from a named word to its end, or a run of it and the word that follows the run
    forms = []
    for d in docs:
        if m := re.fullmatch(r"Words: ([a-z ]+)\.\nFrom ([a-z]+) on: ([a-z ]+)\.", d):
            words = m[1].split()
            assert m[3].split() == words[words.index(m[2]):]
            forms.append("from")
        elif (m := re.fullmatch(r"Words: ([a-z ]+)\.\n(.+)\.", d, re.S)) and (after := _next_form(m[2])):
            words, (run, nxt) = m[1].split(), after
            start = words.index(run[0])
            assert 2 <= len(run) <= 5 and words[start:start + len(run) + 1] == [*run, nxt]
            forms.append("after")
        else:
            assert not d.startswith("Words:"), d
    assert forms.count("from") / len(forms) == pytest.approx(0.85, abs=0.03)  # 17 in 20 copy the list to its end
    # of the text, quizzes (most look-ups, in one frame, as version 3's REPL sessions were: 46% of its text), REPL
    # sessions and lists copied to their end (the induction head's data: version 3 39%, versions 4 and 6, whose
    # models formed none, about 20%)
    text = sum(len(d) + 1 for d in docs)
    repl = sum(len(d) + 1 for d in docs if d.startswith(">>>")) / text
    copied = sum(len(d) + 1 for d in docs if re.match(r"Words: .*\.\nFrom ", d)) / text
    quizzes = sum(len(d) + 1 for d in docs if _kind(d) == "quiz") / text
    assert repl == pytest.approx(0.15, abs=0.02) and copied == pytest.approx(0.39, abs=0.02), (repl, copied)
    assert quizzes == pytest.approx(0.34, abs=0.02)
    total = sum(len(d) + 1 for d in sources.documents("synthetic:3:0.5", "train"))
    assert 0.5e6 <= total < 0.5e6 + 2000 and sources.size_bytes("synthetic:3:0.5", "train") == 500_000


def test_programs_print_the_values_their_names_hold():
    rng = random.Random(5)
    looked_up, layouts = set(), {"repl": 0, "script": 0}
    for _ in range(600):
        lines = synthetic.program(rng).splitlines()
        layouts["repl" if lines[0].startswith(">>>") else "script"] += 1
        env: dict[str, int] = {}
        for line, nxt in zip(lines, [*lines[1:], ""]):
            if m := re.fullmatch(r"(?:>>> )?([a-z]) ?= ?(.+)", line):
                env[m[1]] = eval(m[2], {}, dict(env))  # noqa: S307 (our own generated arithmetic)
            elif m := re.fullmatch(r">>> print\(([a-z])\)|>>> ([a-z])", line):
                assert nxt == str(env[m[1] or m[2]])
                looked_up.add("echo" if line.startswith(">>> print(") else "bare")
            elif m := re.fullmatch(r"print\(([a-z])\)  # (\d+)", line):
                assert int(m[2]) == env[m[1]]
                looked_up.add("script")
            else:
                assert re.fullmatch(r"\d+", line), line  # a REPL's echoed result
    assert looked_up == {"echo", "bare", "script"}  # print(x) and the bare x in a REPL, print(x)  # 457 in a script
    assert layouts["repl"] / sum(layouts.values()) == pytest.approx(0.9, abs=0.03)  # 9 in 10 are REPL sessions


def _alternatives(parts: tuple[str, ...]) -> str:
    return "(" + "|".join(map(re.escape, parts)) + ")"


# a repeat's `After site plug comes real`-style line: (lead)(run)(tail)(marker)(word)
NEXT_RE = re.compile(_alternatives(synthetic.NEXT_LEADS) + r"([a-z]+(?: [a-z]+)+?)"
                     + _alternatives(synthetic.NEXT_TAILS) + _alternatives(synthetic.NEXT_MARKERS) + r"([a-z]+)")
# a drill's question: (lead)(name)(tail)(marker)(value)
QUESTION_RE = re.compile(_alternatives(synthetic.QUESTION_LEADS) + r"([a-z])" + _alternatives(synthetic.QUESTION_TAILS)
                         + _alternatives(synthetic.ANSWER_MARKERS) + r"(\d+)")


def _next_form(line: str) -> tuple[list[str], str] | None:
    """(run, next word) of a repeat's `After site plug comes real`-style line, in any of its forms."""
    m = NEXT_RE.fullmatch(line)
    return (m[2].split(), m[5]) if m else None


def _template_re(template: str, name: str = "([a-z])", value: str = r"(\d+)") -> str:
    """A drill template as a regular expression: `{n}` matches `name`, `{v}` matches `value`."""
    return re.escape(template).replace(re.escape("{n}"), name).replace(re.escape("{v}"), value)


def _drill_forms(doc: str) -> tuple[str, str] | None:
    """The (binding, question) forms a document is written in, or None if it is not a drill."""
    if doc.startswith((">>>", "Words:")):
        return None
    first = doc.splitlines()[0].strip().split(", ")[0]
    binds = [b for b in synthetic.DRILL_BINDINGS if re.fullmatch(_template_re(b), first)]
    if not binds:
        return None
    m = QUESTION_RE.fullmatch(_question(doc.split("\n\n")[-1], binds[0]))
    return (binds[0], m[1] + "{n}" + m[3] + m[4] + "{v}") if m else None


def _question(problem: str, bind: str) -> str:
    """A drill problem's question (the lines after its bindings), without the problem's indent."""
    lines = problem.splitlines()
    bound = [i for i, line in enumerate(lines)
             if all(re.fullmatch(_template_re(bind, value=r"([a-z]|\d+)"), b.strip()) for b in line.split(", "))]
    return "\n".join(line[1:] if problem.startswith(" ") else line for line in lines[max(bound) + 1:])


def test_drills_answer_with_the_value_the_asked_name_holds():
    rng = random.Random(3)
    binds, asks, depths, layouts, indents = set(), set(), set(), set(), set()
    for _ in range(1000):
        doc = synthetic.drill(rng)
        bind, ask = _drill_forms(doc)
        binds.add(bind)
        asks.add(ask)
        bind_re = _template_re(bind, value=r"([a-z]|\d+)")
        for problem in doc.split("\n\n"):  # each problem is self-contained: its own names and values
            question = _question(problem, bind)
            body = problem.splitlines()[:-len(question.splitlines())]
            layouts.add(len(body) == 1)
            indents.add((bind, problem.startswith(" ")))
            env, depth = {}, {}
            for binding in ", ".join(body).split(", "):
                n, v = re.fullmatch(bind_re, binding.strip()).groups()
                env[n], depth[n] = (int(v), 0) if v.isdigit() else (env[v], depth[v] + 1)
            _, n, _, _, v = QUESTION_RE.fullmatch(question).groups()
            assert env[n] == int(v)
            depths |= set(depth.values())
    # every binding form, and question forms from every part (720 forms: most are drawn in 1000 documents)
    assert binds == set(synthetic.DRILL_BINDINGS) and len(asks) > 500
    for parts in (synthetic.QUESTION_LEADS, synthetic.QUESTION_TAILS, synthetic.ANSWER_MARKERS):
        for part in parts:
            assert any(part in a for a in asks), part
    assert depths == {0, 1, 2} and layouts == {True, False}
    assert (synthetic.COMPACT, True) not in indents  # compact bindings are never indented (the basic form's ` x=5`)
    assert ("{n} = {v}", True) in indents and ("{n} = {v}", False) in indents


def _eval_bindings(n: int = 3000) -> set[tuple[str, int]]:
    rng = random.Random(0)
    pairs = set()
    for depth in (0, 1, 2):
        for _ in range(n):
            lines, _, _, _ = primitives.assignment_chain(rng, depth)
            pairs |= {(m[1], int(m[2])) for line in lines if (m := re.fullmatch(r"([a-z])=(\d+)", line))}
    return pairs


def _exam_problems(spec: str):
    """(depth of each bound name, names asked in order, value of each name) of every problem of an exam-like spec,
    each answer checked against the value its name holds."""
    docs = _docs(spec, n=400)
    assert len(docs) > 50 and all(min(len(d.split("\n\n")), 3) == len(d.split("\n\n")) for d in docs)
    for problem in (p for d in docs for p in d.split("\n\n")):
        body, *asks = problem.split("\nQuestion:\n")
        env, depth = {}, {}
        for binding in body.splitlines():  # compact and unindented, values of 21 and up
            n, v = re.fullmatch(r"([a-z])=([a-z]|\d+)", binding).groups()
            env[n], depth[n] = (int(v), 0) if v.isdigit() else (env[v], depth[v] + 1)
            assert not v.isdigit() or int(v) >= 21
        asked = []
        for ask in asks:
            question, answer = ask.split("\nAnswer: ")
            name = re.fullmatch(_template_re(synthetic.CODE_QUESTION), question)[1]
            assert env[name] == int(answer)
            asked.append(name)
        yield depth, asked, env


def test_exams_ask_every_bound_name_in_the_code_forms_question_and_only_when_asked_for():
    depths = set()
    for depth, asked, _ in _exam_problems("synthetic:0:0.3:exam"):
        assert sorted(asked) == sorted(depth)  # every name, once
        depths |= set(depth.values())
    assert depths == {0, 1, 2}
    # outside the default mix (a quiz's problem asks one question, an exam's every name)
    assert all(p.count("Question:") <= 1 for d in _docs("synthetic:0:0.3") for p in d.split("\n\n"))
    assert synthetic.parse("synthetic:0:1:quiz+exam")[2] == ("quiz", "exam")


def test_alias_exams_ask_every_alias_and_one_number_with_no_answer_given_twice_but_a_shared_one():
    depths, asked_depths = collections.Counter(), collections.Counter()
    for depth, asked, env in _exam_problems("synthetic:0:0.3:aliases"):
        aliases = sorted(n for n in depth if depth[n])
        assert 4 <= len(depth) - len(aliases) <= 6 and 3 <= len(aliases) < len(depth) - len(aliases)
        assert sorted(n for n in asked if depth[n]) == aliases  # every alias, once
        assert sum(not depth[n] for n in asked) == 1  # and one number
        # no two asked names hold one value, but an alias and the alias of it (two deep) do
        shared = len(asked) - len({env[n] for n in asked})
        assert shared <= sum(depth[n] == 2 for n in asked)
        depths.update(depth.values())
        asked_depths.update(depth[n] for n in asked)
    assert set(depths) == {0, 1, 2}
    assert asked_depths[0] < 0.25 * sum(asked_depths.values())  # mostly the second hop (an exam asks ~35% aliases)
    # a kind of its own beside exam (outside the default mix: no default problem asks more than one question, above)
    assert synthetic.parse("synthetic:0:1:aliases+exam")[2] == ("exam", "aliases")


def test_small_alias_exams_bind_two_or_three_numbers_and_one_alias_and_ask_every_name(monkeypatch):
    sizes = collections.Counter()
    for depth, asked, env in _exam_problems("synthetic:0:0.2:small_aliases"):
        numbers = [n for n in depth if not depth[n]]
        assert sorted(depth.values()) == [0] * len(numbers) + [1] and len(numbers) in (2, 3)
        assert len({env[n] for n in numbers}) == len(numbers)  # distinct values: the alias's answer names one
        assert sorted(asked) == sorted(depth)  # every name, once
        sizes[len(numbers)] += 1
    assert sizes[2] > 50 and sizes[3] > 50
    assert synthetic.parse("synthetic:0:1:small_aliases+aliases")[2] == ("aliases", "small_aliases")
    # a kind of weight 0 leaves every other spec's text as it was
    before = (_docs("synthetic", n=300), _docs("synthetic:0:0.1:exam+aliases", n=100))
    monkeypatch.setattr(synthetic, "KINDS", synthetic.KINDS[:-1])
    monkeypatch.setattr(synthetic, "WEIGHTS", synthetic.WEIGHTS[:-1])
    assert before == (_docs("synthetic", n=300), _docs("synthetic:0:0.1:exam+aliases", n=100))


def test_quizzes_answer_with_the_value_the_asked_name_holds():
    rng = random.Random(5)
    questions, depths = collections.Counter(), set()
    for _ in range(300):
        for problem in synthetic.quiz(rng).split("\n\n"):
            *body, frame, question, answer = problem.splitlines()
            assert frame == "Question:" and answer.startswith("Answer: "), problem
            env, depth = {}, {}
            for binding in ", ".join(body).split(", "):  # compact and unindented, as the code form writes them
                n, v = re.fullmatch(r"([a-z])=([a-z]|\d+)", binding).groups()
                env[n], depth[n] = (int(v), 0) if v.isdigit() else (env[v], depth[v] + 1)
            form = next(q for q in (synthetic.CODE_QUESTION, *synthetic.QUIZ_QUESTIONS)
                        if re.fullmatch(_template_re(q), question))
            asked = re.fullmatch(_template_re(form), question)[1]
            assert env[asked] == int(answer.removeprefix("Answer: "))
            questions[form] += 1
            depths |= set(depth.values())
    assert set(questions) == {synthetic.CODE_QUESTION, *synthetic.QUIZ_QUESTIONS} and depths == {0, 1, 2}
    # half the quizzes ask the code form's own question (one form per quiz, so counted over problems: roughly)
    assert questions[synthetic.CODE_QUESTION] / sum(questions.values()) == pytest.approx(0.5, abs=0.08)


def test_it_is_not_the_evaluation_set():
    text = "\n\n".join(_docs("synthetic", n=5000) + _docs("synthetic:7", "val", n=2000))
    # the primitives' templates and transfer wordings never appear
    for phrase in ("Fill in blank", "=__ ->", "=_ ->", "___", "mathematical equations", "numerical value",
                   "Program:", "Python program", "Use the program", "resolve the value", primitives.CODE_HEADER[:20]):
        assert phrase not in text, phrase
    # the code form's `Question:` / `What is the value of x?` / `Answer:` lines only in quizzes (no header)
    for doc in text.split("\n\n"):
        assert ("Question:" in doc) == ("Answer:" in doc)
        assert "value of" not in doc or re.search(r"(^|, )[a-z]=(\d+|[a-z])\nQuestion:\nWhat is the value of [a-z]\?\n"
                                                  r"Answer: \d+$", doc, re.M), doc
    # the basic form's indented ` x=5` lines never; compact `x=457` lines only unindented and with values of 21 and up
    assert not re.search(r"(^|\n) +[a-z]=", text)
    compact = [(m[1], int(m[2])) for m in re.finditer(r"\b([a-z])=(\d+)\b", text)]
    assert compact and min(v for _, v in compact) >= 21 and not set(compact) & _eval_bindings()
    assert not re.search(r"(^|\s)[+-]\d[+-]\d=", text)  # nor signed-digit sums like +1+9=
    # no (name, value) binding the primitives can ask about: theirs take values 0-20, ours 21 and up
    ours = {(m[1], int(m[2])) for m in re.finditer(r"\b([a-z]) = (\d+)\b", text)}
    assert ours and min(v for _, v in ours) >= 21
    assert not ours & _eval_bindings()
    # copying uses words of four or more letters, never the three-letter words of copy_words / copy_random
    listed = [w for m in re.finditer(r"Words: ([a-z ]+)\.", text) for w in m[1].split()]
    assert listed and min(len(w) for w in listed) >= 4 and not set(listed) & set(primitives.WORDS3)


def _jsonl(path, docs):
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return str(path)


def test_a_mix_follows_its_weights_and_ends_with_its_first_exhausted_source(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", [f"A{i} " + "a" * (40 + i % 17) for i in range(3000)])
    b = _jsonl(tmp_path / "b.jsonl", [f"B{i} " + "b" * (90 + i % 31) for i in range(3000)])
    mixed = list(sources.documents(f"mix:{a}:3,{b}:1", "train"))
    share_a = sum(len(d) for d in mixed if d[0] == "A") / sum(len(d) for d in mixed)
    assert share_a == pytest.approx(0.75, abs=0.005)
    assert sum(d[0] == "A" for d in mixed) == 3000  # A (75% of the characters) ran out first
    prefix = [d for d in mixed if d[0] == "B"]
    assert prefix == [f"B{i} " + "b" * (90 + i % 31) for i in range(len(prefix))]  # each source keeps its order
    assert list(sources.documents(f"mix:{a}:3,{b}:1", "train")) == mixed  # deterministic
    for n in (100, 1000):  # the share holds all along, not only at the end
        part = mixed[:n]
        assert sum(len(d) for d in part if d[0] == "A") / sum(len(d) for d in part) == pytest.approx(0.75, abs=0.05)
    assert sources.fingerprint(f"mix:{a}:3,{b}:1", "train") != sources.fingerprint(f"mix:{a}:1,{b}:1", "train")


@pytest.mark.parametrize("mix", ["bundled", "bundled:x", "bundled:-1,synthetic:1", "bundled:0.8,:0.2",
                                 "mix:bundled:1", "bundled:inf"])
def test_a_bad_mix_is_one_line(mix):
    with pytest.raises(UserError, match=r"^data\.mix: "):
        config_mod.load("tiny", {"data.mix": mix})


def test_a_train_source_beside_a_mix_is_refused_not_ignored():
    # a config with a mix and a user's --data.train: the mix would silently win
    mix = {"data.mix": "bundled:0.8,synthetic:0.2"}
    with pytest.raises(UserError, match=r"^data\.train: synthetic would be ignored: data\.mix is set .*mix null"):
        config_mod.load("tiny", {**mix, "data.train": "synthetic"})
    cfg = config_mod.load("tiny", {**mix, "data.train": "synthetic", "data.mix": None})
    assert data_mod.train_source(cfg) == "synthetic"


def test_training_data_from_a_mix_is_prepared_and_cached(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("STACKWISE_CACHE", str(tmp_path / "cache"))
    cfg = tiny_cfg(data__mix="synthetic:0:0.05:0.5,synthetic:1:0.2:0.5", data__train="bundled")
    assert data_mod.train_source(cfg).startswith("mix:")
    first = data_mod.prepare(cfg, log=lambda *_: None)
    logged = []
    again = data_mod.prepare(cfg, log=logged.append)
    assert not logged and np.array_equal(first.train, again.train)  # built once, then read from the cache
    text = first.tokenizer.decode(first.train[:4000].tolist())
    assert ">>> " in text or "Words:" in text or " = " in text
    with pytest.raises(UserError, match=r"^data\.train: synthetic:x is not synthetic"):
        data_mod.prepare(tiny_cfg(data__train="synthetic:x"), log=lambda *_: None)
