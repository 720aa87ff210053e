"""nano2 stage1 end to end: the stage module on stage0's tiny checkpoint, the steps as files in a real shell pipe.

One tiny stage1 run (session-scoped, on top of the shared stage0 run) serves every assertion on learning.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from stage_runs import assert_steps_reported_progress, run_in

from nemotron.artifact import STDOUT_SCHEMA

STAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "nemotron" / "recipes" / "nano2" / "stage1_instruction_tuning"
MODULE = "nemotron.recipes.nano2.stage1_instruction_tuning"


@pytest.mark.slow
def test_stage_prints_three_wired_artifacts_with_lineage_back_to_stage0(stage0_tiny_run, stage1_tiny_run):
    _, stage0 = stage0_tiny_run
    tmp, artifacts = stage1_tiny_run
    assert list(artifacts) == ["data_curation", "training", "evaluation"]
    data, train, results = (artifacts[k] for k in artifacts)
    assert [a["type"] for a in (data, train, results)] == ["Dataset", "Checkpoint", "Results"]
    stage0_ckpt, stage0_data = stage0["training"]["path"], stage0["data_curation"]["path"]
    assert [(e["type"], e["path"]) for e in data["lineage"]] == [("Checkpoint", stage0_ckpt)]
    assert [(e["step"], e["path"]) for e in train["lineage"]] == [
        ("data_curation", data["path"]),
        ("init_checkpoint", stage0_ckpt),
    ]
    assert [(e["step"], e["path"]) for e in results["lineage"]] == [
        ("training", train["path"]),
        ("data_curation", data["path"]),
        ("input_model", stage0_ckpt),
        ("baseline", stage0["evaluation"]["path"]),
    ]
    # Walking back from the stage1 Results reaches stage0's dataset through stage0's checkpoint.
    stage0_meta = json.loads((Path(stage0_ckpt) / "metadata.json").read_text())
    assert stage0_meta["lineage"][0]["path"] == stage0_data
    assert data["vocab_size"] == stage0["data_curation"]["vocab_size"]
    assert (Path(data["path"]) / "tokenizer.json").read_bytes() == (Path(stage0_data) / "tokenizer.json").read_bytes()
    for artifact in (data, train, results):
        assert (artifact["config"]["scale"], artifact["config"]["seed"]) == ("tiny", 1234)
    assert_steps_reported_progress(artifacts)


@pytest.mark.slow
def test_tuned_model_follows_held_out_instructions_better_than_stage0(stage1_tiny_run):
    _, artifacts = stage1_tiny_run
    metrics = artifacts["evaluation"]["metrics"]
    tuned, base = metrics["instruct/exact_match"], metrics["input_model/instruct/exact_match"]
    assert tuned > base + 0.2, metrics
    assert metrics["instruct/gain"] == pytest.approx(tuned - base)
    assert artifacts["evaluation"]["num_samples"]["instruct"] == 100  # one held-out question per world fact
    # stage0's tasks ran on both models (regression is measured, not asserted away).
    for prefix in ("", "input_model/"):
        assert 0.0 <= metrics[f"{prefix}facts_mc/acc"] <= 1.0
        assert 0.0 <= metrics[f"{prefix}facts_gen/exact_match"] <= 1.0
    train = artifacts["training"]["metrics"]
    assert train["valid_loss"] < train["init_loss"], train  # SFT lowered the held-out assistant-token loss
    replies = Path(artifacts["evaluation"]["path"]) / "model" / "instruct_replies.jsonl"
    assert sum(json.loads(line)["correct"] for line in replies.read_text().splitlines()) == round(tuned * 100)


@pytest.mark.slow
def test_regression_is_measured_against_stage0s_own_results(stage0_tiny_run, stage1_tiny_run):
    _, stage0 = stage0_tiny_run
    _, artifacts = stage1_tiny_run
    metrics, baseline = artifacts["evaluation"]["metrics"], stage0["evaluation"]["metrics"]
    scores = {name for name in baseline if not name.endswith(("_stderr", "/chance_acc"))} & set(metrics)
    assert {"facts_mc/acc", "facts_gen/exact_match"} <= scores
    for name in scores:
        assert metrics[f"vs_baseline/{name}"] == pytest.approx(metrics[name] - baseline[name]), name
    assert "vs_baseline/facts_mc/chance_acc" not in metrics and "vs_baseline/facts_mc/acc_stderr" not in metrics
    assert not any(name.startswith("vs_baseline/valid_ppl") for name in metrics)  # not re-run by stage1
    # stage1 re-scored its input model on the same items: stage0's own figure, give or take ties (100 items).
    assert metrics["input_model/facts_mc/acc"] == pytest.approx(baseline["facts_mc/acc"], abs=0.02)


@pytest.mark.slow
def test_steps_as_files_in_a_real_shell_pipe_from_stage0_json(stage0_tiny_run, tmp_path):
    _, stage0 = stage0_tiny_run
    out = tmp_path / "pipe"
    stage0_json = tmp_path / "stage0.json"
    stage0_json.write_text(json.dumps({"schema": STDOUT_SCHEMA, "artifacts": {"training": stage0["training"]}}))
    pipeline = (
        f"cat {stage0_json} | {sys.executable} {STAGE_DIR / 'data_curation.py'} --output-dir {out / 'data'}"
        f" | {sys.executable} {STAGE_DIR / 'training.py'} --train-iters 3 --warmup-iters 1 --output-dir {out / 'train'}"
        f" | {sys.executable} {STAGE_DIR / 'evaluation.py'} --limit 4 --regression-tasks facts_mc"
        f" --output-dir {out / 'eval'}"
    )
    done = run_in(tmp_path, ["bash", "-o", "pipefail", "-c", pipeline])
    assert done.returncode == 0, done.stderr[-3000:]
    (results,) = json.loads(done.stdout)["artifacts"].values()
    assert results["checkpoint_path"] == str(out / "train")
    assert results["num_samples"] == {"instruct": 4, "facts_mc": 4}
    # training found its init checkpoint through the dataset's lineage (stage0's checkpoint).
    train_meta = json.loads((out / "train" / "metadata.json").read_text())
    assert train_meta["lineage"][1]["path"] == stage0["training"]["path"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"messages": [{"role": "user", "content": "hi"}]}\n', "no 'assistant' message"),
        ('{"messages": [{"role": "robot", "content": "hi"}]}\n', "needs a 'role' among system, user, assistant"),
        ("not json\n", "not valid JSON"),
    ],
)
def test_bad_chat_source_is_one_line_exit_2(stage0_tiny_run, tmp_path, content, message):
    _, stage0 = stage0_tiny_run
    source = tmp_path / "chat.jsonl"
    source.write_text(content)
    args = [
        "--checkpoint-path",
        stage0["training"]["path"],
        "--sources",
        str(source),
        "--output-dir",
        str(tmp_path / "d"),
    ]
    done = run_in(tmp_path, [sys.executable, str(STAGE_DIR / "data_curation.py"), *args], stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1].startswith("error: ") and message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "d" / "metadata.json").exists()


@pytest.mark.slow
def test_chat_jsonl_source_is_curated_with_assistant_only_mask(stage0_tiny_run, tmp_path):
    import numpy as np

    from nemotron.recipes.nano2.stage1_instruction_tuning.data_curation import Config, main

    _, stage0 = stage0_tiny_run
    source = tmp_path / "chat.jsonl"
    conversations = [
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": f"Say yes {i} times."},
            {"role": "assistant", "content": "yes"},
        ]
        for i in range(40)
    ]
    source.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations))
    config = Config(checkpoint_path=Path(stage0["training"]["path"]), sources=(str(source),), output_dir=tmp_path / "d")
    dataset = main(config)
    tokens, mask = np.load(f"{dataset.train_prefix}.tokens.npy"), np.load(f"{dataset.train_prefix}.loss_mask.npy")
    assert tokens.shape[1] == 129  # stage0's tiny seq_length + 1
    from tokenizers import Tokenizer

    reply_tokens = len(Tokenizer.from_file(str(dataset.tokenizer_path)).encode(" yes").ids) + 1  # + closing EOD
    assert dataset.metrics["assistant_tokens"] == mask.sum() == reply_tokens * dataset.num_examples
    assert dataset.num_examples + dataset.metrics["valid_conversations"] == 40


def test_stage_package_import_is_light():
    code = (
        f"import sys, {MODULE} as s, {MODULE}.evaluation, {MODULE}.training, {MODULE}.data_curation;"
        "heavy = {'torch', 'lm_eval', 'megatron', 'pyarrow', 'tokenizers'} & {m.split('.')[0] for m in sys.modules};"
        "assert not heavy, heavy; print(s.STEPS)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "data_curation" in done.stdout


def test_stage_help_shows_init_checkpoint_and_nested_step_configs(tmp_path):
    done = run_in(tmp_path, [sys.executable, "-m", MODULE, "--help"])
    assert done.returncode == 0, done.stderr
    for flag in ("--init-checkpoint-path", "--output-root", "--data.sources", "--train.lr", "--eval.regression-tasks"):
        assert flag in done.stdout


def test_recipe_wires_stage0_checkpoint_into_stage1_curation_and_training():
    from nemotron.declaration import Input
    from nemotron.recipes.nano2.recipe import RECIPE

    stage = RECIPE.stage("stage1")
    assert stage is not None and stage.name == "stage1_instruction_tuning"
    assert stage.step("data_curation").inputs == (Input("checkpoint", "training", stage="stage0_pretrain"),)
    assert Input("init_checkpoint", "training", stage="stage0_pretrain") in stage.step("training").inputs
    assert RECIPE.stage("stage0").step("data_curation").inputs == ()
