"""lm-evaluation-harness integration: our primitives as local lm-eval YAML tasks, and running lm-eval on a run.

`write_tasks(DIR)` writes, beside the jsonl files of `stackwise eval --dump DIR`, one YAML task per primitive
(`stackwise_<task>`: greedy generation, exact match after stripping whitespace; PSM-calc compares only the
expression) and, where the task has candidates, a multiple-choice twin (`stackwise_mc_<task>`: accuracy by
log-likelihood), all tagged `stackwise_primitives`. Any Hugging Face model can then be scored offline:

    lm_eval --model hf --model_args pretrained=gpt2 --include_path DIR --tasks stackwise_primitives

`run(RUN_DIR, tasks)` exports the run to a Hugging Face folder and calls lm-eval's `hf` model on it (the exported
folder, not a custom LM class: lm-eval's own, well-tested Llama path is what everyone else uses too).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from stackwise.errors import UserError
from stackwise.evals.primitives import TASKS

TAG = "stackwise_primitives"


def _common(name: str, data: Path) -> dict:
    return {"tag": [TAG], "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
            "test_split": "test", "doc_to_text": "{{prompt}}", "target_delimiter": "", "metadata": {"version": 1.0}}


def write_tasks(folder: Path, tasks: list[str] | None = None) -> list[Path]:
    written = []
    for name in tasks or list(TASKS):
        data = folder / f"{name}.jsonl"
        assert data.is_file(), f"dump the examples first: {data}"
        task = TASKS[name]
        extract = ({"function": "regex", "regex_pattern": r"^\s*([^=\n]*)"} if task.score == "expression"
                   else {"function": "remove_whitespace"})
        gen = {**_common(name, data), "task": f"stackwise_{name}", "output_type": "generate_until",
               "doc_to_target": "{{expression}}" if task.score == "expression" else "{{answer | trim}}",
               "generation_kwargs": {"until": ["\n"], "do_sample": False, "max_gen_toks": 16},
               "filter_list": [{"name": "strip", "filter": [extract, {"function": "take_first"}]}],
               "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}]}
        written.append(folder / f"stackwise_{name}.yaml")
        written[-1].write_text(yaml.safe_dump(gen, sort_keys=False, width=1000))
        if task.chance:
            mc = {**_common(name, data), "task": f"stackwise_mc_{name}", "output_type": "multiple_choice",
                  "doc_to_choice": "{{candidates}}", "doc_to_target": "{{candidates.index(answer)}}",
                  "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}
            written.append(folder / f"stackwise_mc_{name}.yaml")
            written[-1].write_text(yaml.safe_dump(mc, sort_keys=False, width=1000))
    return written


def run(hf_dir: Path, tasks: list[str], include_path: Path | None, limit: int | None = None) -> dict:
    """lm-eval's `hf` model on an exported folder; returns {task: {metric: value}}."""
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise UserError('--lm-eval needs the optional extra: pip install -e ".[eval]"') from None
    manager = TaskManager(include_path=str(include_path) if include_path else None)
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = lm_eval.simple_evaluate(model="hf", model_args={"pretrained": str(hf_dir), "device": device},
                                  tasks=tasks, task_manager=manager, limit=limit, batch_size=8, log_samples=False)
    return {task: {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
            for task, metrics in out["results"].items()}


def save(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
