"""The second recipe, nemotron4 (a dense Transformer after Nemotron-4 15B), built only from the kit: its whole tiny
run through the launcher learns (stage0 beats chance on held-out facts, stage1 beats stage0 on held-out
instructions, stage2's DPO prefers the held-out chosen replies by a wider margin than stage1 did), and its 9-job DAG
runs on the real test Slurm cluster chained with afterok."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
STAGES = ("stage0_pretrain", "stage1_instruction_tuning", "stage2_alignment")
JOBS = [f"{stage}.{step}" for stage in STAGES for step in ("data_curation", "training", "evaluation")]


def metadata(path: str | Path) -> dict:
    return json.loads((Path(path) / "metadata.json").read_text())


def test_the_tiny_recipe_learns_through_the_launcher(launcher_env) -> None:
    done = launcher_env.launch("nemotron4", "--executor", "local", "--scale", "tiny", timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = done.document["steps"]
    assert list(steps) == JOBS and {s["state"] for s in steps.values()} == {"completed"}

    checkpoint = metadata(steps["stage0_pretrain.training"]["artifact"])
    assert checkpoint["model"]["family"] == "gpt" and checkpoint["substitutions"] == []  # dense: nothing replaced
    assert checkpoint["metrics"]["valid_loss"] < checkpoint["metrics"]["unigram_loss"] - 0.5, checkpoint["metrics"]
    pretrained = metadata(steps["stage0_pretrain.evaluation"]["artifact"])["metrics"]
    assert pretrained["facts_mc/acc"] >= pretrained["facts_mc/chance_acc"] + 0.15, pretrained

    tuned = metadata(steps["stage1_instruction_tuning.evaluation"]["artifact"])["metrics"]
    assert tuned["instruct/exact_match"] > tuned["input_model/instruct/exact_match"] + 0.1, tuned
    sft = metadata(steps["stage1_instruction_tuning.training"]["artifact"])["metrics"]
    assert sft["valid_loss"] < sft["init_loss"], sft
    assert "vs_baseline/facts_mc/acc" in tuned  # compared with stage0's own Results of its input model

    aligned = metadata(steps["stage2_alignment.evaluation"]["artifact"])["metrics"]
    # The dense tiny model already prefers every held-out correct fact after SFT (accuracy 1.0, measured), so DPO
    # shows in how far it prefers them: a wider log-prob margin than its input's, its implicit reward mostly right.
    assert aligned["preference/accuracy"] >= aligned["input_model/preference/accuracy"], aligned
    assert aligned["preference/logp_margin"] > aligned["input_model/preference/logp_margin"], aligned
    assert aligned["preference/reward_accuracy"] > 0.5 and aligned["preference/reward_margin"] > 0, aligned
    dpo = metadata(steps["stage2_alignment.training"]["artifact"])
    assert dpo["model"] == metadata(steps["stage1_instruction_tuning.training"]["artifact"])["model"]  # its own model
    assert "vs_baseline/instruct/exact_match" in aligned  # compared with stage1's Results of its input model


@pytest.mark.slurm
def test_the_nine_job_dag_runs_on_slurm_chained_with_afterok(slurm_cluster, tmp_path) -> None:
    from test_slurm_nano2 import _launcher_env

    env = _launcher_env(tmp_path, slurm_cluster)
    short = ["stage0.training.train_iters=20", "stage1.training.train_iters=10", "stage2.training.train_iters=5"]
    short += ["evaluation.limit=10"] + [f"stage{i}.training.warmup_iters=2" for i in range(3)]
    done = env.launch("nemotron4", "--profile", "slurm-test", "--scale", "tiny", *short, timeout=2400)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = done.document["steps"]
    assert list(steps) == JOBS and {s["state"] for s in steps.values()} == {"completed"}
    run_dir = Path(done.document["run_dir"])
    for job, upstream in [
        ("stage0_pretrain.training", "stage0_pretrain.data_curation"),
        ("stage1_instruction_tuning.data_curation", "stage0_pretrain.training"),
        ("stage1_instruction_tuning.training", "stage1_instruction_tuning.data_curation"),
        ("stage1_instruction_tuning.evaluation", "stage0_pretrain.evaluation"),  # its baseline
        ("stage2_alignment.training", "stage1_instruction_tuning.training"),
    ]:
        script = (run_dir / "sbatch" / f"{job}.sbatch").read_text()
        dependency = next(line for line in script.splitlines() if "--dependency=afterok:" in line)
        assert steps[upstream]["job_id"] in dependency.split("afterok:")[1], (job, dependency)
    tuned = metadata(steps["stage1_instruction_tuning.training"]["artifact"])
    assert tuned["model"]["family"] == "gpt" and tuned["num_steps"] == 10
    init = next(entry for entry in tuned["lineage"] if entry["step"] == "init_checkpoint")
    assert init["path"] == steps["stage0_pretrain.training"]["artifact"]
