"""Running lm-eval offline on a list of task names: our local tasks and any standard benchmark cached on this machine.

``evaluate_tasks`` builds every task up front (so an unknown name or a benchmark whose dataset is not cached fails in
one line before any model time is spent), then hands the built tasks to ``lm_eval.simple_evaluate``.
"""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemotron.evaluation.tasks import (
    FACTS_MC,
    LOCAL_TASKS,
    VALID_PPL,
    LocalTaskData,
    TaskError,
    chance_accuracy,
    split_task_names,
    write_local_tasks,
)
from nemotron.log import get_logger

log = get_logger(__name__)

OFFLINE_ENV = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


def go_offline() -> None:
    """Evaluation never downloads: set the HF offline switches, also in ``datasets`` if it was imported already."""
    os.environ.update(OFFLINE_ENV)
    import datasets.config
    import huggingface_hub.constants

    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    huggingface_hub.constants.HF_HUB_OFFLINE = True


@dataclass
class EvalOutcome:
    """Per-task metrics as lm-eval reports them, the flat view of them, and how many samples each task scored."""

    tasks: dict[str, dict[str, float]]
    flat: dict[str, float]
    num_samples: dict[str, int] = field(default_factory=dict)


def evaluate_tasks(
    lm: Any,
    task_names: list[str],
    data: LocalTaskData,
    work_dir: Path,
    limit: int | None = None,
    seed: int = 1234,
) -> EvalOutcome:
    """Run ``task_names`` on the lm-eval model ``lm``; local task YAMLs are written under ``work_dir``."""
    go_offline()
    import lm_eval
    from lm_eval.tasks import TaskManager

    local, standard = split_task_names(task_names)
    include = write_local_tasks(work_dir / "lm_eval_tasks", data, local)
    # Indexing lm-eval's ~10k built-in task YAMLs costs seconds: only when a standard benchmark is asked for.
    manager = TaskManager(include_path=str(include), include_defaults=bool(standard))
    built = [_build_task(manager, name) for name in local + standard]
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=built,
        task_manager=manager,
        limit=limit,
        log_samples=VALID_PPL in local,
        bootstrap_iters=0 if limit is not None and limit < 10 else 1000,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    tasks = {name: _numeric_metrics(metrics) for name, metrics in results["results"].items()}
    flat = {f"{task}/{metric}": value for task, metrics in tasks.items() for metric, value in metrics.items()}
    if FACTS_MC in local:
        flat[f"{FACTS_MC}/chance_acc"] = tasks[FACTS_MC]["chance_acc"] = chance_accuracy(data.facts_mc, limit)
    if VALID_PPL in local:
        flat["valid_perplexity"] = tasks[VALID_PPL]["token_perplexity"] = _token_perplexity(
            lm, results["samples"][VALID_PPL]
        )
    num_samples = {name: int(n["effective"]) for name, n in results.get("n-samples", {}).items()}
    return EvalOutcome(tasks=tasks, flat=flat, num_samples=num_samples)


def _build_task(manager: Any, name: str) -> Any:
    """The lm-eval Task (or Group) for ``name``, its dataset loaded from local files or the HF cache only."""
    if name not in manager.all_tasks:
        close = difflib.get_close_matches(name, list(LOCAL_TASKS) + manager.all_tasks, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise TaskError(
            f"unknown task {name!r}: {hint}valid are {', '.join(LOCAL_TASKS)} or an lm-eval benchmark name "
            "(`lm-eval ls tasks`)"
        )
    try:
        loaded = manager.load([name])
    except Exception as exc:  # datasets raises several types for "not cached, and offline"; all mean the same here
        if name in LOCAL_TASKS:
            raise
        raise TaskError(
            f"task {name!r} needs dataset {_dataset_of(manager, name)!r}, which is not in the local Hugging Face "
            f"cache (evaluation runs offline): download it on a machine with network access first "
            f"({type(exc).__name__})"
        ) from None
    objects = list(loaded["groups"].values()) or list(loaded["tasks"].values())
    return objects[0]


def _dataset_of(manager: Any, name: str) -> str:
    """The HF dataset a task (or the first task of a group) reads, for the error message."""
    entry = manager.task_index.get(name)
    config = getattr(entry, "cfg", None) or {}
    if isinstance(config, dict) and config.get("dataset_path"):
        return str(config["dataset_path"]) + (f"/{config['dataset_name']}" if config.get("dataset_name") else "")
    return name


def _numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """lm-eval's result row minus its labels: ``acc,none`` -> ``acc``; non-numeric and N/A values dropped."""
    clean = {}
    for key, value in metrics.items():
        metric, _, filter_name = key.partition(",")
        if metric == "sample_len" or not isinstance(value, int | float) or isinstance(value, bool):
            continue  # sample_len is reported as num_samples; labels (alias, ...) are not metrics
        if not math.isfinite(value):
            continue
        clean[metric if filter_name in ("", "none") else f"{metric}[{filter_name}]"] = float(value)
    return clean


def _token_perplexity(lm: Any, samples: list[dict[str, Any]]) -> float:
    """exp(mean negative log-likelihood per token) over the scored validation documents."""
    total_logprob, total_tokens = 0.0, 0
    for sample in samples:
        (logprob,) = sample["filtered_resps"] if isinstance(sample["filtered_resps"], list) else [sample["resps"]]
        text = sample["target"]
        total_logprob += float(logprob[0] if isinstance(logprob, list | tuple) else logprob)
        total_tokens += len(lm.tok_encode(text))
    return math.exp(-total_logprob / total_tokens)
