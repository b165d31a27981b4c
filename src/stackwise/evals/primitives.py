"""Reasoning primitives (Saunshi et al. 2024, §5 and App. B), exactly in the paper's formats.

Every generator takes a `random.Random` and returns an `Example(prompt, answer, candidates, expression)`: the prompt
is the text up to where the answer starts, the answer is what should follow it verbatim (with its leading space
where a person would write one). `kshot` joins k solved examples and the query with a blank line between them.

Tasks (name: what is asked; multiple-choice candidates; chance):
  copy_random      10 random three-letter words, then a run of 5 of them: the word that followed the run (10 → 10%)
  copy_words       the same with real three-letter English words
  var{0,1,2}_{basic,math,code}
                   5 numeric assignments; depth 1 adds 5 aliases x=y of numeric variables and asks one of them;
                   depth 2 adds 5 aliases of depth-1 variables and asks one of those (5 distinct values → 20%)
  psm              pre-school math: 'l=-k+j' after k and j are set; answer '-1+8=7' (generation only)
  psm_calc         the same prompts, scoring only the substituted expression '-1+8'
  arithmetic       control: signed single-digit sums, '+1+9=' → '10' (generation only)
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass

LETTERS = string.ascii_lowercase
# Common three-letter English words (lowercase, no proper nouns) for the real-word copying task.
WORDS3 = tuple("""
act add age ago aid aim air all and ant any ape arm art ask ate bad bag ban bar bat bay bed bee beg bet bid big bin
bit box boy bud bug bus but buy cab can cap car cat cow cry cub cup cut dad day den dew did die dig dim dip dog dot
dry due dug ear eat egg ego elf elm end era eye fan far fat fed fee few fig fin fit fix fly fog for fox fry fun fur
gap gas gel gem get gum gun gut guy gym had ham has hat hay hen her hid him hip his hit hog hop hot how hub hug hut
ice ill ink inn jam jar jaw jet job jog joy jug key kid kin kit lab lad lap law lay led leg let lid lie lip lit log
lot low mad man map mat may men met mix mob mom mop mud mug nap net new nod not now nut oak oar odd off oil old one
orb our out owl own pad pan paw pay pea pen pet pie pig pin pit pod pop pot pub pun pup put rag ram ran rat raw ray
red rib rid rig rim rip rob rod rot row rub rug run rye sad sag sat saw say sea see set sew she shy sip sit six ski
sky sly sob son sow soy spa spy sun tab tag tan tap tar tax tea ten tie tin tip toe ton too top toy try tub tug two
urn use van vat vet vow wag war was wax way web wed wet who why wig win wit wok won yak yam yes yet you zip zoo
""".split())

BASIC_HEADER = "Fill in blank:\n"
MATH_HEADER = "The following is a set of simple mathematical equations.\n"
CODE_HEADER = ("The following is a very short Python program. Use the program to resolve the value of the variable "
               "in the question.\nProgram:\n")


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str  # the exact continuation, leading space included where the format has one
    candidates: tuple[str, ...] = ()  # multiple-choice continuations (same form as answer); empty = generation only
    expression: str | None = None  # PSM: the substituted expression, scored alone by psm_calc


@dataclass(frozen=True)
class Task:
    name: str
    make: Callable[[random.Random], Example]
    chance: float  # of the multiple-choice score; 0 where the task is generation-only
    score: str = "exact"  # exact | expression (PSM-calc: only the substituted expression counts)
    stop: str = "\n"  # generation ends at this string


def _random_word(rng: random.Random) -> str:
    return "".join(rng.choice(LETTERS) for _ in range(3))


def copying(rng: random.Random, real_words: bool = False) -> Example:
    """`Fill in blank:\\n pum nyj … uni rzk jbw mlz eny kyx ___. ->` → ` uni`."""
    words: list[str] = []
    while len(words) < 10:  # distinct words, so the answer is unambiguous
        w = rng.choice(WORDS3) if real_words else _random_word(rng)
        if w not in words:
            words.append(w)
    start = rng.randrange(0, 5)  # the run is words[start:start+5]; the answer words[start+5] exists
    run = words[start:start + 5]
    prompt = f"{BASIC_HEADER} {' '.join(words)} {' '.join(run)} ___. ->"
    return Example(prompt, f" {words[start + 5]}", tuple(f" {w}" for w in words))


def _variables(rng: random.Random, n: int) -> list[str]:
    return rng.sample(LETTERS, n)


def assignment_chain(rng: random.Random, depth: int) -> tuple[list[str], str, int, list[int]]:
    """Lines of a depth-0/1/2 program, the queried variable, its value, and the 5 candidate values.

    Five numeric assignments with distinct values 0-20; depth 1 adds five aliases of numeric variables; depth 2 adds
    five aliases of depth-1 variables. The query is a variable of the deepest level. Groups keep their order
    (numbers, then aliases, then aliases of aliases) so every line only uses variables already defined.
    """
    names = _variables(rng, 5 * (depth + 1))
    values = rng.sample(range(0, 21), 5)
    level = names[:5]
    value_of = dict(zip(level, values))
    lines = [f"{v}={value_of[v]}" for v in level]
    for d in range(1, depth + 1):
        new = names[5 * d:5 * (d + 1)]
        group = []
        for v in new:
            src = rng.choice(level)
            value_of[v] = value_of[src]
            group.append(f"{v}={src}")
        lines += group
        level = new
    query = rng.choice(level)
    return lines, query, value_of[query], values


def variable_assignment(rng: random.Random, depth: int, wording: str) -> Example:
    lines, query, value, values = assignment_chain(rng, depth)
    candidates = tuple(f" {v}" for v in values)
    if wording == "basic":
        prompt = BASIC_HEADER + "".join(f" {line}\n" for line in lines) + f" {query}=__ ->"
    elif wording == "math":
        body = "".join(f"{line}\n" for line in lines)
        prompt = f"{MATH_HEADER}{body}What is the numerical value of {query}?\nAnswer:"
    else:
        assert wording == "code", wording
        body = "".join(f"{line}\n" for line in lines)
        prompt = f"{CODE_HEADER}{body}Question:\nWhat is the value of {query}?\nAnswer:"
    return Example(prompt, f" {value}", candidates)


def psm(rng: random.Random) -> Example:
    """`Fill in blank:\\n k=1\\n j=8\\n l=-k+j\\n l=_ ->` → ` -1+8=7` (expression `-1+8`)."""
    a, b, c = _variables(rng, 3)
    va, vb = rng.randrange(0, 10), rng.randrange(0, 10)
    sa, sb = rng.choice(["", "-"]), rng.choice(["+", "-"])
    expression = f"{sa}{va}{sb}{vb}"
    result = (-va if sa else va) + (vb if sb == "+" else -vb)
    prompt = f"{BASIC_HEADER} {a}={va}\n {b}={vb}\n {c}={sa}{a}{sb}{b}\n {c}=_ ->"
    return Example(prompt, f" {expression}={result}", (), expression)


def _signed(v: int) -> str:
    return f"+{v}" if v >= 0 else str(v)


def arithmetic(rng: random.Random) -> Example:
    """Signed single-digit sums: `-3+2=` → `-1`, `+1+9=` → `10`."""
    a, b = rng.randint(-9, 9), rng.randint(-9, 9)
    return Example(f"{_signed(a)}{_signed(b)}=", str(a + b))


def kshot(task: Task, rng: random.Random, shots: int) -> tuple[str, Example]:
    """The full prompt: `shots` solved examples and the query, separated by blank lines; and the query's example."""
    solved = [task.make(rng) for _ in range(shots)]
    query = task.make(rng)
    return "\n\n".join([*(e.prompt + e.answer for e in solved), query.prompt]), query


def _tasks() -> dict[str, Task]:
    tasks = [
        Task("copy_random", copying, 0.1),
        Task("copy_words", lambda r: copying(r, real_words=True), 0.1),
    ]
    for depth in (0, 1, 2):
        for wording in ("basic", "math", "code"):
            tasks.append(Task(f"var{depth}_{wording}",
                              lambda r, d=depth, w=wording: variable_assignment(r, d, w), 0.2))
    tasks += [
        Task("psm", psm, 0.0),
        Task("psm_calc", psm, 0.0, score="expression"),
        Task("arithmetic", arithmetic, 0.0),
    ]
    return {t.name: t for t in tasks}


TASKS = _tasks()
