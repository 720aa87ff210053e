"""lm-eval run offline on the recipe's run-time tasks, with a real tiny model; task-name errors are one line."""

from __future__ import annotations

import json
import math

import pytest

from nemotron.evaluation.tasks import LOCAL_TASKS, LocalTaskData, TaskError, chance_accuracy, split_task_names


@pytest.fixture(scope="module")
def toy_outcome(toy_world, tmp_path_factory):
    from nemotron.evaluation.adapter import CausalLMAdapter
    from nemotron.evaluation.harness import evaluate_tasks

    root, tokenizer, model, max_length = toy_world
    lm = CausalLMAdapter(model, tokenizer, max_length=max_length, batch_size=4)
    data = LocalTaskData(root / "eval", root / "valid.parquet")
    work = tmp_path_factory.mktemp("eval_work")
    return lm, data, work, evaluate_tasks(lm, list(LOCAL_TASKS), data, work)


def test_local_tasks_report_learned_facts_above_chance(toy_outcome):
    _, _, _, outcome = toy_outcome
    assert set(outcome.tasks) == set(LOCAL_TASKS)
    assert outcome.num_samples == {"facts_mc": 8, "facts_gen": 8, "valid_ppl": 6}
    assert outcome.flat["facts_mc/chance_acc"] == pytest.approx(0.25)
    # The toy model was trained on these facts in other phrasings; a wrong adapter or task scores near chance.
    assert outcome.flat["facts_mc/acc"] >= 0.75
    assert outcome.flat["facts_gen/exact_match"] >= 0.5
    for name in ("valid_ppl/word_perplexity", "valid_ppl/bits_per_byte", "valid_perplexity"):
        assert math.isfinite(outcome.flat[name]) and outcome.flat[name] > 0
    assert "facts_mc/sample_len" not in outcome.flat


def test_valid_perplexity_is_per_token_over_the_validation_documents(toy_outcome):
    import pyarrow.parquet as pq
    from lm_eval.api.instance import Instance

    lm, data, _, outcome = toy_outcome
    texts = pq.read_table(data.valid_path).column("text").to_pylist()
    requests = [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts)]
    logprob = sum(lm.loglikelihood_rolling(requests))
    tokens = sum(len(lm.tok_encode(t)) for t in texts)
    assert outcome.flat["valid_perplexity"] == pytest.approx(math.exp(-logprob / tokens), rel=1e-5)
    assert outcome.flat["valid_perplexity"] < lm.vocab_size / 4  # far better than a uniform guess


def test_task_yamls_are_written_with_absolute_data_paths(toy_outcome):
    _, data, work, _ = toy_outcome
    written = sorted(p.name for p in (work / "lm_eval_tasks").glob("*.yaml"))
    assert written == sorted(f"{t}.yaml" for t in LOCAL_TASKS)
    mc = dict(line.split(": ", 1) for line in (work / "lm_eval_tasks" / "facts_mc.yaml").read_text().splitlines())
    files = json.loads(mc["dataset_kwargs"])["data_files"]["test"]
    assert files == str(data.facts_mc.resolve()) and files.startswith("/")


def test_limit_applies_to_every_task_and_to_chance(toy_outcome, tmp_path):
    from nemotron.evaluation.harness import evaluate_tasks

    lm, data, _, _ = toy_outcome
    outcome = evaluate_tasks(lm, ["facts_mc"], data, tmp_path, limit=3)
    assert outcome.num_samples == {"facts_mc": 3}
    assert set(outcome.tasks) == {"facts_mc"}
    assert outcome.flat["facts_mc/chance_acc"] == chance_accuracy(data.facts_mc, 3)


@pytest.fixture(scope="module")
def manager_with_benchmarks(toy_outcome):
    """lm-eval's built-in task index plus our local tasks (indexing ~10k YAMLs is the slow part: build it once)."""
    from lm_eval.tasks import TaskManager

    _, _, work, _ = toy_outcome
    return TaskManager(include_path=str(work / "lm_eval_tasks"), include_defaults=True)


@pytest.mark.slow
def test_unknown_task_names_the_closest_valid_one(manager_with_benchmarks):
    from nemotron.evaluation.harness import _build_task

    with pytest.raises(TaskError, match=r"unknown task 'facts_mcq': did you mean 'facts_mc'\?"):
        _build_task(manager_with_benchmarks, "facts_mcq")
    assert _build_task(manager_with_benchmarks, "facts_mc").task_name == "facts_mc"


@pytest.mark.slow
def test_benchmark_without_local_data_names_the_missing_dataset(manager_with_benchmarks):
    from nemotron.evaluation.harness import _build_task, go_offline

    go_offline()
    with pytest.raises(TaskError) as err:
        _build_task(manager_with_benchmarks, "hellaswag")
    message = str(err.value)
    assert "'hellaswag' needs dataset 'Rowan/hellaswag'" in message and "offline" in message
    assert "\n" not in message


def test_task_list_errors():
    assert split_task_names(["hellaswag", "facts_mc"]) == (["facts_mc"], ["hellaswag"])
    with pytest.raises(TaskError, match="listed twice"):
        split_task_names(["facts_mc", "facts_mc"])
    with pytest.raises(TaskError, match="no tasks given"):
        split_task_names([])


def test_missing_task_data_is_a_user_error(tmp_path):
    from nemotron.evaluation.tasks import write_local_tasks

    with pytest.raises(TaskError, match="facts_mc.jsonl does not exist"):
        write_local_tasks(tmp_path / "tasks", LocalTaskData(tmp_path / "eval", tmp_path / "valid.parquet"))


def test_a_dataset_without_held_out_facts_feeds_validation_perplexity_only(tmp_path):
    from nemotron.evaluation.tasks import check_supported, supported_tasks, write_local_tasks

    assert supported_tasks([]) == ("valid_ppl",)  # a user corpus: a validation split, no held-out facts
    assert supported_tasks(["facts_gen", "facts_mc"]) == LOCAL_TASKS
    check_supported(["valid_ppl", "hellaswag"], [])  # a benchmark's data is not the dataset's to provide
    with pytest.raises(TaskError, match=r"--tasks facts_gen: .* it provides valid_ppl$"):
        check_supported(["valid_ppl", "facts_gen"], [])
    valid = tmp_path / "valid.parquet"
    valid.write_bytes(b"")
    written = write_local_tasks(tmp_path / "tasks", LocalTaskData(tmp_path / "eval", valid), ["valid_ppl"])
    assert sorted(p.name for p in written.iterdir()) == ["valid_ppl.yaml"]
