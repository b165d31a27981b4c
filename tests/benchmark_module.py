"""Import a script from benchmarks/ (not a package) as a module, for the tests of its functions."""

import importlib.util
from pathlib import Path


def load(name: str):
    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
