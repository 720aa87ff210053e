"""The CLI under generated hostile input (hypothesis): targets, overrides and profile TOML full of quotes, ``$(…)``,
backticks, newlines, leading dashes, separators, unicode and very long values.

Whatever comes in, the launcher exits 0 or 2, never shows a traceback, says what is wrong in one line, and writes
nothing outside the artifact root and the state dir (a decoy directory the hostile values aim at stays empty). Most
examples plan with ``--dry-run``; about one in five runs the toy recipe's real steps, so a value that became an option
of a step (``--output-dir <decoy>``) would write where it must not. Runs in process: ~0.05 s an example.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from launcher_env import LauncherEnv

from nemotron.launcher.cli import SUBCOMMANDS, entrypoint

DECOY = "/tmp/nemotron-fuzz-decoy"  # fixed: hypothesis strategies are built once, before any fixture
EXAMPLES = 120

FRAGMENTS = [
    f"$(touch {DECOY}/pwned)", f"`touch {DECOY}/pwned`", "--output-dir", f"{DECOY}/victim", "-", "--", "--help",
    f",--output-dir,{DECOY}/victim", f"--output-dir={DECOY}/victim",
    ",", "=", ".", ":", ";", "|", "&&", "'", '"', "\\", "\n", "\r", "\t", " ", "${HOME}", "~", "../..", "é", "ß",
    "日本", "\u202e", "🙂", "None", "nan", "-1", "0", "1e999", "x" * 5000,
]  # fmt: skip
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
HOSTILE = st.lists(st.one_of(st.sampled_from(FRAGMENTS), TEXT), min_size=1, max_size=4).map("".join)
KEYS = [
    "data_curation.note", "data_curation.num_examples", "training.tags", "training.lr", "training.dataset_path",
    "stage0.training.tags", "stage0_toy.data_curation.note", "training.output_dir", "evaluation.checkpoint_path",
]  # fmt: skip
TARGETS = st.one_of(
    st.sampled_from(["toy", "toy.stage0", "toy.stage0.data_curation", "toy.stage1", "toy.stage0.evaluation"]),
    HOSTILE.filter(lambda t: t.strip() not in SUBCOMMANDS),
)
KEYED = st.tuples(st.sampled_from(KEYS), HOSTILE).map("=".join)
OVERRIDES = st.lists(st.one_of(KEYED, KEYED, HOSTILE, st.tuples(HOSTILE, HOSTILE).map("=".join)), max_size=3)
PROFILES = st.one_of(
    st.none(),
    HOSTILE,  # not TOML at all, mostly
    HOSTILE.map(lambda v: f'extends = "local"\n[env]\nHOSTILE = {json.dumps(v)}\n'),
    HOSTILE.map(lambda v: f'extends = "local"\n[env]\n{json.dumps(v)} = "x"\n'),
    HOSTILE.map(lambda v: f'extends = "slurm-test"\n[slurm]\naccount = {json.dumps(v)}\n'),
    HOSTILE.map(lambda v: f"extends = {json.dumps(v)}\n"),
    HOSTILE.map(lambda v: f'extends = "slurm-test"\n[steps.training]\npartition = {json.dumps(v)}\n'),
)
SAFE_FOR_REAL_RUNS = ("data_curation.note", "training.tags", "stage0.training.tags", "stage0_toy.data_curation.note")


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            entrypoint(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        else:
            code = 0
    return code, out.getvalue(), err.getvalue()


def _tree(base: Path) -> list[str]:
    return sorted(str(p.relative_to(base)) for p in base.rglob("*")) if base.exists() else []


@pytest.fixture
def fuzz_env(launcher_env: LauncherEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LauncherEnv]:
    for name in ("PYTHONPATH", "NEMOTRON_RECIPES", "NEMOTRON_ARTIFACT_ROOT", "NEMOTRON_STATE_DIR", "NEMOTRON_PROFILES",
                 "XDG_CONFIG_HOME", "COLUMNS"):  # fmt: skip
        monkeypatch.setenv(name, launcher_env.env[name])
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    for watched in ("home", "cwd"):
        (tmp_path / watched).mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "cwd")
    shutil.rmtree(DECOY, ignore_errors=True)
    Path(DECOY).mkdir()
    yield launcher_env
    shutil.rmtree(DECOY, ignore_errors=True)


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(target=TARGETS, overrides=OVERRIDES, profile=PROFILES, real_run=st.integers(0, 4).map(lambda n: n == 0))
@example("toy.stage0", [f"training.tags=a,--output-dir,{DECOY}/victim"], None, True)  # found by hand on main
@example("toy.stage0.data_curation", [f"data_curation.note=--output-dir={DECOY}/victim"], None, True)
@example("toy.stage0", ["training.tags=$(touch /tmp/nemotron-fuzz-decoy/pwned)"], None, True)
def test_hostile_cli_input_is_one_line_or_runs_and_never_escapes(fuzz_env, tmp_path, target, overrides, profile,
                                                                  real_run):  # fmt: skip
    argv = [target, *overrides, "--artifact-root", str(fuzz_env.root)]
    if profile is not None:
        (fuzz_env.profiles / "hostile.toml").write_text(profile, encoding="utf-8")
        argv += ["--profile", "hostile"]
    safe = profile is None and all(o.partition("=")[0] in SAFE_FOR_REAL_RUNS for o in overrides)
    if not (real_run and safe):
        argv.append("--dry-run")

    code, out, err = _run_cli(argv)
    event(f"exit {code}, {'dry-run' if '--dry-run' in argv else 'real run'}")  # --hypothesis-show-statistics

    where = f"argv={argv!r} rc={code} stderr={err[-2000:]!r}"
    assert code in (0, 2), where
    assert "Traceback" not in err, where
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), where
    else:
        assert len(out.splitlines()) == 1 and json.loads(out), where
    for watched in (Path(DECOY), tmp_path / "home", tmp_path / "cwd"):
        assert _tree(watched) == [], f"{where}: wrote under {watched}: {_tree(watched)}"
    stray = [p for p in _tree(fuzz_env.root) if not p.startswith(("toy", "runs"))]
    assert stray == [], f"{where}: unexpected files under the artifact root: {stray}"
