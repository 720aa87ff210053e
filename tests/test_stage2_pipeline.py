"""nano2 stage2 end to end: DPO on stage1's tiny checkpoint via the stage module, the steps as files in a real pipe.

One tiny stage2 run (session-scoped, on top of the shared stage0 -> stage1 runs) serves every assertion on learning.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from stage_runs import assert_steps_reported_progress, run_in, stage_env

from nemotron.artifact import STDOUT_SCHEMA

STAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "nemotron" / "recipes" / "nano2" / "stage2_alignment"
MODULE = "nemotron.recipes.nano2.stage2_alignment"


@pytest.fixture(scope="session")
def stage2_tiny_run(stage1_tiny_run, tmp_path_factory):
    """stage2 at --scale tiny on ``stage1_tiny_run``: ``(tmp, artifacts by step name)``.

    Fed as in ``python -m ...stage1_instruction_tuning | python -m ...stage2_alignment``: stage1's JSON on stdin gives
    the checkpoint to align and stage1's Results of it (the evaluation baseline).
    """
    _, stage1 = stage1_tiny_run
    tmp = tmp_path_factory.mktemp("stage2")
    piped = json.dumps({"schema": STDOUT_SCHEMA, "artifacts": stage1})
    args = ["--scale", "tiny", "--output-root", str(tmp / "run")]
    done = run_in(tmp, [sys.executable, "-m", MODULE, *args], input=piped)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp, json.loads(done.stdout)["artifacts"]


def _walk(path: str) -> dict:
    return json.loads((Path(path) / "metadata.json").read_text())


@pytest.mark.slow
def test_stage_wires_three_artifacts_and_lineage_walks_back_to_stage0_data(
    stage0_tiny_run, stage1_tiny_run, stage2_tiny_run
):
    _, stage0 = stage0_tiny_run
    _, stage1 = stage1_tiny_run
    _, artifacts = stage2_tiny_run
    data, train, results = (artifacts[k] for k in ("data_curation", "training", "evaluation"))
    assert [a["type"] for a in (data, train, results)] == ["PreferenceDataset", "Checkpoint", "Results"]
    stage1_ckpt = stage1["training"]["path"]
    assert data["checkpoint_path"] == stage1_ckpt
    assert [(e["step"], e["path"]) for e in train["lineage"]] == [
        ("data_curation", data["path"]),
        ("init_checkpoint", stage1_ckpt),
    ]
    stage1_results = stage1["evaluation"]["path"]
    assert [e["path"] for e in results["lineage"]] == [train["path"], data["path"], stage1_ckpt, stage1_results]
    # From the final Results, each hop read from metadata on disk, to all 9 artifacts of the three stages.
    reached, frontier = set(), [results["path"]]
    while frontier:
        path = frontier.pop()
        if path not in reached:
            reached.add(path)
            frontier.extend(entry["path"] for entry in _walk(path)["lineage"])
    assert reached == {artifact["path"] for run in (stage0, stage1, artifacts) for artifact in run.values()}
    for artifact in (data, train, results):
        assert (artifact["config"]["scale"], artifact["config"]["seed"]) == ("tiny", 1234)
    assert_steps_reported_progress(artifacts)


@pytest.mark.slow
def test_dpo_beats_its_input_model_on_held_out_preferences(stage2_tiny_run):
    _, artifacts = stage2_tiny_run
    metrics = artifacts["evaluation"]["metrics"]
    assert metrics["preference/accuracy"] > metrics["input_model/preference/accuracy"], metrics
    assert metrics["preference/reward_margin"] > 0 and metrics["preference/reward_accuracy"] > 0.5, metrics
    assert metrics["input_model/preference/reward_margin"] == 0.0  # the input model is the DPO reference
    assert 0.0 <= metrics["instruct/exact_match"] <= 1.0 and "input_model/instruct/exact_match" in metrics
    assert artifacts["data_curation"]["num_heldout"] == artifacts["evaluation"]["num_samples"]["preference"]
    # the NLL term on chosen replies keeps greedy answers intact: no regression on stage1's held-out instructions
    assert metrics["instruct/exact_match"] >= metrics["input_model/instruct/exact_match"] - 0.05, metrics


@pytest.mark.slow
def test_steps_as_files_in_a_real_shell_pipe_with_jsonl_sources(stage1_tiny_run, tmp_path):
    _, stage1 = stage1_tiny_run
    source = tmp_path / "pairs.jsonl"
    records = [{"prompt": f"Where does person {i} live?", "chosen": "Paris", "rejected": "Rome"} for i in range(20)]
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "pipe"
    pipeline = (
        f"{sys.executable} {STAGE_DIR / 'data_curation.py'} --checkpoint-path {stage1['training']['path']}"
        f" --sources {source} --heldout-fraction 0.2 --output-dir {out / 'data'}"
        f" | {sys.executable} {STAGE_DIR / 'training.py'} --train-iters 2 --warmup-iters 0 --output-dir {out / 'train'}"
        f" | {sys.executable} {STAGE_DIR / 'evaluation.py'} --limit 3 --output-dir {out / 'eval'}"
    )
    done = subprocess.run(pipeline, shell=True, capture_output=True, text=True, env=stage_env(tmp_path), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)["artifacts"]["evaluation"]
    assert results["num_samples"]["preference"] == 3
    data = _walk(str(out / "data"))
    assert (data["num_examples"], data["num_heldout"]) == (16, 4)


@pytest.mark.parametrize(
    ("step", "args", "message"),
    [
        ("training.py", ["--beta", "0"], "--beta 0"),
        ("data_curation.py", ["--heldout-fraction", "1.5"], "--heldout-fraction 1.5"),
        ("evaluation.py", ["--limit", "0"], "--limit"),
    ],
)
def test_bad_values_are_one_line_errors_with_exit_code_2(step, args, message, tmp_path):
    done = run_in(tmp_path, [sys.executable, str(STAGE_DIR / step), *args], stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and message in lines[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.slow
def test_a_baseline_that_scored_another_model_is_a_one_line_error(stage0_tiny_run, stage2_tiny_run, tmp_path):
    _, stage0 = stage0_tiny_run
    _, artifacts = stage2_tiny_run
    out = tmp_path / "eval"
    args = ["--checkpoint-path", artifacts["training"]["path"], "--baseline-path", stage0["evaluation"]["path"]]
    done = run_in(tmp_path, [sys.executable, str(STAGE_DIR / "evaluation.py"), *args, "--output-dir", str(out)])
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        f"error: baseline {stage0['evaluation']['path']} scored {stage0['training']['path']}, not this model's input "
        f"{artifacts['training']['lineage'][1]['path']}: give the Results of the input model's own evaluation, "
        "or no baseline"
    ]
    assert not out.exists() and done.stdout == ""


@pytest.mark.slow
def test_piped_results_become_the_baseline_only_when_they_scored_the_starting_checkpoint(
    stage0_tiny_run, stage1_tiny_run, tmp_path
):
    _, stage0 = stage0_tiny_run
    _, stage1 = stage1_tiny_run
    code = (
        "import sys; from pathlib import Path; from nemotron.evaluation.baseline import stage_eval_config;"
        "from nemotron.recipes.nano2.stage2_alignment.evaluation import Config;"
        "print(stage_eval_config(Config(), Path(sys.argv[1])).baseline_path)"
    )
    for piped, expected in ((stage1, stage1["evaluation"]["path"]), (stage0, "None")):
        document = json.dumps({"schema": STDOUT_SCHEMA, "artifacts": piped})
        done = run_in(tmp_path, [sys.executable, "-c", code, stage1["training"]["path"]], input=document)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == expected


@pytest.mark.slow
def test_alignment_is_compared_with_stage1s_own_results(stage1_tiny_run, stage2_tiny_run):
    _, stage1 = stage1_tiny_run
    _, artifacts = stage2_tiny_run
    metrics, baseline = artifacts["evaluation"]["metrics"], stage1["evaluation"]["metrics"]
    assert metrics["vs_baseline/instruct/exact_match"] == pytest.approx(
        metrics["instruct/exact_match"] - baseline["instruct/exact_match"]
    )
    assert not any(name.startswith("vs_baseline/input_model/") for name in metrics)  # another model's figures


@pytest.mark.slow
def test_training_resumes_from_its_last_checkpoint(stage2_tiny_run, tmp_path):
    _, artifacts = stage2_tiny_run
    dataset = artifacts["data_curation"]["path"]
    out = tmp_path / "resume"
    common = [sys.executable, str(STAGE_DIR / "training.py"), "--dataset-path", dataset, "--output-dir", str(out)]
    common += ["--warmup-iters", "0", "--save-interval", "2", "--log-interval", "1"]
    first = run_in(tmp_path, [*common, "--train-iters", "2"], stdin=subprocess.DEVNULL)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_in(tmp_path, [*common, "--train-iters", "4"], stdin=subprocess.DEVNULL)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stderr and "(step 2)" in second.stderr
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # each step logged once across the two runs
    assert json.loads(second.stdout)["artifacts"]["training"]["num_steps"] == 4


@pytest.mark.slow
def test_lineage_of_stage2_results_names_all_nine_artifacts_and_the_raw_sources(
    stage0_tiny_run, stage1_tiny_run, stage2_tiny_run, tmp_path
):
    import shutil

    runs = [run for _, run in (stage0_tiny_run, stage1_tiny_run, stage2_tiny_run)]
    results = stage2_tiny_run[1]["evaluation"]["path"]
    launch = [sys.executable, "-m", "nemotron.launcher.cli", "lineage", results]
    done = run_in(tmp_path, launch, stdin=subprocess.DEVNULL)  # stdout a pipe: JSON
    assert done.returncode == 0, done.stderr
    graph = json.loads(done.stdout)
    nodes = graph["nodes"]
    made = {(artifact["path"], artifact["type"]) for run in runs for artifact in run.values()}
    assert {(n["path"], n["type"]) for n in nodes.values() if n["type"] != "Source"} == made
    assert all(n["scale"] == "tiny" and n["code_version"] for n in nodes.values() if n["type"] != "Source")
    sources = [n for n in nodes.values() if n["type"] == "Source"]
    assert [n["step"] for n in sources] == ["embedded corpus (seed 1234)"]  # every curation read the embedded world
    curations = {run["data_curation"]["path"] for run in runs}
    assert {e["consumer"] for e in graph["edges"] if e["input"] == sources[0]["id"]} == curations
    assert nodes[results]["metric"] == {
        "preference/accuracy": stage2_tiny_run[1]["evaluation"]["metrics"]["preference/accuracy"]
    }

    tree = run_in(tmp_path, [*launch, "--format", "text"], stdin=subprocess.DEVNULL).stdout
    assert tree.startswith("Results  evaluation  tiny  preference/accuracy=") and "raw source: embedded corpus" in tree
    assert all(artifact["path"] in tree for run in runs for artifact in run.values())

    dot_source = run_in(tmp_path, [*launch, "--format", "dot"], stdin=subprocess.DEVNULL)
    assert dot_source.returncode == 0, dot_source.stderr
    if shutil.which("dot") is None and not os.environ.get("CI"):
        pytest.skip("Graphviz's dot is not installed here (CI installs it)")
    checked = subprocess.run(["dot", "-Tsvg"], input=dot_source.stdout, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
    assert checked.stdout.count('class="node"') == len(nodes)
    png = tmp_path / "lineage.png"
    drawn = run_in(tmp_path, [*launch, "--png", str(png)], stdin=subprocess.DEVNULL)
    assert drawn.returncode == 0, drawn.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
