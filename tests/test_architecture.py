"""The house is one-way: no import circles (counting imports inside functions too), the config knows nothing of
growth plans, compare calls report and not the reverse, and the light commands never import torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "stackwise"


def _imports() -> dict[str, set[str]]:
    """stackwise module -> the stackwise modules it imports anywhere in its text."""
    modules = {("stackwise." + ".".join(p.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__"): p
               for p in SRC.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stackwise"):
                deps |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                         for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("stackwise")}
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def test_no_import_circles():
    graph = _imports()
    done, active = set(), []

    def visit(node):
        assert node not in active, "import circle: " + " -> ".join([*active[active.index(node):], node])
        if node in done:
            return
        active.append(node)
        for dep in sorted(graph[node]):
            visit(dep)
        active.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    assert "stackwise.growth" not in graph["stackwise.config"]
    assert "stackwise.compare" not in graph["stackwise.report"]
    assert "stackwise.operators" in graph["stackwise.config"] and graph["stackwise.operators"] <= {"stackwise.errors"}


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["plan"], ["plan", "--json"]])
def test_light_commands_do_not_import_torch(argv):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "stackwise", *argv], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time")}
    assert "stackwise.cli" in imported and "torch" not in imported and "matplotlib" not in imported


def test_the_training_loop_reads_top_to_bottom():
    """train.py's functions each fit on one screen: the loop is a short sequence of named steps."""
    tree = ast.parse((SRC / "train.py").read_text())
    long = {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef) and n.end_lineno - n.lineno + 1 > 60}
    assert not long
