"""Preference evaluation, the building block of a recipe's alignment evaluation step: preference accuracy and reward
margin on held-out pairs, for the aligned model AND its input model (found through the checkpoint's lineage), so the
gain from DPO is recorded in one artifact.

Metrics: ``preference/accuracy`` (share of held-out pairs with logp(chosen) > logp(rejected), summed over response
tokens), ``preference/logp_margin`` (mean logp(chosen) - logp(rejected)), ``preference/reward_margin`` and
``preference/reward_accuracy`` (DPO's implicit reward beta * log(pi/ref), chosen minus rejected, against the training
reference); the same with an ``input_model/`` prefix for the starting checkpoint, and ``preference/accuracy_gain``.
When the input model was instruction-tuned, its held-out instructions are re-run too (``instruct/exact_match``,
``input_model/instruct/exact_match``): alignment should not cost instruction following. Given the previous stage's
Results of the input model (``baseline_path``, wired by the launcher), every shared metric is also compared with it
(``vs_baseline/...``) and it is recorded in lineage.

A recipe's step module is this block under its own name: ``Config`` = ``PreferenceEvalConfig``, ``validate``, and
``main`` = ``evaluate(config, __file__)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nemotron.evaluation.artifacts import Results
from nemotron.evaluation.settings import ComparedEvalConfig, check_inputs, check_sizes
from nemotron.step import Placement, carried_by
from nemotron.training.artifacts import Checkpoint

STEP = "evaluation"


@dataclass
class PreferenceEvalConfig(ComparedEvalConfig):
    """Evaluate a DPO Checkpoint (and its input model) on held-out preference pairs."""

    limit: int | None = None
    """At most this many held-out pairs (all when unset)."""
    batch_size: int = 32


def validate(config: PreferenceEvalConfig, placement: Placement, carried: frozenset[str]) -> None:
    """Every check before work: at the start of ``main``, and by the launcher at plan time."""
    check_sizes(config.limit, config.batch_size)
    check_inputs(config)


def evaluate(config: PreferenceEvalConfig, step_file: str) -> Results:
    """The step: score the aligned checkpoint, its input model and the reference on the held-out pairs, compare with
    the baseline Results when given, and save the Results in the step's output directory (``step_file``: the calling
    step module's ``__file__``)."""
    from nemotron.data.preference_artifacts import PreferenceDataset
    from nemotron.data.preferences import load_tokenized_pairs
    from nemotron.evaluation import baseline as baselines
    from nemotron.heartbeat import Heartbeat
    from nemotron.step import config_snapshot, step_output_dir

    carried = carried_by(Checkpoint, config.checkpoint_path, config.checkpoint_artifact) | carried_by(
        Results, config.baseline_path, config.baseline_artifact, piped=False
    )
    validate(config, Placement.from_environment(), carried)
    checkpoint = Checkpoint.load(path=config.checkpoint_path, tracked_artifact=config.checkpoint_artifact)
    dataset = PreferenceDataset.load(path=_lineage_path(checkpoint, "data_curation"))
    input_model = Checkpoint.load(path=_lineage_path(checkpoint, "init_checkpoint"))
    baseline = baselines.load_baseline(config.baseline_path, config.baseline_artifact, Path(input_model.path))
    reference_path = checkpoint.config.get("reference_path") or input_model.path
    reference = Checkpoint.load(path=reference_path)
    beta = float(checkpoint.config.get("beta", 0.1))
    output_dir = step_output_dir(config, step_file)
    pairs = load_tokenized_pairs(dataset.heldout_path)[: config.limit]
    instruct_items = _instruct_items(checkpoint, config.limit)

    same = Path(reference.path).resolve() == Path(input_model.path).resolve()
    # progress unit: a task of one model (the preference pairs; the instructions if any; the reference's pairs)
    per_model = 2 if instruct_items else 1
    total = 2 * per_model + (0 if same else 1)
    with Heartbeat.for_step(output_dir, STEP, total) as heartbeat:
        heartbeat.beat(0)
        policy_logps, policy_instruct = _score(checkpoint, pairs, instruct_items, config.batch_size)
        heartbeat.beat(per_model, force=True)
        input_logps, input_instruct = _score(input_model, pairs, instruct_items, config.batch_size)
        heartbeat.beat(2 * per_model, force=True)
        reference_logps = input_logps if same else _score(reference, pairs, [], config.batch_size)[0]
        heartbeat.beat(total, force=True)
    from nemotron.training.dpo import preference_metrics

    tasks = {
        "preference": preference_metrics(policy_logps, reference_logps, beta),
        "input_model/preference": preference_metrics(input_logps, reference_logps, beta),
    }
    num_samples = {task: len(pairs) for task in tasks}
    if instruct_items:
        tasks["instruct"] = {"exact_match": policy_instruct.exact_match}
        tasks["input_model/instruct"] = {"exact_match": input_instruct.exact_match}
        num_samples |= {"instruct": len(instruct_items), "input_model/instruct": len(instruct_items)}
    metrics = {f"{task}/{name}": value for task, values in tasks.items() for name, value in values.items()}
    metrics["preference/accuracy_gain"] = metrics["preference/accuracy"] - metrics["input_model/preference/accuracy"]
    lineage = [checkpoint.as_lineage(step="training")] + checkpoint.lineage
    return baselines.save_results(
        output_dir,
        checkpoint,
        dataset,
        tasks=tasks,
        num_samples=num_samples,
        metrics=metrics,
        config=config_snapshot(config),
        lineage=lineage,
        baseline=baseline,
    )


def _lineage_path(checkpoint, step: str) -> Path:
    from nemotron.errors import UserError

    for entry in checkpoint.lineage:
        if entry.step == step:
            return entry.path
    raise UserError(f"checkpoint {checkpoint.path} has no {step!r} input in its lineage: give a DPO training output")


def _instruct_items(checkpoint, limit: int | None) -> list[dict]:
    """The held-out instructions of the input model's tuning data when it was instruction-tuned, else none."""
    from nemotron.data.instruction_tuning import INSTRUCT_FILE
    from nemotron.evaluation.instruct import read_items

    path = Path(checkpoint.dataset_path) / "eval" / INSTRUCT_FILE
    return read_items(path, limit) if path.is_file() else []


def _score(checkpoint, pairs: list[dict], instruct_items: list[dict], batch_size: int):
    """Held-out pair log-probs ``[N, 2]`` and the instruction outcome (None without items) of one checkpoint."""
    from tokenizers import Tokenizer

    from nemotron.evaluation.instruct import evaluate_instructions
    from nemotron.training.dpo import pair_logps
    from nemotron.training.inference import load_for_inference

    tokenizer = Tokenizer.from_file(str(checkpoint.tokenizer_path))
    model, forward = load_for_inference(checkpoint, vocab_size=tokenizer.get_vocab_size())
    logps = pair_logps(model, pairs, 0, batch_size, next(model.parameters()).device)
    if not instruct_items:
        return logps, None
    max_length = int(checkpoint.model["seq_length"])
    return logps, evaluate_instructions(forward, tokenizer, instruct_items, max_length)
