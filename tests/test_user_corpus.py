"""Bring your own corpus: nano2 stage0 on a directory of plain .txt files (no embedded world), through the real CLI.

A user corpus has a validation split but no held-out facts. The plan knows that before anything runs (data_curation's
``provides``): evaluation defaults to what the data can feed (validation perplexity), and a fact task asked for is
refused at ``--dry-run`` in one line, whether the dataset is planned in the same run or already on disk.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from pathlib import Path

import pytest
from launcher_env import LauncherEnv

STAGE0 = ("stage0_pretrain.data_curation", "stage0_pretrain.training", "stage0_pretrain.evaluation")
# Short on purpose: this test is about what the data provides, the stage's own tests assert learning.
SHORT = (
    "data_curation.vocab_size=512",
    "training.train_iters=10",
    "training.warmup_iters=1",
    "training.global_batch_size=8",
    "training.micro_batch_size=8",
)
ADJECTIVES = ["quiet", "bright", "old", "young", "small", "large", "green", "early", "late", "gentle", "careful"]
NOUNS = ["farmer", "teacher", "river", "garden", "market", "village", "baker", "harbour", "lantern", "orchard"]
VERBS = ["watches", "follows", "visits", "paints", "repairs", "crosses", "finds", "remembers"]
PLACES = ["hill", "road", "station", "library", "forest", "square", "valley", "meadow"]
TIMES = ["morning", "evening", "spring", "autumn"]


def write_corpus(directory: Path, files: int = 120, sentences: int = 4, seed: int = 7) -> Path:
    """Deterministic English-like prose, one document per file (480 lines by default)."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(files):
        lines = [
            f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.choice(VERBS)} the {rng.choice(NOUNS)} "
            f"near the {rng.choice(PLACES)} in the {rng.choice(TIMES)}."
            for _ in range(sentences)
        ]
        (directory / f"part{index:03d}.txt").write_text("\n".join(lines) + "\n")
    return directory


def _metadata(directory: str | Path) -> dict:
    return json.loads((Path(directory) / "metadata.json").read_text())


def _assert_refused(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(fragment in lines[0] for fragment in fragments), lines[0]
    assert result.stdout == ""


def test_a_user_corpus_plans_validation_perplexity_only(launcher_env: LauncherEnv, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", files=3)
    sources = f"data_curation.sources={corpus}"
    planned = launcher_env.launch("nano2.stage0", "--dry-run", sources)
    assert planned.returncode == 0, planned.stderr
    # no --tasks: the default is what the dataset provides, read from it when the evaluation starts
    assert "--tasks" not in planned.document["jobs"]["stage0_pretrain.evaluation"]["command"]

    for task in ("facts_mc", "facts_gen"):
        refused = launcher_env.launch("nano2.stage0", "--dry-run", sources, f"evaluation.tasks=valid_ppl,{task}")
        _assert_refused(refused, f"--tasks {task}", "it provides valid_ppl")
    # stage1 re-runs stage0's tasks on stage0's data: the same refusal reaches it through the plan
    refused = launcher_env.launch(
        "nano2", "--dry-run", f"stage0.{sources}", "stage1.evaluation.regression_tasks=facts_mc"
    )
    _assert_refused(refused, "stage1_instruction_tuning.evaluation", "--regression-tasks facts_mc")
    # the embedded world carries the facts: the same request plans
    assert launcher_env.launch("nano2.stage0", "--dry-run", "evaluation.tasks=facts_mc").returncode == 0
    assert launcher_env.files() == []


def test_recorded_provides_follows_lineage(tmp_path: Path) -> None:
    from nemotron.artifact import recorded_provides

    def artifact(name: str, lineage: list[str], **fields) -> Path:
        directory = tmp_path / name
        directory.mkdir()
        entries = [{"type": "X", "path": str(tmp_path / parent)} for parent in lineage]
        (directory / "metadata.json").write_text(json.dumps({"path": str(directory), "lineage": entries, **fields}))
        return directory

    artifact("world", [], provides=["facts_mc", "facts_gen"])
    artifact("instructions", [], provides=["instruct"])
    artifact("pretrained", ["world"])
    tuned = artifact("tuned", ["instructions", "pretrained", "missing"])
    assert recorded_provides(tuned) == {"facts_mc", "facts_gen", "instruct"}
    assert recorded_provides(artifact("user", [], provides=[])) == frozenset()
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "metadata.json").write_text("{")
    assert recorded_provides(tmp_path / "corrupt") == frozenset()


@pytest.mark.slow
def test_nano2_stage0_on_a_user_corpus_runs_and_reports_validation_perplexity(
    launcher_env: LauncherEnv, tmp_path: Path
) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    started = time.perf_counter()
    run = launcher_env.launch(
        "nano2.stage0", "--executor", "local", "--scale", "tiny", f"data_curation.sources={corpus}", *SHORT
    )
    print(f"user-corpus stage0 launch took {time.perf_counter() - started:.1f} s", file=sys.stderr)
    assert run.returncode == 0, run.stderr[-4000:]
    steps = run.document["steps"]
    assert {name: step["state"] for name, step in steps.items()} == dict.fromkeys(STAGE0, "completed")

    dataset = _metadata(steps[STAGE0[0]]["artifact"])
    assert dataset["provides"] == [] and dataset["metrics"]["valid_documents"] > 0
    results = _metadata(steps[STAGE0[2]]["artifact"])
    assert list(results["tasks"]) == ["valid_ppl"]
    assert results["config"]["tasks"] == ["valid_ppl"]  # the tasks that ran, derived from the dataset
    assert math.isfinite(results["metrics"]["valid_perplexity"]) and results["metrics"]["valid_perplexity"] > 1
    assert not [name for name in results["metrics"] if name.startswith("facts_")]

    # the dataset is on disk now: evaluating its checkpoint alone reads what it provides from the lineage
    refused = launcher_env.launch("nano2.stage0.evaluation", "--dry-run", "evaluation.tasks=facts_gen")
    _assert_refused(refused, "--tasks facts_gen", "it provides valid_ppl")
