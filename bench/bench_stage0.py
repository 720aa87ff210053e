"""stage0 of a recipe at --scale tiny for several seeds: wall time, peak RSS, and whether the model learned.

    uv run python bench/bench_stage0.py                 # nano2, seeds 1 2 3
    uv run python bench/bench_stage0.py --recipe nemotron4
    uv run python bench/bench_stage0.py --seeds 1 --keep /tmp/stage0-runs

Each seed runs ``python -m nemotron.recipes.<recipe>.stage0_pretrain --scale tiny --seed S`` as a child process; its
peak RSS is the child's ``ru_maxrss`` (the largest resident set of the stage process). Prints one row per seed and a
mean row: held-out multiple-choice accuracy against chance, greedy exact match, validation perplexity, and losses.
"""

from __future__ import annotations

from pathlib import Path

from _stage_child import artifact_env, print_rows, run_seeds, run_stage

COLUMNS = ("seed", "wall_s", "peak_rss_mb", "mc_acc", "chance", "gen_em", "valid_ppl", "valid_loss", "unigram_loss")


def run_seed(seed: int, root: Path, recipe: str) -> dict[str, float]:
    run = run_stage(recipe, "stage0_pretrain", seed, root / f"seed{seed}", artifact_env(root))
    evaluation, training = run.artifacts["evaluation"]["metrics"], run.artifacts["training"]["metrics"]
    return {
        "seed": seed,
        "wall_s": run.wall_s,
        "peak_rss_mb": run.peak_rss_mb,
        "mc_acc": evaluation["facts_mc/acc"],
        "chance": evaluation["facts_mc/chance_acc"],
        "gen_em": evaluation["facts_gen/exact_match"],
        "valid_ppl": evaluation["valid_perplexity"],
        "valid_loss": training["valid_loss"],
        "unigram_loss": training["unigram_loss"],
    }


def print_table(rows: list[dict[str, float]]) -> None:
    print_rows(COLUMNS, rows)
    if len(rows) > 1:
        margin = min(r["mc_acc"] - r["chance"] for r in rows)
        print(f"smallest margin of held-out MC accuracy over chance across seeds: {margin:+.3f}")


if __name__ == "__main__":
    print_table(run_seeds(__doc__, "stage0", run_seed))
