"""benchmarks/lookup_toy.py: its problems answer every asked name with the value it holds, aliases marked."""

import argparse
import math
import random
import re

import pytest
import torch

import benchmark_module
from stackwise import growth
from stackwise.model import rope_cache

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


def test_near_sources_binds_each_alias_right_after_its_source():
    lines = ["a=123", "b=150", "c=970", "d=a", "e=c", "f=d", "g=b"]
    assert lookup_toy.near_sources(lines) == ["a=123", "d=a", "f=d", "b=150", "g=b", "c=970", "e=c"]
    for seed in range(30):
        text, _, _ = lookup_toy.problem(random.Random(seed), "short", aliases=True, near=True)
        bindings = re.findall(r"^([a-z])=([a-z])$", text, re.M)
        for name, source in bindings:
            assert re.search(rf"^{source}=\w+\n([a-z]=[a-z]\n)*{name}=", text, re.M)


def test_a_traced_answer_writes_the_names_down_to_the_number_and_is_not_scored():
    written = 0
    for seed in range(40):
        text, answers, alias = lookup_toy.problem(random.Random(seed), "short", aliases=True, trace=1.0)
        source = dict(re.findall(r"^([a-z])=([a-z]|\d+)$", text, re.M))
        for name, chain, value in re.findall(r"^([a-z])\?((?:[a-z]=)*)(\d+)$", text, re.M):
            hops = [name]
            while not source[hops[-1]].isdigit():
                hops.append(source[hops[-1]])
            assert chain == "".join(f"{h}=" for h in hops[1:]) and value == source[hops[-1]]
            written += len(hops) > 1
        assert not any(alias) and len(answers) == sum(v.isdigit() for v in source.values())
    assert written > 80


def test_the_trace_is_dropped_linearly_between_its_steps():
    assert [lookup_toy.trace_chance("1000:3000", s) for s in (1, 1000, 2000, 3000, 4000)] == [1, 1, 0.5, 0, 0]
    assert lookup_toy.trace_chance("", 5) == 0


def test_ask_near_asks_each_alias_on_the_line_after_its_binding():
    for seed in range(30):
        text, answers, alias = lookup_toy.problem(random.Random(seed), "short", aliases=True, ask_near=True)
        aliases = re.findall(r"^([a-z])=[a-z]$", text, re.M)
        assert all(re.search(rf"^{n}=[a-z]\n{n}\?\d+$", text, re.M) for n in aliases)
        assert sum(alias) == len(aliases) and len(answers) == len(re.findall(r"^[a-z]=", text, re.M))


def test_ask_source_asks_every_alias_once_for_its_binding_and_leaves_the_rest_as_it_was():
    for seed in range(30):
        text, answers, alias = lookup_toy.problem(random.Random(seed), "short", aliases=True, ask_source=True)
        bound = dict(re.findall(r"^([a-z])=([a-z])$", text, re.M))
        asked = re.findall(r"^([a-z]):([a-z])$", text, re.M)
        assert sorted(asked) == sorted(bound.items())  # each alias once, with the name it is bound to
        plain, plain_answers, plain_alias = lookup_toy.problem(random.Random(seed), "short", aliases=True)
        assert re.sub(r"^[a-z]:[a-z]\n", "", text, flags=re.M) == plain and plain_alias == alias
        for a, is_alias in zip(answers, alias):  # the offsets still point at each asked value
            name = text[a - 2]
            value = re.search(rf"^{name}=(\w+)$", text, re.M)[1]
            while not value.isdigit():
                value = re.search(rf"^{value}=(\w+)$", text, re.M)[1]
            assert text[a:].startswith(value + "\n") and is_alias == (name in bound)


def test_small_problems_bind_two_or_three_numbers_and_one_alias():
    for seed in range(30):
        text, answers, alias = lookup_toy.problem(random.Random(seed), "short", aliases=True, small=True)
        numbers, aliases = re.findall(r"^[a-z]=\d+$", text, re.M), re.findall(r"^[a-z]=[a-z]$", text, re.M)
        assert len(numbers) in (2, 3) and len(aliases) == 1 and sum(alias) == 1 == len(answers) - len(numbers)
        held = dict(re.findall(r"^([a-z])=(\d+)$", text, re.M))
        assert len(set(held.values())) == len(held)  # distinct numbers: the alias's value is one of them only


def test_small_share_mixes_small_and_usual_problems_up_to_its_step_and_leaves_share_1_unchanged():
    args = lookup_toy.build_parser().parse_args(["--aliases", "--small", "10", "--small-share", "0.3", "--seed", "4"])
    now = {"step": 5}
    small = lookup_toy.small_problems(args, now)
    draws = [small() for _ in range(2000)]
    assert abs(sum(draws) / len(draws) - 0.3) < 0.04
    now["step"] = 11
    assert not any(small() for _ in range(100))  # after --small, only the usual problems
    # at share 1 (the default) every problem up to --small is small, with no draw of its own: the stream is the one
    # the option's predecessor (small while step <= --small) wrote, draw for draw
    whole = lookup_toy.small_problems(lookup_toy.build_parser().parse_args(["--aliases", "--small", "10"]), {"step": 3})
    ours, before = (lookup_toy.stream(random.Random(4), "short", 2, 64, aliases=True, small=f)
                    for f in (whole, lambda: True))
    for _ in range(3):
        assert torch.equal(next(ours)[0], next(before)[0])
    # a mixed stream writes both kinds, in the share asked
    now["step"] = 5
    kinds = [lookup_toy.problem(random.Random(i), "short", aliases=True, small=small())[0] for i in range(400)]
    small_ones = [len(re.findall(r"^[a-z]=[a-z]$", t, re.M)) == 1 and len(re.findall(r"^[a-z]=\d+$", t, re.M)) <= 3
                  for t in kinds]
    assert 0.2 < sum(small_ones) / len(kinds) < 0.4


def test_first_stage_held_out_problems_take_the_curriculum_options():
    args = argparse.Namespace(form="short", gap=0, aliases=True, near=0, ask_near=0, small=500, ask_source=0)
    usual, staged = lookup_toy.held_out_problems(args), lookup_toy.held_out_problems(args, first_stage=True)
    assert len(usual) == len(staged) == 60
    assert all(len(re.findall(r"^[a-z]=[a-z]$", text, re.M)) == 1 for text, _, _ in staged)
    assert any(len(re.findall(r"^[a-z]=[a-z]$", text, re.M)) > 1 for text, _, _ in usual)
    asking = lookup_toy.held_out_problems(argparse.Namespace(**{**vars(args), "small": 0, "ask_source": 500}), True)
    assert all(re.search(r"^[a-z]:[a-z]$", text, re.M) for text, _, _ in asking)


def test_source_accuracy_scores_the_name_after_each_source_question():
    text, _, _ = lookup_toy.problem(random.Random(2), "short", aliases=True, ask_source=True)
    ids = lookup_toy.encode(text)
    starts = [m.start() for m in re.finditer(r"^[a-z]:[a-z]$", text, re.M)]

    class Oracle(torch.nn.Module):  # predicts the true next character, except after the first source question's `:`
        def forward(self, x):
            logits = torch.zeros(1, x.shape[1], 128)
            logits[0, torch.arange(x.shape[1] - 1), x[0, 1:]] = 1.0
            logits[0, starts[0] + 1, ord("?")] = 2.0
            return logits
    score = lookup_toy.source_accuracy(Oracle(), [(text, [], [])], seq=len(ids))
    assert len(starts) >= 2 and score == pytest.approx(1 - 1 / len(starts))


def test_answer_digits_mark_the_digits_of_every_scored_answer_and_nothing_else():
    text, answers, _ = lookup_toy.problem(random.Random(3), "short", aliases=True)
    marked = "".join(c if m else "." for c, m in zip(text, lookup_toy.answer_digits(text, answers)))
    assert re.sub(r"\.+", " ", marked).split() == re.findall(r"\?(\d+)", text)
    batches = lookup_toy.stream(random.Random(0), "short", batch=2, seq=32, aliases=True)
    x, digits = next(batches)
    assert x.shape == digits.shape == (2, 33) and digits.any() and all(chr(int(c)).isdigit() for c in x[digits])


def _toy_args(**kw):
    args = dict(form="short", layers=2, d_model=16, heads=1, steps=12, batch=2, seq=128, lr=3e-3, init_std=0.1,
                canon="A", canon_kernel=4, gap=0, every=4, aliases=True, trace="2:8", near=0, ask_near=0, small=6,
                answer_loss=False, canon_only=True, save="", grow="", grow_method="midas", block=2, tie=1,
                attention=False, ask_source=0)
    return argparse.Namespace(**{**vars(lookup_toy.build_parser().parse_args([])), **args, **kw})


@pytest.mark.parametrize("depth", [{}, {"layers": 3, "block": 1, "grow": "6"}, {"tie": 2}],
                         ids=["fixed", "grown-before-the-stop", "looped"])
def test_a_saved_toy_run_resumes_to_the_uninterrupted_runs_scores(tmp_path, monkeypatch, depth):
    def toy_args(**kw):
        return _toy_args(**{**depth, **kw})
    straight = lookup_toy.run(toy_args(save=str(tmp_path / "straight")), "A")
    assert len(straight) == 3 and not any(math.isnan(x) for pair in straight for x in pair)
    prefix = str(tmp_path / "toy")
    scored, calls = lookup_toy.accuracy, []

    def stops_at_the_third_score(*a, **kw):  # the run is killed after its state at step 8 was saved
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return scored(*a, **kw)
    monkeypatch.setattr(lookup_toy, "accuracy", stops_at_the_third_score)
    with pytest.raises(KeyboardInterrupt):
        lookup_toy.run(toy_args(save=prefix), "A")
    monkeypatch.setattr(lookup_toy, "accuracy", scored)
    assert (tmp_path / "toy.A.pt").is_file()
    assert lookup_toy.run(toy_args(save=prefix), "A") == straight  # steps 9-12 on the replayed stream
    resumed, uninterrupted = (torch.load(tmp_path / f"{p}.A.pt", weights_only=False) for p in ("toy", "straight"))
    assert resumed["step"] == uninterrupted["step"] == 12
    for name, value in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][name], value), name  # the same weights, bit for bit
    with pytest.raises(SystemExit, match="saved with other settings"):
        lookup_toy.run(toy_args(save=prefix, lr=1e-3), "A")
    # a run saved before an option existed trained with its default: it resumes, unless the option is now set
    state = torch.load(tmp_path / "toy.A.pt", weights_only=False)
    del state["args"]["ask_source"]
    torch.save(state, tmp_path / "toy.A.pt")
    assert lookup_toy.run(toy_args(save=prefix), "A") == straight
    with pytest.raises(SystemExit, match="saved with other settings"):
        lookup_toy.run(toy_args(save=prefix, ask_source=4), "A")


def test_a_toy_run_stopped_early_and_lengthened_matches_the_uninterrupted_run(tmp_path):
    straight = lookup_toy.run(_toy_args(save=str(tmp_path / "straight")), "A")
    prefix = str(tmp_path / "toy")
    assert lookup_toy.run(_toy_args(save=prefix, stop=8), "A") == straight[:2]  # scored at 4 and 8, then stopped
    assert torch.load(tmp_path / "toy.A.pt", weights_only=False)["step"] == 8
    assert lookup_toy.run(_toy_args(save=prefix), "A") == straight


def test_the_toy_seed_draws_another_run_on_the_same_held_out_problems(monkeypatch):
    held = []
    monkeypatch.setattr(lookup_toy, "accuracy", lambda model, problems, seq: held.append(problems) or (0.0, 0.0))
    states = []
    monkeypatch.setattr(lookup_toy.torch.optim.AdamW, "step", lambda self, *a, **k: states.append(
        [p.detach().clone() for p in self.param_groups[0]["params"]]))
    streams, draw = [], lookup_toy.stream
    monkeypatch.setattr(lookup_toy, "stream", lambda rng, *a, **k: streams.append(rng.getstate()) or draw(rng, *a, **k))
    for seed in (0, 0, 1):
        lookup_toy.run(_toy_args(seed=seed, steps=4, small=0, trace=""), "A")
    assert held[0] == held[1] == held[2]  # the same held-out problems
    assert streams[0] == streams[1] != streams[2]  # the training problems drawn by the seed
    first = [states[i] for i in range(0, 12, 4)]  # each run's parameters at its first step
    assert all(torch.equal(a, b) for a, b in zip(first[0], first[1]))  # same seed, same init
    assert not all(torch.equal(a, b) for a, b in zip(first[0], first[2]))  # another seed, another init


def _grown_toy(method: str, block: int):
    """A 2-layer toy model after one training step, and its optimizer."""
    args = _toy_args(layers=2 + block, block=block, grow="1", grow_method=method)
    torch.manual_seed(0)
    model = lookup_toy.build(lookup_toy.config_mod.load("default", {"model.d_model": 16, "model.n_layers": 2 + block,
                                                                   "model.n_heads": 1, "model.vocab_size": 128,
                                                                   "growth.method": "none"}), args)
    opt = lookup_toy.adamw(model, 1e-3, 0.1)
    model(torch.randint(0, 128, (2, 8))).sum().backward()
    opt.step()
    return model, opt, args


@pytest.mark.parametrize(("method", "block", "source_map"), [("midas", 1, [0, 0, 1]), ("midas", 2, [0, 1, 0, 1]),
                                                              ("gradstack", 1, [0, 1, 1])])
def test_a_toy_growth_step_copies_each_source_layer_and_its_optimizer_state(method, block, source_map):
    model, opt, args = _grown_toy(method, block)
    old = list(model.layers)
    before = {id(p): {k: v.clone() for k, v in opt.state[p].items()} for p in model.parameters()}
    new_opt = lookup_toy.grow(model, opt, args)
    assert model.depth == 2 + block
    for i, src in enumerate(source_map):
        for (name, p), q in zip(model.layers[i].named_parameters(), old[src].parameters()):
            assert torch.equal(p, q), (i, name)
            assert p is q or i in growth.new_positions(source_map)  # a copy is a new parameter
            for key, value in before[id(q)].items():
                assert torch.equal(new_opt.state[p][key], value), (i, name, key)
    copy = model.layers[growth.new_positions(source_map)[0]]
    assert all(new_opt.state[p]["exp_avg"] is not opt.state[q]["exp_avg"]  # state copied, not shared
               for p, q in zip(copy.parameters(), old[source_map[growth.new_positions(source_map)[0]]]
                               .parameters()))


def test_attn_gain_multiplies_every_layers_attention_logits_once_grown_layers_included():
    """--attn-gain G equals the same model with its query weights multiplied by G (the logits are linear in q), on
    the layers a growth step adds too, and sharpening again does not compound it."""
    model, opt, args = _grown_toy("midas", 1)
    args.attn_gain = 3.0
    lookup_toy.sharpen(model, 3.0)
    lookup_toy.grow(model, opt, args)
    lookup_toy.sharpen(model, 3.0)
    assert model.depth == 3
    hand = lookup_toy.Transformer(model.cfg, n_layers=3)
    hand.load_state_dict(model.state_dict())
    with torch.no_grad():
        for layer in hand.layers:
            layer.self_attn.q_proj.weight.mul_(3.0)
    x = torch.randint(0, 128, (2, 8))
    plain = lookup_toy.Transformer(model.cfg, n_layers=3)
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert (model(x) - hand(x)).abs().max() < 1e-6
        assert (plain(x) - hand(x)).abs().max() > 1e-5  # (the gain changes the output: the check above can fail)


def test_a_looped_toy_model_runs_the_same_layers_k_times():
    args = _toy_args(layers=4, tie=2)
    cfg = lookup_toy.config_mod.load("default", {"model.d_model": 16, "model.n_layers": 4, "model.n_heads": 1,
                                                  "model.vocab_size": 128, "growth.method": "none"})
    model = lookup_toy.build(cfg, args)
    assert model.depth == 4 and model.layers[0] is model.layers[2] and model.layers[1] is model.layers[3]
    assert model.layers[0] is not model.layers[1]
    plain = lookup_toy.Transformer(cfg.model, n_layers=2)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in plain.parameters())
    x = torch.randint(0, 128, (1, 8))
    h = model.embed_tokens(x)
    cos, sin = (t.to(h.dtype) for t in rope_cache(8, 16, cfg.model.rope_theta, h.device))
    for block in [*model.layers[:2], *model.layers[:2]]:
        h = block(h, cos, sin)
    assert torch.allclose(model.lm_head(model.norm(h)), model(x), atol=1e-6)


def test_attention_shares_match_a_hand_computation_under_uniform_attention():
    """With q_proj zeroed every position attends uniformly to itself and all before it: the weight on a line is its
    length (newline included) over the number of positions the `?` sees."""
    cfg = lookup_toy.config_mod.load("default", {"model.d_model": 16, "model.n_layers": 2, "model.n_heads": 2,
                                                  "model.vocab_size": 128, "growth.method": "none"})
    model = lookup_toy.Transformer(cfg.model)
    for layer in model.layers:
        torch.nn.init.zeros_(layer.self_attn.q_proj.weight)
    held_out = lookup_toy.held_out_problems(_toy_args())[:5]
    expected: dict[str, list[float]] = {}
    for text, answers, alias in held_out:
        lines = dict(re.findall(r"^([a-z])=(\w+)$", text, re.M))
        for a, is_alias in zip(answers, alias):
            if a >= 128:
                continue
            name = text[a - 2]
            own = len(f"{name}={lines[name]}\n") / a  # the `?` at a - 1 sees positions 0..a-1
            expected.setdefault("alias: own line" if is_alias else "number: own line", []).append(own)
            if is_alias:
                expected.setdefault("alias: source's line", []).append(
                    len(f"{lines[name]}={lines[lines[name]]}\n") / a)
    shares = lookup_toy.attention_shares(model, held_out, seq=128)
    assert len(shares) == 2 and set(shares[0]) == set(expected)
    for row in shares:
        for key, values in expected.items():
            assert row[key] == pytest.approx(sum(values) / len(values), rel=1e-5), key
