"""stage2 of a recipe at --scale tiny for several seeds: stage0, stage1 then stage2 (DPO) per seed; stage2's wall time,
peak RSS, and the preference-accuracy gain over its stage1 input model (figures only).

    uv run python bench/bench_stage2.py                 # nano2, seeds 1 2 3
    uv run python bench/bench_stage2.py --recipe nemotron4
    uv run python bench/bench_stage2.py --seeds 1 --keep /tmp/stage2-runs

Each stage runs as ``python -m nemotron.recipes.<recipe>.<stage> --scale tiny --seed S`` in a child process (stage0 with
``--eval.tasks facts_mc`` only, to save time; stage1 and stage2 each start from the previous stage's training
checkpoint). With ``--keep DIR``, a stage0 or stage1 run already complete in ``DIR/seedS`` (from an earlier bench) is
reused instead of re-run, as stderr says; stage2 always runs. Columns, all from stage2's Results:

    wall_s, peak_rss_mb   the stage2 process: wall time (s) and its own ru_maxrss (MB)
    n_pairs               held-out preference pairs scored
    acc_dpo, acc_input    held-out preference accuracy (share with logp(chosen) > logp(rejected)) of the DPO model /
                          its stage1 input
    reward_margin         mean DPO implicit reward margin (beta * log(pi/ref), chosen minus rejected) on held-out pairs
    em_dpo, em_input      held-out instruction exact match of the DPO model / its stage1 input (alignment should not
                          cost instruction following)

The last line is the smallest preference-accuracy gain (acc_dpo - acc_input) across the seeds.
"""

from __future__ import annotations

from pathlib import Path

from _stage_child import artifact_env, kept_or_run_stage, print_rows, run_seeds, run_stage

COLUMNS = ("seed", "wall_s", "peak_rss_mb", "n_pairs", "acc_dpo", "acc_input", "reward_margin", "em_dpo", "em_input")


def run_seed(seed: int, root: Path, recipe: str) -> dict[str, float]:
    env, out = artifact_env(root), root / f"seed{seed}"
    stage0 = kept_or_run_stage(recipe, "stage0_pretrain", seed, out / "stage0", env, "--eval.tasks", "facts_mc")
    init = stage0.artifacts["training"]["path"]
    tuning = ("stage1_instruction_tuning", seed, out / "stage1", env, "--init-checkpoint-path", init)
    stage1 = kept_or_run_stage(recipe, *tuning)
    init = stage1.artifacts["training"]["path"]
    stage2 = run_stage(recipe, "stage2_alignment", seed, out / "stage2", env, "--init-checkpoint-path", init)
    metrics = stage2.artifacts["evaluation"]["metrics"]
    return {
        "seed": seed,
        "wall_s": stage2.wall_s,
        "peak_rss_mb": stage2.peak_rss_mb,
        "n_pairs": stage2.artifacts["evaluation"]["num_samples"]["preference"],
        "acc_dpo": metrics["preference/accuracy"],
        "acc_input": metrics["input_model/preference/accuracy"],
        "reward_margin": metrics["preference/reward_margin"],
        "em_dpo": metrics["instruct/exact_match"],
        "em_input": metrics["input_model/instruct/exact_match"],
    }


def print_table(rows: list[dict[str, float]]) -> None:
    print_rows(COLUMNS, rows)
    gain = min(r["acc_dpo"] - r["acc_input"] for r in rows)
    print(f"smallest preference-accuracy gain over the stage1 input model: {gain:+.3f}")


if __name__ == "__main__":
    print_table(run_seeds(__doc__, "stage2", run_seed))
