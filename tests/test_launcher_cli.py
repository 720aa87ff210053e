"""The nemotron-launch CLI as people use it: real subprocesses, one JSON document on stdout, one-line errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from launcher_env import LauncherEnv


def _write_artifact(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True)
    (directory / "metadata.json").write_text(text)
    return directory


def _profile(env: LauncherEnv, name: str, text: str) -> None:
    (env.profiles / f"{name}.toml").write_text(textwrap.dedent(text))


def _bad_inputs(env: LauncherEnv, tmp: Path) -> list[tuple[list[str], str | tuple[str, ...], dict[str, str]]]:
    """(argv, a fragment (or fragments) the one-line error must contain, extra env) for each bad input."""
    corrupt = _write_artifact(tmp / "corrupt", '{"path": "x", "type": ')
    results = _write_artifact(
        tmp / "results", json.dumps({"path": str(tmp / "results"), "type": "Results", "score": 1.0})
    )
    _profile(env, "typo", '[slurm]\nacount = "x"\n')
    _profile(env, "badtype", 'executor = "slurm"\n[slurm]\nnodes = "many"\n')
    _profile(env, "loop-a", 'extends = "loop-b"\n')
    _profile(env, "loop-b", 'extends = "loop-a"\n')
    _profile(env, "secretive", 'secrets = ["NEMOTRON_TEST_NOT_SET"]\n')
    _profile(env, "badstep", "[steps.trainin]\nnodes = 2\n")
    _profile(env, "badstage", '[steps."stag0.training"]\nnodes = 2\n')
    _profile(env, "badscale", "[steps.training]\nscale.tiyn = { nodes = 1 }\n")
    _profile(env, "unsetvar", 'artifact_root = "${NEMOTRON_TEST_NOT_SET}/x"\n')
    _profile(env, "three-ranks", 'extends = "local"\n[local]\nnproc_per_node = 3\n')
    _profile(env, "two-ranks", 'extends = "local"\n[local]\nnproc_per_node = 2\n')
    _profile(env, "old-release", 'extends = "slurm-test"\n[slurm]\nmax_requeues = 2\n')  # a key that moved
    _profile(env, "short-runs", 'extends = "eos"\n[fault_tolerance]\nmax_segments = 100\n')
    _profile(env, "tracking-typo", '[tracking]\nproject = "p"\nentiy = "team"\n')
    _profile(env, "tracking-mode", '[tracking]\nproject = "p"\nmode = "sometimes"\n')
    _profile(env, "tracked-online", '[tracking]\nproject = "p"\n')  # online: W&B's key is a secret
    corpus = tmp / "corpus"  # a user's own text: a validation split, no held-out facts
    corpus.mkdir()
    (corpus / "notes.txt").write_text("The old baker crosses the bridge near the station every morning.\n")
    return [
        (["nano3"], "unknown target 'nano3'", {}),
        (["toy.stage9"], "valid targets are", {}),
        (["toy", "--profile", "nope"], "unknown profile 'nope'", {}),
        (["toy", "--profile", "typo"], "did you mean 'slurm.account'", {}),
        (["toy", "--profile", "badtype"], "slurm.nodes", {}),
        (["toy", "--profile", "loop-a"], "extends itself", {}),
        (["toy", "--profile", "badstep"], "did you mean 'training'", {}),
        (["toy", "--profile", "badstage"], "did you mean 'stage0.training'", {}),
        (["toy", "--profile", "badscale"], "did you mean 'steps.training.scale.tiny'", {}),
        (["toy", "--profile", "old-release"], ("'slurm.max_requeues' is gone", "fault_tolerance.max_attempts"), {}),
        (["toy", "--profile", "unsetvar"], "NEMOTRON_TEST_NOT_SET is not set", {}),
        (["toy", "--executor", "kubernetes"], "unknown executor 'kubernetes'", {}),
        (["toy", "--executor", "slurm"], "needs a cluster profile", {}),
        (["toy", "--scale", "huge"], "unknown scale 'huge'", {}),
        (["toy.stage0", "training.lrr=1"], "did you mean lr", {}),
        (["toy.stage0", "training.lr=fast"], "expected float", {}),
        (["toy.stage0", "training.lr=-1"], "lr must be positive", {}),
        (["toy.stage0", "training.lr"], "expected STEP.FIELD=VALUE", {}),
        (["toy.stage0.data_curation", "training.lr=1"], "names no step of target", {}),
        (["toy.stage0", "training.output_dir=/x"], "output_dir is planned", {}),
        # a list item that would become an option of the step (it would win over the planned --output-dir)
        (["toy.stage0", f"training.tags=a,--output-dir,{tmp}/victim"], "list items cannot start with '-'", {}),
        (["toy.stage0", "data_curation.num_examples=1.5"], "expected int", {}),
        (["toy.stage0.training"], "needs a dataset artifact", {}),
        (["toy.stage0.training", f"training.dataset_path={corrupt}"], "corrupt", {}),
        (["toy.stage0.training", f"training.dataset_path={results}"], "not the Dataset", {}),
        (["toy.stage0.training", f"training.dataset_path={tmp / 'absent'}"], "does not exist", {}),
        # a step's own value checks run at plan time, not after the upstream jobs ran
        (["nano2.stage0", "evaluation.limit=0"], "--limit 0: must be a positive number", {}),
        (["nano2.stage0", "training.warmup_iters=-1"], "--warmup-iters -1: must be in [0, train_iters=300)", {}),
        (["nano2", "stage2_alignment.training.beta=0"], "--beta 0.0: must be positive", {}),
        (
            ["nano2.stage0", "--dry-run", f"data_curation.sources={corpus}", "evaluation.tasks=facts_mc"],
            ("invalid config for stage0_pretrain.evaluation: --tasks facts_mc", "it provides valid_ppl"),
            {},
        ),
        # paths a person names are checked at plan time where the launcher sees the jobs' files
        (
            ["nano2.stage0", "--executor", "local", "data_curation.sources=/nonexistent", "--dry-run"],
            "stage0_pretrain.data_curation: source '/nonexistent' does not exist",
            {},
        ),
        (
            ["nano2.stage0", "--executor", "docker", f"data_curation.tokenizer_path={tmp / 'none.json'}"],
            ("stage0_pretrain.data_curation: tokenizer", "none.json' does not exist"),
            {},
        ),
        (["nano2", "stage1.data_curation.sources=/nonexistent.jsonl"], "--sources '/nonexistent.jsonl'", {}),
        (["nano2.stage0", "training.lr=nan"], "invalid config for stage0_pretrain.training: --lr nan: must be", {}),
        # a weighted blend: every weight positive, every Dataset there (checked where the launcher sees the files)
        (["nano2.stage0", f"training.blend={corpus}:0.7,{tmp}:0"], f"--blend entry '{tmp}:0': weight 0 must be", {}),
        (
            ["nano2.stage0", f"training.blend={tmp / 'absent'}:0.3"],
            ("stage0_pretrain.training: --blend", "absent: no Dataset artifact there"),
            {},
        ),
        (["nano2.stage0", "training.lr=inf"], "invalid config for stage0_pretrain.training: --lr inf: must be", {}),
        # the memory trades of a layout: a recompute the loop has, sequence parallel only over tensor-parallel ranks,
        # pipeline stages that split the layers evenly and that the step can run (DPO scores whole sequences)
        (["nano2.stage0", "training.recompute=selective"], ("recompute", "'selective'", "full"), {}),
        (["nano2.stage0", "training.sequence_parallel=true"], "--sequence-parallel: splits the sequence over", {}),
        (["nano2.stage0", "training.pipeline_parallel=3"], "--pipeline-parallel 3: the world size 1", {}),
        (["nano2.stage0", "--profile", "three-ranks", "training.pipeline_parallel=3"], "4 layers do not split", {}),
        (
            ["nano2", "--profile", "two-ranks", "stage2.training.pipeline_parallel=2"],
            "--pipeline-parallel 2: DPO trains one pipeline stage",
            {},
        ),
        (
            ["nano2.stage0", "data_curation.quality_threshold=7"],
            "invalid config for stage0_pretrain.data_curation: --quality-threshold 7.0 is out of range",
            {},
        ),
        # the data-parallel size comes from the job's planned ranks and layout: 16 samples do not split over 3 of them,
        # 100 not over the 8 data-parallel groups of 64 GPUs at tensor parallel 8
        (
            ["nano2.stage0", "--profile", "three-ranks"],
            ("stage0_pretrain.training", "--global-batch-size 16: must be a multiple of the data-parallel size 3"),
            {},
        ),
        (
            ["nano2", "--profile", "eos", "--scale", "full", "--dry-run", "stage0.training.global_batch_size=100"],
            ("stage0_pretrain.training", "--global-batch-size 100: must be a multiple of the data-parallel size 8"),
            {"USER": "alice"},
        ),
        # a layout whose memory per GPU the profile's GPUs do not have: refused at the dry-run, naming one that fits
        *(
            (
                [recipe, "--profile", "eos", "--scale", "full", "--dry-run", "training.tensor_parallel=1"],
                (
                    "stage0_pretrain.training: --tensor-parallel 1",
                    "GB per GPU",
                    "more than the 80 GB of a GPU",
                    "a layout that fits: --tensor-parallel ",
                ),
                {"USER": "alice"},
            )
            for recipe in ("nano2.stage0", "nemotron4.stage0")
        ),
        # more time-limit segments than the profile allows a job
        (
            ["nano2.stage0", "--profile", "short-runs", "--scale", "full", "--dry-run"],
            ("stage0_pretrain.training needs about", "time-limit segments of 04:00:00", "max_segments = 100"),
            {"USER": "alice"},
        ),
        (["toy.stage0.training", "training.dataset_artifact=nothing:latest"], "no tracked artifact", {}),
        (["toy", "--artifact-root", "/dev/null/artifacts"], "not a directory", {}),
        (["toy", "--profile", "secretive"], "secret NEMOTRON_TEST_NOT_SET is not set", {}),
        (["toy", "--bogus-flag"], "--bogus-flag", {}),
        (["status", "toy-20000101-000000-ffff"], "unknown run", {}),
        (["logs"], "run", {}),
        (["profiles", "nope"], "unknown profile", {}),
        (["toy", "--profile", "tracking-typo"], "unknown key 'tracking.entiy': did you mean 'tracking.entity'?", {}),
        (["toy", "--profile", "tracking-mode"], ("tracking.mode", "'online', 'offline' or 'disabled'"), {}),
        (["toy", "--profile", "tracked-online"], "secret WANDB_API_KEY is not set", {"WANDB_API_KEY": ""}),
        (["lineage", "toy-20000101-000000-ffff"], "unknown run 'toy-20000101-000000-ffff'", {}),
        (["lineage", str(corpus)], ("has no metadata.json (not an artifact)", "no run.json (not a run)"), {}),
        (["lineage", str(corrupt)], "corrupt", {}),
        (["lineage", str(results), "--format", "svg"], "--format svg is not one of auto, text, json, dot", {}),
        (["lineage", str(results), "--png", str(tmp / "absent" / "x.png")], "absent does not exist", {}),
        (["plot", "toy-20000101-000000-ffff"], "unknown run 'toy-20000101-000000-ffff'", {}),
        # Graphviz's dot not on PATH (the venv's own bin only): one line saying what to install
        (
            ["lineage", str(results), "--png", str(tmp / "x.png")],
            "needs Graphviz's dot",
            {"PATH": str(Path(sys.executable).parent)},
        ),
        *_unreadable_inputs(env, tmp),
    ]


def _unreadable_inputs(env: LauncherEnv, tmp: Path) -> list[tuple[list[str], str | tuple[str, ...], dict[str, str]]]:
    """Bad files, paths and environment rather than bad values: each was a traceback or a silent misbehaviour."""
    not_utf8 = _write_artifact(tmp / "not_utf8", "")
    (not_utf8 / "metadata.json").write_bytes(b'{"path": "\xff\xfe"}')
    deep = _write_artifact(tmp / "deep", "[" * 100_000)  # RecursionError in json
    metadata_dir = tmp / "metadata_dir"
    (metadata_dir / "metadata.json").mkdir(parents=True)
    newline = tmp / "a\nb"
    (env.profiles / "latin1.toml").write_bytes('description = "caf\u00e9"\n'.encode("latin-1"))
    _profile(env, "orphan", 'extends = "nothere"\n')
    _profile(env, "emptyroot", 'artifact_root = "${NEMOTRON_TEST_NOT_SET:-}"\n')
    (tmp / "dir.toml").mkdir()
    state_file = tmp / "state_file"
    state_file.write_text("")
    bad_index = tmp / "bad_index"
    bad_index.mkdir()
    (bad_index / "runs.jsonl").write_bytes(b'not json\n[1]\n"x"\n\xff\xfe\n{"run_id": "toy-1", "run_dir": 5}\n')
    # a real run whose only step was reused (so it never started), in a root of its own
    runs = {"NEMOTRON_ARTIFACT_ROOT": str(tmp / "runs_root"), "NEMOTRON_STATE_DIR": str(tmp / "runs_state")}
    assert env.launch("toy.stage0.data_curation", **runs).returncode == 0
    reused = env.launch("toy.stage0.data_curation", **runs).document
    assert reused["steps"]["stage0_toy.data_curation"]["state"] == "reused"
    recipes = [
        (
            ["toy"],
            ("NEMOTRON_RECIPES entry " + repr(entry), "expected NAME=package.module"),
            {"NEMOTRON_RECIPES": entry},
        )
        for entry in ("toy", "=x", "toy=", "toy=no.such.module", "toy=os")
    ]
    return [
        (["toy.stage0.training", f"training.dataset_path={not_utf8}"], "corrupt", {}),
        (["toy.stage0.training", f"training.dataset_path={deep}"], "corrupt", {}),
        (["toy.stage0.training", f"training.dataset_path={metadata_dir}"], "Is a directory", {}),
        (["toy", "--profile", "latin1"], "latin1.toml is not UTF-8", {}),
        (["toy", "--profile", str(env.profiles)], "is a directory", {}),
        (["toy", "--profile", str(tmp / "dir.toml")], "is a directory", {}),
        (["toy", "--profile", "orphan"], "orphan.toml extends an unknown profile 'nothere'", {}),
        (["toy", "--artifact-root", "/proc/nemotron"], "under /proc", {}),
        (["toy", "--artifact-root", "", "--dry-run"], "--artifact-root is empty", {}),  # was: the current directory
        (["toy", "--profile", "emptyroot", "--dry-run"], "artifact_root: empty", {}),
        (["toy.stage0.data_curation"], "is not a directory", {"NEMOTRON_STATE_DIR": str(state_file)}),
        (["status", "toy-1"], "unknown run 'toy-1'", {"NEMOTRON_STATE_DIR": str(bad_index)}),
        *recipes,
        (["toy.stage0.training", f"training.dataset_path={newline}"], "no artifact at", {}),
        (["logs", reused["run_id"], "data_curation"], "has not started (reused", runs),
    ]


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(launcher_env: LauncherEnv, tmp_path: Path) -> None:
    cases = _bad_inputs(launcher_env, tmp_path)
    assert len(cases) >= 15
    for argv, fragments, extra_env in cases:
        result = launcher_env.launch(*argv, **extra_env)
        where = f"{argv}: rc={result.returncode} stderr={result.stderr!r}"
        assert result.returncode == 2, where
        assert result.stdout == "", where
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), where
        assert all(f in lines[0] for f in ((fragments,) if isinstance(fragments, str) else fragments)), where
        assert "Traceback" not in result.stderr, where
        assert launcher_env.files() == [], f"{argv} wrote {launcher_env.files()}"


def test_a_path_on_the_cluster_is_the_jobs_to_check_through_ssh(launcher_env: LauncherEnv) -> None:
    """Through an SSH host the launcher does not see the jobs' filesystem: a source only the cluster has is planned."""
    _profile(launcher_env, "remote", 'extends = "eos"\n[ssh]\nhost = "login.cluster.example"\n')
    done = launcher_env.launch(
        "nano2.stage0", "--profile", "remote", "--dry-run", "data_curation.sources=/lustre/corpus", USER="alice"
    )
    assert done.returncode == 0, done.stderr
    assert "--sources /lustre/corpus" in done.document["jobs"]["stage0_pretrain.data_curation"]["command"]


def test_a_submit_that_dies_of_a_bug_fails_its_run_and_frees_its_outputs(
    launcher_env: LauncherEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug's traceback stays (what a report needs), but the run is recorded failed and its claims are gone, so
    the next launch of the same target runs instead of being refused by a run that never started."""
    from nemotron.launcher import cli
    from nemotron.launcher.executors.local import LocalExecutor

    for key, value in launcher_env.env.items():
        monkeypatch.setenv(key, value)

    def submit(self, plan, profile, run, detach=False):
        raise KeyError("a bug in an executor")

    monkeypatch.setattr(LocalExecutor, "submit", submit)
    with pytest.raises(KeyError):
        cli.entrypoint(["toy.stage0"])
    [record_file] = launcher_env.root.glob("runs/*/run.json")
    record = json.loads(record_file.read_text())
    assert {s["state"] for s in record["steps"].values()} == {"failed"}
    assert all("not started: KeyError" in s["reason"] for s in record["steps"].values())
    assert list(launcher_env.root.rglob("*.claim")) == []
    monkeypatch.undo()
    again = launcher_env.launch("toy.stage0")
    assert again.returncode == 0, again.stderr
    assert {s["state"] for s in again.document["steps"].values()} == {"completed"}


def test_a_corrupt_artifact_beside_reusable_ones_is_skipped(launcher_env: LauncherEnv) -> None:
    """Planning scans a step's outputs for the newest complete one: unreadable siblings are not complete, not fatal."""
    step_dir = launcher_env.root / "toy" / "stage0_toy" / "data_curation"
    good = step_dir / "tiny-good"
    _write_artifact(
        good, json.dumps({"path": str(good), "type": "Dataset", "num_examples": 3, "config": {"scale": "tiny"}})
    )
    (_write_artifact(step_dir / "tiny-not-utf8", "") / "metadata.json").write_bytes(b'{"type": "Dataset\xff"}')
    _write_artifact(step_dir / "tiny-deep", "[" * 100_000)
    (step_dir / "tiny-dir" / "metadata.json").mkdir(parents=True)
    result = launcher_env.launch("toy.stage0.training", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.document["jobs"]["stage0_toy.training"]["inputs"] == {"dataset": str(good)}


def test_oserror_about_a_path_is_one_line_a_bug_keeps_its_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nemotron.launcher import cli

    def failing(error: BaseException):
        def execute(self) -> int:
            raise error

        return execute

    monkeypatch.setattr(cli.List, "execute", failing(PermissionError(13, "Permission denied", "/data/nemotron/x")))
    with pytest.raises(SystemExit) as exit_:
        cli.entrypoint(["list"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: /data/nemotron/x: Permission denied\n"
    own_file = PermissionError(13, "Permission denied", cli.__file__)
    for bug in (OSError(5, "Input/output error"), own_file, KeyError("x")):
        monkeypatch.setattr(cli.List, "execute", failing(bug))
        with pytest.raises(type(bug)):
            cli.entrypoint(["list"])


def test_help_lists_subcommands(launcher_env: LauncherEnv) -> None:
    result = launcher_env.launch("--help")
    assert result.returncode == 0
    for name in ("run", "status", "logs", "cancel", "list", "profiles", "build"):
        assert name in result.stdout


def test_list_names_every_target(launcher_env: LauncherEnv) -> None:
    result = launcher_env.launch("list")
    assert result.returncode == 0, result.stderr
    document = result.document
    assert {"nano2", "nano2.stage0", "nano2.stage0_pretrain", "nano2.stage0.training"} <= set(document["targets"])
    steps = document["recipes"]["nano2"]["stages"]["stage0_pretrain"]["steps"]
    assert list(steps) == ["data_curation", "training", "evaluation"]
    assert steps["training"]["inputs"] == {"dataset": "stage0_pretrain.data_curation"}
    assert steps["training"]["resources"]["full"]["resource_class"] == "gpu"  # per scale: tests/test_resources.py


def test_profiles_list_and_show_resolved(launcher_env: LauncherEnv) -> None:
    listed = launcher_env.launch("profiles").document["profiles"]
    assert {"local", "docker", "eos", "slurm-test"} <= set(listed)
    docker = launcher_env.launch("profiles", "docker").document
    assert docker["executor"] == "docker" and docker["extends"] == "local"
    assert docker["env"] == {"PYTHONUNBUFFERED": "1"}  # inherited from local
    shown = launcher_env.launch("profiles", "eos", USER="alice")
    eos = shown.document
    assert eos["slurm"]["partitions"] == {"gpu": "batch", "cpu": "cpu"}
    assert eos["steps"]["stage0.training"]["nodes"] == 8 and eos["steps"]["training"]["scale"]["tiny"]["nodes"] == 1
    assert eos["artifact_root"] == str(launcher_env.root)  # ${NEMOTRON_ARTIFACT_ROOT:-...} took the variable
    # every training step of every recipe, at every scale: its layout and memory per GPU within eos's 80 GB
    for recipe in ("nano2", "nemotron4"):
        trainings = eos["estimates"][recipe]
        assert {job.split(".")[1] for job in trainings} == {"training"} and len(trainings) >= 2
        for per_scale in trainings.values():
            assert set(per_scale) == {"tiny", "small", "medium", "full"}
            assert all(0 < estimate["memory"]["total_gb"] <= 80 for estimate in per_scale.values()), per_scale
    assert "stage0_pretrain.training full: layout tensor 8" in shown.stderr and "GB per GPU" in shown.stderr


def test_dry_run_prints_plan_json_and_runs_nothing(launcher_env: LauncherEnv) -> None:
    result = launcher_env.launch("toy", "--dry-run", "training.lr=0.5")
    assert result.returncode == 0, result.stderr
    document = result.document
    assert document["dry_run"] is True
    assert list(document["jobs"]) == [
        f"stage{s}_toy.{step}" for s in (0, 1) for step in ("data_curation", "training", "evaluation")
    ]
    training = document["jobs"]["stage1_toy.training"]
    assert training["depends_on"] == ["stage1_toy.data_curation", "stage0_toy.training"]
    assert "--lr 0.5" in training["command"] and "--init-checkpoint-path" in training["command"]
    assert set(document["rendered"]) == set(document["jobs"])  # the local executor renders every job
    assert "python -m launcher_toy.stage0_toy.training" in result.stderr
    assert launcher_env.files() == []


def test_importing_cli_and_rendering_a_plan_stays_light(launcher_env: LauncherEnv) -> None:
    code = textwrap.dedent(
        """
        import sys
        import nemotron.launcher.cli
        from nemotron.launcher.executors.base import get_executor
        from nemotron.launcher.plan import build_plan, describe
        from nemotron.launcher.profiles import profile_for
        for target, profile in (("nano2", "eos"), ("nano2.stage0", "local"), ("toy.stage0", "local")):
            plan = build_plan(target, profile_for(profile, None), "tiny", ["training.lr=0.5"])
            describe(plan)
        get_executor("local").render(plan, profile_for("local", None))
        heavy = sorted(m for m in ("torch", "megatron", "lm_eval", "pyarrow", "tokenizers", "matplotlib",
                                   "tensorboard", "wandb") if m in sys.modules)
        print(",".join(heavy))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=launcher_env.env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"heavy modules imported: {done.stdout.strip()}"


@pytest.mark.parametrize("recipe", ["nano2", "nemotron4"])
def test_full_scale_on_eos_fits_its_gpus_and_says_what_it_costs(launcher_env: LauncherEnv, recipe: str) -> None:
    result = launcher_env.launch(recipe, "--profile", "eos", "--dry-run", "--scale", "full", USER="alice")
    assert result.returncode == 0, result.stderr
    trainings = {name: job for name, job in result.document["jobs"].items() if name.endswith(".training")}
    assert len(trainings) >= 2
    for name, job in trainings.items():
        estimate, resources = job["estimate"], job["resources"]
        assert 0 < estimate["memory"]["total_gb"] <= 80, (name, estimate)  # eos: [gpu] memory_gb = 80
        layout, cost = estimate["layout"], estimate["cost"]
        gpus = resources["nodes"] * resources["gpus_per_node"]
        assert layout["tensor_parallel"] * layout["pipeline_parallel"] * layout["data_parallel"] == gpus
        assert cost["gpus"] == gpus and cost["gpu_hours"] == pytest.approx(cost["wall_hours"] * gpus, rel=1e-2)
        assert cost["segments"] == math.ceil(cost["wall_hours"] / 4 - 1e-9) or cost["segments"] == 1  # 04:00:00
        block = result.stderr.split(f"  {name}  [run]", 1)[1].split("\n  stage", 1)[0]
        assert "GB per GPU" in block and "GPU-hours" in block, block  # shown to people too
    assert "total: " in result.stderr and "GPU-hours" in result.stderr


@pytest.mark.parametrize("target", ["nano2", "nano2.stage0"])
def test_nano2_eos_dry_run_without_a_cluster(launcher_env: LauncherEnv, target: str) -> None:
    result = launcher_env.launch(target, "--profile", "eos", "--dry-run", "--scale", "full", USER="alice")
    assert result.returncode == 0, result.stderr
    document = result.document
    assert document["executor"] == "slurm"
    training = document["jobs"]["stage0_pretrain.training"]
    assert training["resources"]["nodes"] == 8 and training["resources"]["gpus_per_node"] == 8
    assert training["resources"]["nproc_per_node"] == 8 and training["resources"]["partition"] == "batch"
    assert document["jobs"]["stage0_pretrain.data_curation"]["resources"]["partition"] == "cpu"
    assert training["command"].startswith("python -m nemotron.recipes.nano2.stage0_pretrain.training --scale full")
    assert training["depends_on"] == ["stage0_pretrain.data_curation"]


def test_tracking_reaches_every_job_as_environment_and_the_api_key_only_by_name(launcher_env: LauncherEnv) -> None:
    _profile(launcher_env, "team", '[tracking]\nproject = "nano"\nentity = "llm-team"\n')
    key = "wandb-key-value-0d9e8f7a"
    result = launcher_env.launch("toy", "--profile", "team", "--dry-run", WANDB_API_KEY=key)
    assert result.returncode == 0, result.stderr
    rendered = result.document["rendered"]
    assert rendered and all(
        "NEMOTRON_WANDB_PROJECT=nano" in script and "NEMOTRON_WANDB_ENTITY=llm-team" in script
        for script in rendered.values()
    )
    assert "NEMOTRON_WANDB_MODE=online" in next(iter(rendered.values()))
    assert "secrets from your shell: WANDB_API_KEY" in next(iter(rendered.values()))
    assert key not in result.stdout + result.stderr
