"""What an unchanged `nemotron-launch build` costs: collecting and hashing the context, plus one image lookup.

    uv run python bench/bench_build.py [RECIPE]      # DOCKER_HOST may point at any engine; without one, hash only

Prints the median of 5 runs of each part. The no-op build is exactly: collect + digest + `docker image inspect`.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from nemotron.launcher.containers import recipe_context


def median_seconds(function, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    recipe = sys.argv[1] if len(sys.argv) > 1 else "nano2"
    context = recipe_context(recipe, None)
    size = sum((context.root / f).stat().st_size for f in context.files)
    print(f"context of {recipe}: {len(context.files)} files, {size / 1e3:.0f} kB sent")
    print(f"collect (walk + .dockerignore): {median_seconds(lambda: recipe_context(recipe, None)) * 1e3:.1f} ms")
    print(f"digest (sha256 of files sent):  {median_seconds(context.digest) * 1e3:.1f} ms")
    print(f"tar (what docker build - gets): {median_seconds(context.tar) * 1e3:.1f} ms (only when building)")
    probe = ["docker", "image", "inspect", "--format", "{{.Id}}", "nemotron/absent:none"]
    try:
        subprocess.run(["docker", "version"], capture_output=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        print("docker image inspect: no Docker engine reachable, skipped")
        return
    lookup = median_seconds(lambda: subprocess.run(probe, capture_output=True))
    print(f"docker image inspect:           {lookup * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
