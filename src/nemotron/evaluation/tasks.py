"""The recipe's own lm-eval tasks, written as YAML at run time so their data files are absolute paths.

Three local tasks, built from a Dataset artifact:

- ``facts_mc``: held-out multiple-choice facts (``facts_mc.jsonl``: query, choices, gold) — metric ``acc``;
- ``facts_gen``: held-out facts to complete greedily (``facts_gen.jsonl``: prompt, target) — ``exact_match``;
- ``valid_ppl``: the validation split scored with ``loglikelihood_rolling`` — word perplexity and bits per byte
  (the step adds token-level ``valid_perplexity`` from the same scores).

Any other name is a standard lm-eval benchmark (``mmlu``, ``hellaswag``, ...), run only if its data is already on
this machine: evaluation never downloads.

Which local tasks a Dataset supports follows from what it carries: ``valid_ppl`` always (every Dataset has a
validation split), ``facts_mc``/``facts_gen`` only when its ``provides`` lists them (the embedded world's held-out
facts; a user's own corpus has none). ``supported_tasks`` is the default task list, ``check_supported`` refuses an
asked-for task the data cannot feed (at plan time too: the launcher passes what the planned data_curation provides).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemotron.errors import UserError

FACTS_MC = "facts_mc"
FACTS_GEN = "facts_gen"
VALID_PPL = "valid_ppl"
LOCAL_TASKS = (FACTS_MC, FACTS_GEN, VALID_PPL)
TASK_TAG = "nemotron_local"  # the tasks this project writes from a Dataset's held-out items, for any recipe


class TaskError(UserError):
    """A task name that does not exist or whose data is not on this machine."""


@dataclass(frozen=True)
class LocalTaskData:
    """Where the local tasks read from: the Dataset artifact's held-out items and validation Parquet."""

    eval_dir: Path
    valid_path: Path
    text_field: str = "text"

    @property
    def facts_mc(self) -> Path:
        return self.eval_dir / "facts_mc.jsonl"

    @property
    def facts_gen(self) -> Path:
        return self.eval_dir / "facts_gen.jsonl"


def local_task_configs(data: LocalTaskData) -> dict[str, dict[str, Any]]:
    """lm-eval task configs (as dicts) for the local tasks; data file paths are absolute."""
    return {
        FACTS_MC: {
            "task": FACTS_MC,
            "tag": [TASK_TAG],
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(data.facts_mc.resolve())}},
            "test_split": "test",
            "output_type": "multiple_choice",
            "doc_to_text": "{{query}}",
            "doc_to_choice": "{{choices}}",
            "doc_to_target": "{{gold}}",
            "target_delimiter": " ",
            "metric_list": [
                {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
            ],
        },
        FACTS_GEN: {
            "task": FACTS_GEN,
            "tag": [TASK_TAG],
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(data.facts_gen.resolve())}},
            "test_split": "test",
            "output_type": "generate_until",
            "doc_to_text": "{{prompt}}",
            "doc_to_target": "{{target}}",
            # One fact is one clause: stop at its end. Greedy only (the adapter refuses sampling).
            "generation_kwargs": {"until": ["\n", ".", ","], "max_gen_toks": 16, "do_sample": False},
            "metric_list": [
                {
                    "metric": "exact_match",
                    "aggregation": "mean",
                    "higher_is_better": True,
                    "ignore_case": True,
                    "ignore_punctuation": True,
                    "regexes_to_ignore": ["^\\s+", "\\s+$"],
                }
            ],
        },
        VALID_PPL: {
            "task": VALID_PPL,
            "tag": [TASK_TAG],
            "dataset_path": "parquet",
            "dataset_kwargs": {"data_files": {"test": str(data.valid_path.resolve())}},
            "test_split": "test",
            "output_type": "loglikelihood_rolling",
            "doc_to_text": "",
            "doc_to_target": "{{" + data.text_field + "}}",
            "metric_list": [
                {"metric": "word_perplexity", "aggregation": "weighted_perplexity", "higher_is_better": False},
                {"metric": "byte_perplexity", "aggregation": "weighted_perplexity", "higher_is_better": False},
                {"metric": "bits_per_byte", "aggregation": "bits_per_byte", "higher_is_better": False},
            ],
        },
    }


def write_local_tasks(directory: Path, data: LocalTaskData, names: Sequence[str] = LOCAL_TASKS) -> Path:
    """Write one YAML per local task in ``names`` into ``directory`` (for ``TaskManager(include_path=...)``).

    Only the named tasks' data must exist (a user corpus has a validation split but no held-out facts). Each value is
    written as JSON, which is valid YAML and needs no YAML library.
    """
    files = {FACTS_MC: data.facts_mc, FACTS_GEN: data.facts_gen, VALID_PPL: data.valid_path}
    for path in (files[name] for name in names):
        if not path.is_file():
            raise TaskError(f"local task data {path} does not exist: is {data.eval_dir.parent} a complete Dataset?")
    directory.mkdir(parents=True, exist_ok=True)
    configs = local_task_configs(data)
    for name in names:
        lines = [f"{key}: {json.dumps(value)}" for key, value in configs[name].items()]
        (directory / f"{name}.yaml").write_text("\n".join(lines) + "\n")
    return directory


def supported_tasks(provided: Iterable[str]) -> tuple[str, ...]:
    """The local tasks a Dataset that ``provides`` these held-out sets can feed, in ``LOCAL_TASKS`` order."""
    provided = set(provided)
    return tuple(task for task in LOCAL_TASKS if task == VALID_PPL or task in provided)


def check_supported(tasks: Iterable[str], provided: Iterable[str], flag: str = "--tasks") -> None:
    """Refuse a local task whose held-out items the dataset does not carry, naming it and what the data supports."""
    supported = supported_tasks(provided)
    for task in tasks:
        if task in LOCAL_TASKS and task not in supported:
            raise TaskError(
                f"{flag} {task}: the dataset carries no held-out items for it (a corpus given as data_curation "
                f"sources has none); it provides {', '.join(supported)}"
            )


def split_task_names(tasks: list[str]) -> tuple[list[str], list[str]]:
    """(local task names, standard benchmark names), in the order given; duplicates are a user error."""
    if not tasks:
        raise TaskError(f"no tasks given: pass --tasks with any of {', '.join(LOCAL_TASKS)} or an lm-eval benchmark")
    duplicates = sorted({t for t in tasks if tasks.count(t) > 1})
    if duplicates:
        raise TaskError(f"task {duplicates[0]!r} is listed twice in --tasks")
    local = [t for t in tasks if t in LOCAL_TASKS]
    return local, [t for t in tasks if t not in LOCAL_TASKS]


def chance_accuracy(facts_mc: Path, limit: int | None = None) -> float:
    """Expected accuracy of uniform guessing over the (first ``limit``) multiple-choice items: mean of 1/#choices."""
    with facts_mc.open() as f:
        items = [json.loads(line) for line in f if line.strip()]
    items = items[:limit] if limit is not None else items
    return sum(1.0 / len(item["choices"]) for item in items) / len(items)
