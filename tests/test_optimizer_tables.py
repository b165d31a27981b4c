"""benchmarks/optimizer_tables.py: the optimizer study's README tables come from its summary.json."""

import json
from pathlib import Path

import benchmark_module

tables = benchmark_module.load("optimizer_tables")
MAIN = Path(__file__).parents[1] / "docs" / "results" / "optimizers" / "main"


def test_the_tables_name_every_arm_and_each_midas_arm_against_its_own():
    spec = json.loads((MAIN / "compare.json").read_text())
    names = tables.arm_names(spec)
    assert names["none"] == "AdamW" and names["midas"] == "AdamW + MIDAS"
    assert sorted(names.values()) == sorted(f"{o}{m}" for o in ("AdamW", "Muon", "SOAP", "PSGD-Kron")
                                            for m in ("", " + MIDAS"))
    rows = [r for r in json.loads((MAIN / "summary.json").read_text()) if r.get("status") == "ok"]
    adamw = tables.against_adamw(rows, names).splitlines()[2:]
    assert len(adamw) == len(rows) and adamw[0].startswith("| AdamW |") and "(reference)" in adamw[0]
    own = tables.against_own_arm(rows, names).splitlines()[2:]
    assert [line.split(" | ")[0] for line in own] == ["| AdamW", "| Muon", "| SOAP", "| PSGD-Kron"]
    # a cell is the summary's number, with the t-interval computed from its std and n
    soap = next(r for r in rows if names[r["method"]] == "SOAP + MIDAS")
    ce = soap["against_own_baseline"]["compute_equivalent_speedup"]["flops"]
    lo, hi = tables.interval(ce)
    assert lo < ce["mean"] < hi and f"{ce['mean']:.2f}× [{lo:.2f}, {hi:.2f}]" in own[2]


def test_the_t_interval_matches_a_hand_computation():
    lo, hi = tables.interval({"mean": 1.0, "std": 0.1, "n": 3})
    assert abs(hi - 1.0 - 4.303 * 0.1 / 3 ** 0.5) < 1e-9 and abs(lo - (2 - hi)) < 1e-9
    assert tables.interval({"mean": 1.0, "std": None, "n": 1}) is None
