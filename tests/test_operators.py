"""A growth method is one definition: this file defines a toy operator, and it plans, trains and reports like the
built-in ones (its registry entry feeds the config, --help, `stackwise plan` and compare), also through --plugin in
compare's own processes. The docs' method table is the registry's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stackwise import operators
from stackwise.cli import build_parser, main
from stackwise.operators import operator


@operator("top-and-middle")
def top_and_middle(depth: int, b: int) -> list[int]:
    """Toy: copy the middle b/2 layers in place and the top b/2 layers on top."""
    h = b // 2
    lo = (depth - h) // 2
    return [*range(lo + h), *range(lo, lo + h), *range(lo + h, depth), *range(depth - h, depth)]


def test_the_new_operator_plans_and_is_listed(capsys):
    assert "top-and-middle" in operators.methods()
    assert main(["plan", "--json", "--growth.method", "top-and-middle", "--model.n_layers", "6",
                 "--growth.block_size", "2", "--train.steps", "30"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [s["depth"] for s in plan["stages"]] == [2, 4, 6]
    assert [s["source_layers"] for s in plan["stages"]] == [None, [0, 0, 1, 1], [0, 1, 1, 2, 3, 3]]
    assert plan["speedup"]["layer_flops"] == pytest.approx(6 * 30 / (5 * 2 + 10 * 4 + 15 * 6))
    train_help = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "top-and-middle: Toy: copy the middle" in " ".join(train_help.split())
    assert main(["plan", "--growth.method", "top-and-middle", "--growth.block_size", "4"]) == 2  # 6 layers
    assert "growth.block_size: 4 does not divide model.n_layers 6" in capsys.readouterr().err
    assert main(["plan", "--growth.method", "top-and-middle", "--growth.block_size", "3"]) == 2  # b/2 rounds down
    assert "operator 'top-and-middle' maps depth 3 to 5 layers" in capsys.readouterr().err


def test_the_new_operator_trains_and_reports_through_compare(corpus, tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--plugin", __file__, "--config", "tiny", "--methods", "none,top-and-middle", "--out",
            str(out), "--data.train", str(corpus["train"]), "--data.val", str(corpus["val"]), "--model.n_layers", "4",
            "--growth.block_size", "2", "--train.steps", "8", "--eval.every", "4", "--eval.sample_tokens", "0"]
    assert main(argv) == 0, capsys.readouterr().err
    summary = {row["method"]: row for row in json.loads((out / "summary.json").read_text())}
    assert summary["top-and-middle"]["status"] == "ok"
    assert summary["top-and-middle"]["flops"]["mean"] < summary["none"]["flops"]["mean"]
    events = (out / "runs" / "top-and-middle" / "seed0" / "events.jsonl").read_text().splitlines()
    assert [json.loads(e)["depth"] for e in events] == [4]
    assert "| top-and-middle |" in (out / "report.md").read_text()

    # the report only reads: rebuilt from a copy on a "machine" without the corpus, the cache or this plugin, by a
    # process that never imports torch, it is byte-identical
    copy = tmp_path / "elsewhere"
    shutil.copytree(out, copy)
    built = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".md", ".json", ".png")}
    for name in ("report.md", "summary.json", "loss_vs_flops.png"):
        (copy / name).unlink()
    spec = json.loads((copy / "compare.json").read_text())
    spec["common"].update({"data.train": "/no/such/corpus.txt", "data.val": "/no/such/val.txt"})
    (copy / "compare.json").write_text(json.dumps(spec, indent=2) + "\n")
    built["compare.json"] = (copy / "compare.json").read_bytes()
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "stackwise", "report", str(copy)],
                          capture_output=True, text=True, env={**os.environ, "STACKWISE_CACHE": str(tmp_path / "no")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not [ln for ln in proc.stderr.splitlines() if ln.rstrip().endswith(("| torch", "| stackwise.calibrate"))]
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.suffix in (".md", ".json", ".png")} == built


def test_a_method_that_is_not_registered_names_the_plugin_flag(capsys):
    assert main(["plan", "--growth.method", "nope"]) == 2
    err = capsys.readouterr().err
    assert "growth.method: 'nope' is not defined here" in err and "--plugin FILE" in err
    assert main(["plan", "--plugin", "/no/such/ops.py"]) == 2
    assert "--plugin: /no/such/ops.py is not a Python file" in capsys.readouterr().err


def test_a_broken_operator_is_refused_by_the_plan(capsys):
    @operator("broken-toy")
    def broken(depth: int, b: int) -> list[int]:
        """Toy: forgets to add layers."""
        return list(range(depth))

    try:
        assert main(["plan", "--growth.method", "broken-toy", "--model.n_layers", "4", "--growth.block_size", "2"]) == 2
        assert "operator 'broken-toy' maps depth 2 to 2 layers" in capsys.readouterr().err
    finally:
        del operators.OPERATORS["broken-toy"]


def test_the_docs_method_table_is_the_registry():
    doc = (Path(__file__).parents[1] / "docs" / "growth.md").read_text()
    assert operators.table() in doc
