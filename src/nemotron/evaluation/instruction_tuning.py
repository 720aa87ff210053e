"""Instruction-following evaluation, the building block of a recipe's instruction-tuning evaluation step: the tuned
model AND its input (pretrained) model, plus regression on the pretraining tasks.

``instruct``: greedy replies to the held-out instructions in the dataset's ``eval/instruct.jsonl``, scored by exact
match (``instruct/exact_match``, per kind too). The input model is found through the checkpoint's lineage
(``init_checkpoint``) and scored on the same items (``input_model/instruct/exact_match``), so one artifact records the
gain. The pretraining lm-eval tasks (``regression_tasks``) run on both models against the pretraining dataset.

A recipe's step module is this block under its own name: ``Config`` = ``InstructEvalConfig``, ``validate``, and
``main`` = ``evaluate(config, __file__)``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from nemotron.evaluation.artifacts import Results
from nemotron.evaluation.settings import ComparedEvalConfig, check_inputs, check_sizes
from nemotron.evaluation.tasks import VALID_PPL, check_supported, split_task_names, supported_tasks
from nemotron.step import Placement, carried_by, config_snapshot, step_output_dir
from nemotron.training.artifacts import Checkpoint

STEP = "evaluation"
INPUT_PREFIX = "input_model/"


@dataclass
class InstructEvalConfig(ComparedEvalConfig):
    """Evaluate a stage1 Checkpoint (and the model it was tuned from) on held-out instructions."""

    regression_tasks: tuple[str, ...] | None = None
    """stage0 tasks re-run on both models (facts_mc, facts_gen, valid_ppl); empty to skip; none = the held-out facts
    stage0's dataset carries, else valid_ppl."""
    limit: int | None = None
    """At most this many items per task (all when unset)."""
    max_new_tokens: int = 16
    batch_size: int = 32


def validate(config: InstructEvalConfig, placement: Placement, carried: frozenset[str]) -> None:
    """Every check before work: at the start of ``evaluate``, and by the launcher at plan time. ``carried``: the
    held-out sets the inputs carry through their lineage (the pretraining dataset's among them, see
    Dataset.provides), against which the regression tasks are checked."""
    check_sizes(config.limit, config.batch_size, config.max_new_tokens)
    if config.regression_tasks:
        split_task_names(list(config.regression_tasks))
    check_inputs(config)
    if config.regression_tasks:
        check_supported(config.regression_tasks, carried, "--regression-tasks")


def default_regression_tasks(provided: list[str]) -> tuple[str, ...]:
    """The held-out sets the pretraining dataset carries, else its validation perplexity."""
    held_out = tuple(task for task in supported_tasks(provided) if task != VALID_PPL)
    return held_out or (VALID_PPL,)


def evaluate(config: InstructEvalConfig, step_file: str) -> Results:
    """The step: score the tuned checkpoint and its input model, compare with the baseline Results when given, and
    save the Results in the step's output directory (``step_file``: the calling step module's ``__file__``)."""
    from nemotron.data.artifacts import Dataset
    from nemotron.evaluation import baseline as baselines
    from nemotron.evaluation.harness import go_offline
    from nemotron.heartbeat import Heartbeat

    carried = carried_by(Checkpoint, config.checkpoint_path, config.checkpoint_artifact) | carried_by(
        Results, config.baseline_path, config.baseline_artifact, piped=False
    )
    validate(config, Placement.from_environment(), carried)
    checkpoint = Checkpoint.load(path=config.checkpoint_path, tracked_artifact=config.checkpoint_artifact)
    input_model = _input_checkpoint(checkpoint)
    baseline = baselines.load_baseline(config.baseline_path, config.baseline_artifact, Path(input_model.path))
    dataset = Dataset.load(path=checkpoint.dataset_path)
    pretrain_data = Dataset.load(path=input_model.dataset_path)
    if config.regression_tasks is None:  # the Results record the tasks that ran
        config = dataclasses.replace(config, regression_tasks=default_regression_tasks(pretrain_data.provides))
    output_dir = step_output_dir(config, step_file)
    go_offline()
    tasks: dict[str, dict[str, float]] = {}
    flat: dict[str, float] = {}
    num_samples: dict[str, int] = {}
    per_model = 1 + len(config.regression_tasks)  # progress unit: a task of one model (instructions + regression)
    with Heartbeat.for_step(output_dir, STEP, 2 * per_model) as heartbeat:
        heartbeat.beat(0)
        for done, (prefix, model) in enumerate((("", checkpoint), (INPUT_PREFIX, input_model)), start=1):
            scored = _score(config, model, dataset, pretrain_data, output_dir / (prefix.rstrip("/") or "model"))
            tasks |= {f"{prefix}{name}": values for name, values in scored[0].items()}
            flat |= {f"{prefix}{name}": value for name, value in scored[1].items()}
            num_samples |= scored[2] if not prefix else {}
            heartbeat.beat(done * per_model, force=True)
    flat["instruct/gain"] = flat["instruct/exact_match"] - flat[f"{INPUT_PREFIX}instruct/exact_match"]
    lineage = [
        checkpoint.as_lineage(step="training"),
        dataset.as_lineage(step="data_curation"),
        input_model.as_lineage(step="input_model"),
    ]
    return baselines.save_results(
        output_dir,
        checkpoint,
        dataset,
        tasks=tasks,
        num_samples=num_samples,
        metrics=flat,
        config=config_snapshot(config),
        lineage=lineage,
        baseline=baseline,
    )


def _input_checkpoint(checkpoint: Checkpoint) -> Checkpoint:
    from nemotron.errors import UserError

    entries = [e for e in checkpoint.lineage if e.type == "Checkpoint" and e.step == "init_checkpoint"]
    if not entries:
        raise UserError(f"checkpoint {checkpoint.path} has no init_checkpoint in its lineage: give a stage1 Checkpoint")
    return Checkpoint.load(path=entries[0].path)


def _score(config: InstructEvalConfig, checkpoint, dataset, pretrain_data, work_dir: Path):
    """(tasks, flat metrics, samples per task) of one checkpoint: instructions, then the regression tasks."""
    import torch
    from tokenizers import Tokenizer

    from nemotron.data.instruction_tuning import INSTRUCT_FILE
    from nemotron.evaluation.instruct import evaluate_instructions, read_items
    from nemotron.fsutil import atomic_write_text
    from nemotron.log import get_logger
    from nemotron.training.inference import load_for_inference

    torch.manual_seed(config.seed)
    tokenizer = Tokenizer.from_file(str(checkpoint.tokenizer_path))
    max_length = int(checkpoint.model["seq_length"])
    _, forward = load_for_inference(checkpoint, vocab_size=tokenizer.get_vocab_size())
    items = read_items(Path(dataset.eval_dir) / INSTRUCT_FILE, config.limit)
    outcome = evaluate_instructions(forward, tokenizer, items, max_length, config.max_new_tokens)
    work_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(work_dir / "instruct_replies.jsonl", "".join(json.dumps(r) + "\n" for r in outcome.replies))
    flat = outcome.metrics()
    tasks = {"instruct": {k.removeprefix("instruct/"): v for k, v in flat.items()}}
    num_samples = {"instruct": outcome.num_samples}
    get_logger(__name__).info("%s: instruct exact match %.3f", checkpoint.path, outcome.exact_match)
    if config.regression_tasks:
        regression = _regression(config, forward, tokenizer, max_length, pretrain_data, work_dir)
        tasks |= regression.tasks
        flat |= regression.flat
        num_samples |= regression.num_samples
    return tasks, flat, num_samples


def _regression(config: InstructEvalConfig, forward, tokenizer, max_length: int, pretrain_data, work_dir: Path):
    from nemotron.evaluation.adapter import CausalLMAdapter
    from nemotron.evaluation.harness import evaluate_tasks
    from nemotron.evaluation.tasks import LocalTaskData

    lm = CausalLMAdapter(forward, tokenizer, max_length=max_length, batch_size=config.batch_size)
    data = LocalTaskData(eval_dir=Path(pretrain_data.eval_dir), valid_path=Path(pretrain_data.valid_path))
    return evaluate_tasks(lm, list(config.regression_tasks), data, work_dir, limit=config.limit, seed=config.seed)
