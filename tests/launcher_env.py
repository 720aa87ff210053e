"""Fixtures for launcher tests: the real CLI in subprocesses, an isolated artifact root / state dir / profile dir,
and the toy recipe (``tests/launcher_toy``: real, fast steps) registered through ``NEMOTRON_RECIPES``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
CONSOLE_SCRIPT = Path(sys.executable).parent / "nemotron-launch"


@dataclass
class Launched:
    returncode: int
    stdout: str
    stderr: str

    @property
    def document(self) -> dict:
        lines = self.stdout.splitlines()
        assert len(lines) == 1, f"stdout must be exactly one JSON line, got {self.stdout!r}"
        return json.loads(lines[0])


@dataclass
class LauncherEnv:
    root: Path  # artifact root
    state: Path  # NEMOTRON_STATE_DIR (the run index)
    profiles: Path  # a NEMOTRON_PROFILES directory tests may write profiles into
    env: dict[str, str]

    def command(self, *args: str) -> list[str]:
        if CONSOLE_SCRIPT.exists():
            return [str(CONSOLE_SCRIPT), *args]
        return [sys.executable, "-m", "nemotron.launcher.cli", *args]

    def launch(self, *args: str, timeout: float = 300, **env: str) -> Launched:
        done = subprocess.run(
            self.command(*args),
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Launched(done.returncode, done.stdout, done.stderr)

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.command(*args), env=self.env, text=True, **kwargs)

    def files(self) -> list[Path]:
        """Everything under the artifact root and state dir (to assert that nothing was written)."""
        return sorted(p for base in (self.root, self.state) if base.exists() for p in base.rglob("*"))


@pytest.fixture
def launcher_env(tmp_path: Path) -> LauncherEnv:
    root, state, profiles = tmp_path / "artifacts", tmp_path / "state", tmp_path / "profiles"
    profiles.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
        "NEMOTRON_RECIPES": "toy=launcher_toy.recipe",
        "NEMOTRON_ARTIFACT_ROOT": str(root),
        "NEMOTRON_STATE_DIR": str(state),
        "NEMOTRON_PROFILES": str(profiles),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),  # no user profiles leak in from this machine
        "COLUMNS": "160",
    }
    return LauncherEnv(root, state, profiles, env)
