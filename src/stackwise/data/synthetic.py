"""A seeded generator of training text with the structure reasoning needs, to mix into prose (`data.mix`).

Small models learn variable binding, copying and look-ups when their training text holds such structure (Physics of
Language Models; Sanford et al. 2024 on k-hop induction; Wu et al. 2025 on variable binding). Each document is one of:

  program     a Python REPL session or script: assignments, aliases (chains up to three deep, re-bound names), and
              look-ups with their results: `>>> print(x)`, or the bare `>>> x` that the REPL echoes (the name
              written both without and with the leading space it has where it is bound), or in a script
              `print(x)  # 457`; scripts write `x = 457` or the compact `x=457`
  arithmetic  sums, differences and small products with their results, one per line
  repeat      a list of made-up and real words, then a run of it repeated from a named word to the end, or a short
              run of it and the word that follows the run (induction / copying)
  story       a small word problem told with its answer
  drill       several short look-up problems in a row, separated by blank lines, the bindings in one of several
              forms (`let x be 457`, `x := 457`, `x=457`, ...) and the questions in one of 720 put together from
              parts (`so x is 457`, `look up x: 457`, `x = ?\nreply: 457`, ...): numbers bound, aliased up to two
              deep, and one name asked about per problem, so that a look-up is not tied to one wording and the text
              has the shape of a few-shot prompt (solved problems, then another)
  quiz        a drill in the frame of a question-and-answer exam on code: compact bindings (`x=457`), then
              `Question:` / `What is the value of x?` (half the quizzes; the others ask in eight forms of their
              own, `What does x hold?`, ...) / `Answer: 457`: the primitives' code form without its header, so
              that the code tasks measure the look-up in a frame seen in training and the basic and math forms,
              never written here, the transfer
  exam        (only where a spec names it, not in the default mix) quiz problems that ask every name they bind,
              each in the code form's question: a first stage of nothing but look-ups (`data.stages`)
  aliases     (only where a spec names it) exams weighted to the second hop: every alias asked and one number,
              the aliases holding different values wherever they can
  small_aliases  (only where a spec names it) exams with few distractors: two or three numbers and one alias,
              every name asked

It is **not** the evaluation set (`stackwise.evals.primitives`), and tests check it:
- the primitives draw values 0-20 for their single-letter variables; every assignment generated here binds a value
  of 21-999, so no (name, value) pair the primitives can ask about is ever trained on;
- none of the primitives' templates appears: no "Fill in blank", no "=__ ->" or "=_ ->", no "mathematical
  equations" header, no "What is the numerical value of", no code-form header ("The following is a very short Python
  program ... Program:"; the code form's `Question:` / `What is the value of x?` / `Answer:` lines appear, in
  quizzes only, without it and with values of 21 and up), no indented compact binding (the
  basic form's ` x=5` lines; compact `x=457` lines, the notation of the math and code forms' equations, are written
  here only unindented and with values of 21 and up), and no signed-digit sums (`+1+9=`): arithmetic is written
  `37 + 48 = 85`;
- copying uses words of four or more letters, never the primitives' three-letter words.

Spec: `synthetic[:SEED[:MB[:KINDS]]]` as a source (data.train, data.val, or in data.mix or data.stages); SEED
(default 0) picks the text, MB (default 16) its size, KINDS (default all) the kinds of document it writes, joined by
`+` (`synthetic:1:16:repeat+program`: only repeats and programs, in their usual proportions to each other). The
validation split of the same spec draws other documents (its own seed stream).
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator

# part of the source fingerprint: a change to the generator rebuilds caches (2: more look-ups, half of them bare
# echoes; 3: repeats run to the end of the list, look-ups and repeats drawn three times as often; 4: look-up drills
# in several surface forms; 5: programs also as scripts and in compact `x=457` notation, drill questions drawn apart
# from the bindings' form with tokens between the name and its value, repeats that ask for the word after a run, and
# the repeats' share of the text back to version 3's; 6: drill questions put together from parts, 720 forms, and
# the word after a run asked in several forms; 7: the list copied to its end back to version 3's share of the text,
# and REPL sessions 3 in 5 programs; 8: REPL sessions back to version 3's share of the text, 9 in 10 programs and
# programs drawn three times as often, beside the copied lists; 9: quizzes, look-ups in the code form's
# `Question:` / `Answer:` frame, a tenth of the text; 10: the lists copied to their end back to 38% of the text, which
# version 9's quizzes had lowered to 33% and its model formed no induction head; 11: quizzes a third of the text, half
# of them asking the code form's own question, in place of most REPL sessions. A version 12, whose quizzes asked every
# name they bound, is not kept: see `quiz`)
VERSION = "synthetic-11"
DEFAULT_MB = 16.0
LETTERS = string.ascii_lowercase
VALUES = range(21, 1000)  # the primitives' values are 0-20
WORDS = tuple("""
able acid aged also area army away baby back ball band bank base bath bear beat been beer bell belt best bill bird
blow blue boat body bomb bond bone book boom born boss both bowl bulk burn bush busy cake call calm came camp card
care case cash cast cell chat chip city club coal coat code cold come cook cool cope copy core cost crew crop dark
data date dawn days dead deal dean dear debt deep deny desk dial diet disc disk door dose down draw drew drop drug
dual duke dust duty each earn ease east easy edge else even ever evil exit face fact fail fair fall farm fast fate
fear feed feel feet fell felt file fill film find fine fire firm fish five flat flow food foot form fort four free
from fuel full fund gain game gate gave gear gene gift girl give glad goal goes gold golf gone good gray grew grey
grow gulf hair half hall hand hang hard harm hate have head hear heat held hell help here hero high hill hire hold
hole holy home hope host hour huge hung hunt hurt idea inch into iron item jack jane jean john join jump jury just
keen keep kent kept kick kind king knee knew know lack lady laid lake land lane last late lead left less life lift
like line link list live load loan lock logo long look lord lose loss lost love luck made mail main make male many
mark mass matt meal mean meat meet menu mere mike mile milk mill mind mine miss mode mood moon more most move much
must name navy near neck need news next nice nick nine none nose note okay once only open oral over pace pack page
paid pain pair palm park part pass past path peak pick pink pipe plan play plot plug plus poll pool poor port post
pull pure push race rail rain rank rare rate read real rear rely rent rest rice rich ride ring rise risk road rock
role roll roof room root rose rule rush safe said sake sale salt same sand save seat seed seek seem seen self sell
send sent ship shop shot show shut sick side sign site size skin slip slow snow soft soil sold sole some song soon
sort soul spot star stay step stop such suit sure take tale talk tall tank tape task team tech tell tend term test
text than that them then they thin this thus tide till time tiny told tone took tool tour town tree trip true tune
turn twin type unit upon used user vary vast very vice view vote wage wait wake walk wall want ward warm wash wave
ways weak wear week well went were west what when wide wife wild will wind wine wing wire wise wish with wood word
wore work yard yeah year your zero zone
""".split())
NAMES = ("Mia", "Tom", "Ana", "Lev", "Ida", "Ben", "Zoe", "Raj", "Eva", "Kai", "Noor", "Omar", "Lina", "Paul")
THINGS = ("apples", "marbles", "stamps", "coins", "pencils", "shells", "cards", "books", "beads", "stickers")


def _value(rng: random.Random) -> int:
    return rng.choice(VALUES)


# how a program is written: (assignment, look-up with its result); a REPL session echoes each result on its own line,
# a script prints it with the result in a comment. `{n}` a name, `{v}` a value or an expression
PROGRAM_LAYOUTS = {
    "repl": (">>> {n} = {v}", (">>> print({n})\n{r}", ">>> {n}\n{r}")),
    "script": ("{n} = {v}", ("print({n})  # {r}",)),
    "compact": ("{n}={v}", ("print({n})  # {r}",)),
}
# programs drawn per layout: REPL sessions, the look-ups a model learns first (version 3's programs were all REPL
# sessions), 9 in 10
LAYOUT_WEIGHTS = {"repl": 18, "script": 1, "compact": 1}


def program(rng: random.Random) -> str:
    """A REPL session or a script: bind numbers, alias them (chains up to three deep), re-bind some, look values up,
    and end with one to three look-ups."""
    assign, look_ups = PROGRAM_LAYOUTS[rng.choices(tuple(LAYOUT_WEIGHTS), tuple(LAYOUT_WEIGHTS.values()))[0]]
    compact = assign == "{n}={v}"
    names = rng.sample(LETTERS, rng.randint(4, 10))
    value_of: dict[str, int] = {}
    lines = []

    def look_up(name: str) -> None:
        lines.append(rng.choice(look_ups).format(n=name, r=value_of[name]))

    for _ in range(rng.randint(6, 16)):
        bound = list(value_of)
        kind = rng.random()
        if not bound or kind < 0.3:  # a number
            name, value = rng.choice(names), _value(rng)
            value_of[name] = value
            lines.append(assign.format(n=name, v=value))
        elif kind < 0.55:  # an alias: takes the value the source has now
            name, src = rng.choice(names), rng.choice(bound)
            value_of[name] = value_of[src]
            lines.append(assign.format(n=name, v=src))
        elif kind < 0.65:  # a sum of a bound name and a number
            name, src, add = rng.choice(names), rng.choice(bound), rng.randint(1, 9)
            value_of[name] = value_of[src] + add
            lines.append(assign.format(n=name, v=f"{src}+{add}" if compact else f"{src} + {add}"))
        else:
            look_up(rng.choice(bound))
    for _ in range(rng.randint(1, 3)):
        look_up(rng.choice(list(value_of)))
    return "\n".join(lines)


def arithmetic(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(4, 10)):
        op = rng.choice("+-*")
        if op == "*":
            a, b = rng.randint(2, 12), rng.randint(2, 12)
            lines.append(f"{a} * {b} = {a * b}")
        else:
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            lines.append(f"{a} {op} {b} = {a + b if op == '+' else a - b}")
    return "\n".join(lines)


def _made_up_word(rng: random.Random) -> str:
    return "".join(rng.choice(LETTERS) for _ in range(rng.randint(4, 6)))


# how a repeat asks for the word after a run: what comes before the run, after it, and before the word
NEXT_LEADS = ("After ", "Then ", "Following ", "")
NEXT_TAILS = (" comes", ",", " ...", " is followed by", "")
NEXT_MARKERS = (" ", ": ", "\n")


def repeat(rng: random.Random) -> str:
    """A list of distinct words, then either the list repeated from one of them to its end (17 in 20), or a short run of
    it and the word that follows the run, asked in one of 60 forms (both are induction targets: copying, and the word
    after a copied run)."""
    made_up = rng.random() < 0.5
    words: list[str] = []
    n = rng.randint(8, 16)
    while len(words) < n:
        w = _made_up_word(rng) if made_up else rng.choice(WORDS)
        if w not in words:
            words.append(w)
    if rng.random() < 0.85:
        run = words[rng.randrange(0, n - 3):]  # from a named word to the end of the list
        return f"Words: {' '.join(words)}.\nFrom {run[0]} on: {' '.join(run)}."
    start = rng.randrange(0, n - 2)
    run = words[start:start + rng.randint(2, min(5, n - 1 - start))]
    lead, tail, marker = rng.choice(NEXT_LEADS), rng.choice(NEXT_TAILS), rng.choice(NEXT_MARKERS)
    return f"Words: {' '.join(words)}.\n{lead}{' '.join(run)}{tail}{marker}{words[start + len(run)]}."


def story(rng: random.Random) -> str:
    who, thing = rng.choice(NAMES), rng.choice(THINGS)
    a, b = rng.randint(21, 99), rng.randint(2, 20)
    if rng.random() < 0.5:
        return f"{who} has {a} {thing}. {who} gets {b} more. Now {who} has {a + b} {thing}."
    return f"{who} has {a} {thing}. {who} gives away {b}. Now {who} has {a - b} {thing}."


# A drill's bindings are written in one of these forms (`{n}` a name, `{v}` a value or another name) and its
# questions in a form put together from three parts drawn apart: what comes before the asked name, what follows it,
# and what stands before the value (`so x is 457`, `x = ?\nreply: 457`, `look up x: 457`, ...), 720 forms in all.
# A model that learned a few fixed question forms answered none it had not seen (docs/results/reasoning), so the
# forms are too many to learn one by one: the look-up has to find the asked name wherever the question puts it.
# None is a primitive's template (tests/test_synthetic.py): the primitives ask `x=__ ->`, `What is the (numerical)
# value of x?` and `Answer:`
DRILL_BINDINGS = ("{n} = {v}", "let {n} be {v}", "{n} := {v}", "set {n} to {v}", "{n} <- {v}", "{n}={v}")
QUESTION_LEADS = ("", "so ", "get ", "show ", "ask ", "what does ", "find ", "look up ", "and ", "now ")
QUESTION_TAILS = ("", "?", " is", " = ?", " holds", "'s value", " now", " equals what?")
ANSWER_MARKERS = (" ", ": ", " => ", "\n", "\nreply: ", " gives ", "\n= ", " so ", "\nit is ")
COMPACT = "{n}={v}"  # the primitives' own notation, written here only unindented (their basic form indents it)


def question_form(rng: random.Random) -> str:
    """A drill's question with its answer, `{n}` the asked name and `{v}` its value."""
    return rng.choice(QUESTION_LEADS) + "{n}" + rng.choice(QUESTION_TAILS) + rng.choice(ANSWER_MARKERS) + "{v}"


def bindings_block(rng: random.Random, bind: str) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """One problem's bindings: three to six names bound to numbers, then aliases of up to four more names (an alias
    of an alias is two deep); the lines in `bind`'s form, the value each name holds and its depth (0: a number)."""
    names = rng.sample(LETTERS, rng.randint(4, 10))
    value_of: dict[str, int] = {}
    depth: dict[str, int] = {}
    lines = []
    n_numbers = rng.randint(3, min(6, len(names) - 1))
    for name in names[:n_numbers]:
        value_of[name], depth[name] = _value(rng), 0
        lines.append(bind.format(n=name, v=value_of[name]))
    for name in names[n_numbers:]:
        src = rng.choice([m for m in value_of if depth[m] < 2])
        value_of[name], depth[name] = value_of[src], depth[src] + 1
        lines.append(bind.format(n=name, v=src))
    return lines, value_of, depth


def drill(rng: random.Random, form=question_form, bindings=DRILL_BINDINGS) -> str:
    """Two to five look-up problems in one binding form and one question form, separated by blank lines. Each binds
    names (`bindings_block`), then asks one name's value and gives it. Every line of a problem is indented alike (no
    indent, or one space; compact bindings are never indented). `form` draws the document's question form
    (`question_form` by default), and the binding form is one of `bindings`."""
    bind, ask = rng.choice(bindings), form(rng)
    separator = rng.choice(("\n", "\n", ", "))  # one binding per line, or all on one line
    problems = []
    for _ in range(rng.randint(2, 5)):
        lines, value_of, _ = bindings_block(rng, bind)
        asked = rng.choice(list(value_of))
        indent = "" if bind == COMPACT else rng.choice(("", " "))
        body = indent + ", ".join(lines) if separator == ", " else "\n".join(indent + line for line in lines)
        question = ask.format(n=asked, v=value_of[asked]).replace("\n", "\n" + indent)
        problems.append(f"{body}\n{indent}{question}")
    return "\n\n".join(problems)


# A quiz is a drill in the frame of a question-and-answer exam on code: compact bindings (`x=457`), then
# `Question:` and `Answer:` lines around a question. Half the quizzes ask the primitives' code form's question, the
# others one of eight of their own, so that the look-up is learned in that frame (a model of this size answers a
# question only in forms it was trained on, docs/results/reasoning) without being tied to one sentence. The code
# form's exact template, its header ending in `Program:`, is never written, its values (0-20) are never bound, and
# neither are the basic and math forms' wordings written, the transfer the study measures (tests/test_synthetic.py)
CODE_QUESTION = "What is the value of {n}?"
QUIZ_QUESTIONS = ("What is {n}?", "What does {n} hold?", "What is {n} now?", "What value does {n} have?",
                  "Which number is {n}?", "What is in {n}?", "{n} is what?", "Give {n}.")


def quiz_form(rng: random.Random) -> str:
    question = CODE_QUESTION if rng.random() < 0.5 else rng.choice(QUIZ_QUESTIONS)
    return "Question:\n" + question + "\nAnswer: {v}"


def quiz(rng: random.Random) -> str:
    """Two to five look-up problems as a drill's, each asked in a quiz's `Question:` / `Answer:` frame. (Version 12
    asked every bound name instead of one, 1.7 times the answers at the same share; its pilot learned no more and its
    REPL look-up less, docs/results/reasoning, so version 11's quizzes are back.)"""
    return drill(rng, quiz_form, (COMPACT,))


def alias_block(rng: random.Random, bind: str) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """Bindings weighted to the second hop, as `bindings_block` returns them: four to six names bound to distinct
    numbers, then three to five aliases (fewer than the numbers), each of a number no other alias names (so aliases
    hold different values), or, one time in four, of an earlier alias (two deep, a value two aliases share)."""
    n_numbers = rng.randint(4, 6)
    names = rng.sample(LETTERS, n_numbers + rng.randint(3, n_numbers - 1))
    value_of: dict[str, int] = {}
    depth: dict[str, int] = {}
    lines = []
    for name, value in zip(names[:n_numbers], rng.sample(VALUES, n_numbers)):  # distinct values
        value_of[name], depth[name] = value, 0
        lines.append(bind.format(n=name, v=value))
    free = names[:n_numbers]
    rng.shuffle(free)
    for name in names[n_numbers:]:
        shallow = [m for m in value_of if depth[m] == 1]
        src = rng.choice(shallow) if shallow and rng.random() < 0.25 else free.pop()
        value_of[name], depth[name] = value_of[src], depth[src] + 1
        lines.append(bind.format(n=name, v=src))
    return lines, value_of, depth


def small_alias_block(rng: random.Random, bind: str) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """Bindings with few distractors, as `bindings_block` returns them: two or three names bound to distinct numbers,
    then one alias of one of them."""
    names = rng.sample(LETTERS, rng.randint(3, 4))
    value_of = dict(zip(names[:-1], rng.sample(VALUES, len(names) - 1)))
    depth = dict.fromkeys(value_of, 0)
    lines = [bind.format(n=n, v=v) for n, v in value_of.items()]
    src = rng.choice(names[:-1])
    value_of[names[-1]], depth[names[-1]] = value_of[src], 1
    lines.append(bind.format(n=names[-1], v=src))
    return lines, value_of, depth


def every_name_asked(rng: random.Random, bind: str, ask: str, aliases_first: bool = False,
                     block=bindings_block) -> str:
    """One to three problems, separated by blank lines: bindings in `bind`'s form (`block`, by default
    `bindings_block`), one per line, then every bound name asked once, in random order, each in `ask`'s frame (`{n}`
    the name, `{v}` its value). `aliases_first`: problems weighted to the second hop instead (`alias_block`), of
    which every alias is asked and one number that no alias holds, so that no answer repeats an earlier one but where
    two aliases share a value."""
    problems = []
    for _ in range(rng.randint(1, 3)):
        if aliases_first:
            lines, value_of, depth = alias_block(rng, bind)
            held = {value_of[n] for n in value_of if depth[n]}
            asked = [n for n in value_of if depth[n]]
            asked.append(rng.choice([n for n in value_of if not depth[n] and value_of[n] not in held]))
        else:
            lines, value_of, _ = block(rng, bind)
            asked = list(value_of)
        rng.shuffle(asked)
        problems.append("\n".join(lines + [ask.format(n=n, v=value_of[n]) for n in asked]))
    return "\n\n".join(problems)


CODE_FRAME = "Question:\n" + CODE_QUESTION + "\nAnswer: {v}"  # the quiz frame around the code form's question


def exam(rng: random.Random) -> str:
    """Quiz problems that ask every name they bind (`every_name_asked`), each in the code form's question: the
    look-up in that frame and nothing else, with the aliases (depth 1 and 2) asked as often as the names bound
    to numbers. Not in the default mix (weight 0); asked for by name (`synthetic:0:32:exam`), e.g. as the first
    stage of `data.stages`: on nothing but such questions the reasoning recipe's model (names split) answers 85% of
    them after 2000 steps; on the default mix, 48% after 5000 (docs/results/reasoning)."""
    return every_name_asked(rng, COMPACT, CODE_FRAME)


def aliases(rng: random.Random) -> str:
    """Exams weighted to the second hop of the look-up (`every_name_asked` with `aliases_first`): four to six names
    bound to numbers, then three to five aliases (a quarter two deep); every alias asked, and one number, in the
    code form's question. Not in the default mix (weight 0); asked for by name (`synthetic:0:32:aliases`), e.g. after or
    beside a stage of exams in `data.stages`."""
    return every_name_asked(rng, COMPACT, CODE_FRAME, aliases_first=True)


def small_aliases(rng: random.Random) -> str:
    """Exams with few distractors (`every_name_asked` of `small_alias_block`): two or three names bound to numbers,
    then one alias of one of them, every name asked in the code form's question (the look-up toy's `--small`
    problems). A stage of them first brought the toy's second hop on its usual problems sooner, while on the reasoning
    recipe it held back even the direct look-up (one seed each; docs/results/reasoning, "Fewer distractors first").
    Not in the default mix (weight 0); asked for by name (`synthetic:0:32:small_aliases`)."""
    return every_name_asked(rng, COMPACT, CODE_FRAME, block=small_alias_block)


KINDS = (program, arithmetic, repeat, story, drill, quiz, exam, aliases, small_aliases)
# documents drawn per kind, so that of the text about 39% is a list copied from a named word to its end (copying:
# induction heads form only when it is frequent in the data; version 3 had 39%, versions 4 and 6, whose models formed
# none, about 20%, and version 9's 33% formed none within 5000 steps), 33% quizzes (look-ups in the code form's frame,
# the one form most of the look-ups take, as version 3's REPL sessions, 46% of its text, were for its model, which
# learned them) and 15% REPL sessions; 46% repeats in all, 16% programs, 3% drills and 2% arithmetic and stories
# (measured in tests/test_synthetic.py). A kind of weight 0 is drawn only where a spec asks for it by name (the text
# of every other spec stays as it was): alone or with other such kinds, each at weight 1
WEIGHTS = (10, 1, 34, 1, 1, 12, 0, 0, 0)


KIND_NAMES = tuple(kind.__name__ for kind in KINDS)


def parse(spec: str) -> tuple[int, float, tuple[str, ...] | None]:
    """(seed, MB, kinds) of a `synthetic[:SEED[:MB[:KIND+KIND...]]]` spec; kinds None: every kind. Raises
    ValueError on a malformed spec or an unknown kind."""
    parts = spec.split(":")[1:]
    if len(parts) > 3:
        raise ValueError(spec)
    seed = int(parts[0]) if parts else 0
    mb = float(parts[1]) if len(parts) > 1 else DEFAULT_MB
    kinds = None
    if len(parts) > 2:
        kinds = tuple(parts[2].split("+"))
        if not all(k in KIND_NAMES for k in kinds) or len(set(kinds)) != len(kinds):
            raise ValueError(spec)
        kinds = tuple(k for k in KIND_NAMES if k in kinds)  # (one order, so `a+b` and `b+a` are one text)
    return seed, mb, kinds


def documents(seed: int, split: str, max_bytes: float, kinds: tuple[str, ...] | None = None) -> Iterator[str]:
    """Documents of about max_bytes in all (the first that reaches it is the last); the same seed and split always
    give the same text, and the validation split draws from its own stream. `kinds` keeps only those kinds of
    document, in the same proportions to one another as in the full mix (None: all of them)."""
    chosen = [(kind, w) for kind, w in zip(KINDS, WEIGHTS) if kinds is None or kind.__name__ in kinds]
    if not any(w for _, w in chosen):  # only kinds outside the default mix: each at weight 1
        chosen = [(kind, 1) for kind, _ in chosen]
    chosen = [(kind, w) for kind, w in chosen if w]
    assert chosen, kinds
    rng = random.Random(f"{VERSION}|{seed}|{split}" + ("" if kinds is None else f"|{'+'.join(kinds)}"))
    total = 0
    while total < max_bytes:
        doc = rng.choices([k for k, _ in chosen], [w for _, w in chosen])[0](rng)
        total += len(doc) + 1
        yield doc
