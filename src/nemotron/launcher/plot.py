"""``nemotron-launch plot RUN [--out FILE.png]``: one picture of a run, for the morning after.

Left column: the loss curve of each training step (its ``metrics.jsonl``, one point per logged iteration), with its
validation loss and baseline when the step recorded them. Right column: each evaluation's figures beside its
baseline — the earlier stage's Results it was compared with (lineage ``baseline``), else its own ``input_model/``
figures (stage2 scores the model it started from), else the chance level of its multiple-choice accuracies. Rates
in [0, 1] (accuracies, exact match) are bars; other figures (perplexities, margins) are written under the bars, since
one axis cannot show both. The PNG's ``Description`` text chunk lists the axes, so a reader (or a test) knows what
was drawn without looking.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemotron.artifact import METADATA_FILE, shown
from nemotron.errors import UserError

_NOT_PLOTTED = ("_stderr", "chance_acc")
_OTHER_MODEL = ("input_model/", "vs_baseline/")


@dataclass
class Curve:
    step: str
    iterations: list[int]
    losses: list[float]
    final: dict[str, float] = field(default_factory=dict)  # valid loss and its baseline, when recorded


@dataclass
class Scores:
    step: str
    values: dict[str, float]
    baseline: dict[str, float]  # same names; a metric without a baseline figure is absent
    baseline_name: str | None


def plot_run(run, out: Path | None) -> dict[str, Any]:
    """Draw ``run`` (a ``RunRecord``) into ``out`` (default: ``<run dir>/plot.png``); what was drawn, for stdout."""
    curves, scores = [], []
    for job in run.plan.jobs:
        if run.steps[job.name].state not in ("completed", "reused"):
            continue
        directory = Path(job.output)
        curve = _curve(job.name, directory)
        if curve is not None:
            curves.append(curve)
        elif job.artifact_type == "Results" and (directory / METADATA_FILE).is_file():
            scores.append(_scores(job.name, directory))
    if not curves and not scores:
        raise UserError(
            f"run {run.run_id} has no finished training or evaluation step to plot: "
            f"see nemotron-launch status {run.run_id}"
        )
    target = Path(out).expanduser() if out is not None else Path(run.run_dir) / "plot.png"
    if not target.parent.is_dir():
        raise UserError(f"--out {shown(target)}: directory {shown(target.parent)} does not exist")
    axes = _draw(f"run {run.run_id}: {run.plan.target} ({run.plan.scale})", curves, scores, target)
    return {"run_id": run.run_id, "png": str(target), "axes": axes}


def _curve(step: str, directory: Path) -> Curve | None:
    """A training step's loss per logged iteration (None: the step logged none, so it is not a training step)."""
    path = directory / "metrics.jsonl"
    if not path.is_file():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    logged = [r for r in records if "loss" in r and "step" in r]
    if not logged:
        return None
    final = {
        k: v
        for k, v in (records[-1] if "loss" not in records[-1] else {}).items()
        if k.endswith("_loss") and k != "training_loss"
    }
    return Curve(step, [r["step"] for r in logged], [r["loss"] for r in logged], final)


def _scores(step: str, directory: Path) -> Scores:
    from nemotron.evaluation.artifacts import Results

    results = Results.load(path=directory)
    own = {
        name: value
        for name, value in results.metrics.items()
        if not name.startswith(_OTHER_MODEL) and not name.endswith(_NOT_PLOTTED)
    }
    baseline_path = next((e.path for e in results.lineage if e.step == "baseline"), None)
    if baseline_path is not None and (Path(baseline_path) / METADATA_FILE).is_file():
        theirs = Results.load(path=baseline_path).metrics
        return Scores(step, own, {k: theirs[k] for k in own if k in theirs}, "baseline")
    inputs = {k: results.metrics[f"input_model/{k}"] for k in own if f"input_model/{k}" in results.metrics}
    if inputs:
        return Scores(step, own, inputs, "input model")
    # a first stage has no earlier model to compare with: its multiple-choice accuracies stand beside chance
    chance = {k: results.metrics[_chance(k)] for k in own if _chance(k) in results.metrics}
    return Scores(step, own, chance, "chance" if chance else None)


def _chance(name: str) -> str:
    """The chance level recorded beside a multiple-choice accuracy (``facts_mc/acc`` -> ``facts_mc/chance_acc``)."""
    task, _, metric = name.rpartition("/")
    return f"{task}/chance_acc" if metric in ("acc", "acc_norm") else ""


def _draw(title: str, curves: list[Curve], scores: list[Scores], target: Path) -> dict[str, list[str]]:
    import matplotlib

    matplotlib.use("Agg")  # no display: a file, whatever machine draws it
    from matplotlib import pyplot as plt

    rows = max(len(curves), len(scores))
    columns = (1 if curves else 0) + (1 if scores else 0)
    fig, grid = plt.subplots(rows, columns, figsize=(6.5 * columns, 3.6 * rows), squeeze=False)
    for row, curve in enumerate(curves):
        _draw_curve(grid[row][0], curve)
    for row, score in enumerate(scores):
        _draw_scores(grid[row][columns - 1], score)
    for row in range(len(curves), rows):
        if curves:
            fig.delaxes(grid[row][0])
    for row in range(len(scores), rows):
        if scores:
            fig.delaxes(grid[row][columns - 1])
    drawn = {"training": [c.step for c in curves], "evaluation": [s.step for s in scores]}
    fig.suptitle(title)
    fig.tight_layout()
    tmp = target.with_name(f".{target.name}.tmp.png")
    fig.savefig(tmp, dpi=90, metadata={"Title": title, "Description": json.dumps(drawn)})
    plt.close(fig)
    tmp.replace(target)  # a reader never sees half a PNG
    return drawn


def _draw_curve(ax, curve: Curve) -> None:
    ax.plot(curve.iterations, curve.losses, marker=".", label="training loss")
    styles = iter([("tab:green", "--"), ("tab:red", ":"), ("tab:gray", "-.")])
    for name, value in curve.final.items():
        color, style = next(styles, ("tab:gray", "-."))
        ax.axhline(value, color=color, linestyle=style, label=f"{name} {value:.3f}")
    ax.set_title(f"{curve.step}: loss")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (nats/token)")
    ax.legend(fontsize=8)


def _draw_scores(ax, scores: Scores) -> None:
    rates = [name for name, value in scores.values.items() if 0.0 <= value <= 1.0]
    others = [name for name in scores.values if name not in rates]
    positions = range(len(rates))
    ax.barh([p + 0.2 for p in positions], [scores.values[n] for n in rates], height=0.4, label="this model")
    if scores.baseline_name:
        values = [scores.baseline.get(n, 0.0) for n in rates]
        ax.barh([p - 0.2 for p in positions], values, height=0.4, color="tab:gray", label=scores.baseline_name)
    ax.set_yticks(list(positions), rates, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_title(f"{scores.step}")
    if rates:
        ax.legend(fontsize=8, loc="lower right")
    lines = [
        f"{n} {scores.values[n]:.4g}"
        + (f" ({scores.baseline_name} {scores.baseline[n]:.4g})" if n in scores.baseline else "")
        for n in others
    ]
    if lines:
        ax.set_xlabel("\n".join(lines), fontsize=8)


def show(reference: str | None, out: Path | None) -> int:
    """The ``plot`` command."""
    from nemotron.launcher.runs import find_run

    drawn = plot_run(find_run(reference), out)
    print(f"wrote {drawn['png']}", file=sys.stderr)
    sys.stdout.write(json.dumps(drawn) + "\n")
    sys.stdout.flush()
    return 0
