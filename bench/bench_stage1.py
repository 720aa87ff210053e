"""stage1 of a recipe at --scale tiny for several seeds: stage0 then stage1 per seed; stage1's wall time, peak RSS, the
instruction-following gain over its input model (figures only).

    uv run python bench/bench_stage1.py                 # nano2, seeds 1 2 3
    uv run python bench/bench_stage1.py --recipe nemotron4
    uv run python bench/bench_stage1.py --seeds 1 --keep /tmp/stage1-runs

Each stage runs as ``python -m nemotron.recipes.<recipe>.<stage> --scale tiny --seed S`` in a child process; peak RSS
is the stage1 child's ``ru_maxrss``. Columns: held-out instruction exact match of the tuned and the stage0 model,
stage0's held-out MC accuracy before/after tuning (regression), SFT valid loss on held-out replies vs. the initial one.
"""

from __future__ import annotations

from pathlib import Path

from _stage_child import artifact_env, print_rows, run_seeds, run_stage

COLUMNS = ("seed", "wall_s", "peak_rss_mb", "em_tuned", "em_input", "mc_tuned", "mc_input", "valid_loss", "init_loss")


def run_seed(seed: int, root: Path, recipe: str) -> dict[str, float]:
    env, out = artifact_env(root), root / f"seed{seed}"
    stage0 = run_stage(recipe, "stage0_pretrain", seed, out / "stage0", env, "--eval.tasks", "facts_mc")
    init = stage0.artifacts["training"]["path"]
    stage1 = run_stage(recipe, "stage1_instruction_tuning", seed, out / "stage1", env, "--init-checkpoint-path", init)
    evaluation, training = stage1.artifacts["evaluation"]["metrics"], stage1.artifacts["training"]["metrics"]
    return {
        "seed": seed,
        "wall_s": stage1.wall_s,
        "peak_rss_mb": stage1.peak_rss_mb,
        "em_tuned": evaluation["instruct/exact_match"],
        "em_input": evaluation["input_model/instruct/exact_match"],
        "mc_tuned": evaluation["facts_mc/acc"],
        "mc_input": evaluation["input_model/facts_mc/acc"],
        "valid_loss": training["valid_loss"],
        "init_loss": training["init_loss"],
    }


def print_table(rows: list[dict[str, float]]) -> None:
    print_rows(COLUMNS, rows)
    print(f"smallest exact-match gain over the input model: {min(r['em_tuned'] - r['em_input'] for r in rows):+.3f}")


if __name__ == "__main__":
    print_table(run_seeds(__doc__, "stage1", run_seed))
