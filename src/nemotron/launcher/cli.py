"""``nemotron-launch``: plan a recipe target on a cluster profile, then run or submit it; watch, read logs, cancel.

    nemotron-launch nano2 --executor local --scale tiny          # the whole recipe on this machine
    nemotron-launch nano2.stage0 --profile eos --dry-run         # the plan and job scripts, nothing submitted
    nemotron-launch nano2.stage0.training training.train_iters=50 training.dataset_path=DIR
    nemotron-launch status [RUN] | logs RUN [STEP] [--follow] | cancel RUN | list | profiles [NAME]
    nemotron-launch runs [--state running] [--target nano2] [--since 2d] [-n 50]   # every run, newest first
    nemotron-launch cancel --state running --target nano2 [--yes]               # every run a filter selects
    nemotron-launch new-recipe NAME                               # a new recipe from the template (docs/)
    nemotron-launch lineage ARTIFACT_DIR|RUN [--format dot] [--png FILE]   # what an artifact was made from
    nemotron-launch plot [RUN] [--out FILE.png]                   # loss curves and evaluations of a run, one PNG

stdout carries exactly one JSON document (run id, per-step state and artifact path); everything meant for people goes
to stderr. Bad input is one line on stderr and exit code 2. Shell completion: ``nemotron-launch
--tyro-print-completion bash`` (or zsh, tcsh).

Only tyro and the dataclasses below are imported at start-up; planning, profiles and executors are imported by the
command that needs them, so ``--help`` stays fast and nothing here pulls torch.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import re
import sys
from contextlib import redirect_stderr
from pathlib import Path
from typing import Annotated, Any

import tyro
from tyro.conf import Positional, UseAppendAction, arg, subcommand

from nemotron.errors import UserError
from nemotron.launcher.executors.registry import EXECUTORS

SUBCOMMANDS = ("run", "status", "runs", "logs", "cancel", "list", "profiles", "build", "new-recipe", "lineage", "plot")
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/nemotron: an OSError about these files is a bug
EXIT_FOR_STATE = {"completed": 0, "running": 0, "planned": 0, "failed": 1, "cancelled": 130}


def emit(document: dict[str, Any]) -> None:
    """The one JSON document of a command, on stdout."""
    sys.stdout.write(json.dumps(document, default=str) + "\n")
    sys.stdout.flush()


@dataclasses.dataclass
class Run:
    """Plan a target (nano2, nano2.stage0, nano2.stage0.training), validate it, then run or submit it."""

    target: Positional[Annotated[str, arg(metavar="TARGET")]]
    """recipe, recipe.stage or recipe.stage.step (see `nemotron-launch list`)"""
    overrides: Positional[Annotated[tuple[str, ...], arg(metavar="[STEP.FIELD=VALUE ...]")]] = ()
    """step overrides: STEP.FIELD=VALUE or STAGE.STEP.FIELD=VALUE, e.g. training.train_iters=50"""
    profile: Annotated[str | None, arg(metavar="NAME|PATH")] = None
    """cluster profile name or path to a .toml (see `nemotron-launch profiles`); default: named after --executor"""
    executor: Annotated[str | None, arg(metavar="{" + ",".join(EXECUTORS) + "}")] = None
    """default: the profile's"""
    scale: Annotated[str, arg(metavar="{tiny,small,medium,full}")] = "tiny"
    """how much of the full data and compute (1, 10, 30, 100 %)"""
    artifact_root: Annotated[str | None, arg(metavar="DIR")] = None  # a str: '' must be refused, not read as '.'
    """where artifacts and run records go (default: the profile's artifact_root)"""
    dry_run: bool = False
    """print the plan and each job's script; run nothing"""
    detach: bool = False
    """return once the jobs are started/submitted (follow with `status` / `logs --follow`)"""
    force: bool = False
    """re-run steps whose output already exists"""
    sweep: UseAppendAction[Annotated[tuple[str, ...], arg(metavar="STEP.FIELD=V1,V2,...")]] = ()
    """plan the cross product of these values as tasks of one array per step (repeat for more fields of the step);
    the steps after it run per task"""
    max_parallel: Annotated[int | None, arg(metavar="M")] = None
    """at most M tasks of an array or a sweep at once (default: the profile's [arrays] max_parallel)"""

    def execute(self) -> int:
        from nemotron.launcher.claims import abandon, claim_outputs
        from nemotron.launcher.executors.base import ExecutorError, get_executor, still_producing
        from nemotron.launcher.plan import build_plan, describe
        from nemotron.launcher.profiles import profile_for
        from nemotron.launcher.report import print_status
        from nemotron.launcher.runs import check_writable, create_run

        profile = profile_for(self.profile, self.executor)
        plan = build_plan(
            self.target, profile, self.scale, self.overrides, self.force, self.artifact_root, _files_here(profile),
            self.sweep, self.max_parallel,
        )  # fmt: skip
        if self.dry_run:
            try:
                rendered = get_executor(plan.executor).render(plan, profile)
            except ExecutorError as err:
                print(f"note: plan only, no job scripts: {err}", file=sys.stderr)
                rendered = {}
            print(describe(plan), file=sys.stderr)
            for name, text in rendered.items():
                print(f"---- {name} ----\n{text.rstrip()}", file=sys.stderr)
            emit(_dry_run_document(plan, rendered))
            return 0
        executor = get_executor(plan.executor)
        if executor.artifact_root_is_here(profile):
            check_writable(plan.artifact_root)
        if plan.jobs_to_run:
            executor.check(plan, profile)  # secrets set, docker installed...: fail before anything is recorded
        else:
            executor = None
        claim = functools.partial(claim_outputs, still_producing=still_producing)
        run = create_run(plan, profile.model_dump(mode="json"), claim, detached=self.detach)  # checks the index first
        print(describe(plan), file=sys.stderr)  # after: a bad input above stays the one line on stderr
        if executor is not None:
            try:
                run = executor.submit(plan, profile, run, detach=self.detach)
            except UserError as err:  # submit undid what it began: the record says why, the claims go
                abandon(run, f"not started: {err}")
                raise
            except BaseException as err:  # a bug (its traceback stays) or Ctrl-C: the next launch is not blocked
                abandon(run, f"not started: {type(err).__name__}: {err}")
                raise
        print_status(run)
        if self.detach and not run.finished:
            print(f"follow it with: nemotron-launch status {run.run_id} / logs {run.run_id} --follow", file=sys.stderr)
        emit(run.summary())
        return EXIT_FOR_STATE.get(run.state, 1)


def _files_here(profile) -> bool:
    """Whether the jobs of ``profile`` see this machine's files (so a path a person named is checked at plan time)."""
    from nemotron.launcher.executors.base import ExecutorError, get_executor

    try:
        return get_executor(profile.executor).artifact_root_is_here(profile)
    except ExecutorError:  # an executor this installation lacks: it says so when the plan is handed to it
        return False


def _dry_run_document(plan, rendered: dict[str, str]) -> dict[str, Any]:
    import shlex

    return {
        "dry_run": True,
        "target": plan.target,
        "profile": plan.profile,
        "executor": plan.executor,
        "artifact_root": str(plan.artifact_root),
        "jobs": {
            job.name: {
                "state": "reuse" if job.reuse else "run",
                "command": shlex.join(job.command()),
                "depends_on": job.depends_on,
                "inputs": {k: str(v) for k, v in job.inputs.items()},
                "artifact": str(job.output),
                "resources": job.resources.model_dump(),
                "estimate": job.estimate,
            }
            for job in plan.jobs
        },
        **({"sweeps": _sweeps_document(plan)} if any(job.sweep for job in plan.jobs) else {}),
        "rendered": rendered,
    }


def _sweeps_document(plan) -> dict[str, Any]:
    """Each sweep group of the plan: its tasks (index, values, job, artifact, run or reuse), what at once."""
    from nemotron.launcher.sweeps import groups

    return {
        name: {
            "max_parallel": jobs[0].sweep.max_parallel,
            "tasks": [
                {
                    "index": job.sweep.index,
                    "values": job.sweep.values,
                    "job": job.name,
                    "artifact": str(job.output),
                    "state": "reuse" if job.reuse else "run",
                }
                for job in jobs
            ],  # fmt: skip
        }
        for name, jobs in groups(plan.jobs)
        if jobs[0].sweep is not None
    }


@dataclasses.dataclass
class Status:
    """Per-step state of a run (the newest one by default): state, attempt, job id, nodes, duration, progress (with
    the last loss and an ETA while training runs), artifact, metric; every attempt of a step that failed or ran
    more than once, in words."""

    run: Positional[Annotated[str | None, arg(metavar="[RUN]")]] = None
    """run id or run directory (default: the newest)"""
    follow: bool = False
    """show the run live on stderr (states, attempts, training progress) until it has finished"""

    def execute(self) -> int:
        from nemotron.launcher.executors.base import get_executor, log_tail, watch
        from nemotron.launcher.report import print_failure, print_status
        from nemotron.launcher.runs import find_run

        run = find_run(self.run)
        executor = get_executor(run.executor)
        if self.follow:
            try:
                run = watch(executor, run)
            except KeyboardInterrupt:
                print(f"\nstopped following; the run goes on: nemotron-launch status {run.run_id}", file=sys.stderr)
        run = run.model_copy(update={"steps": executor.status(run)})
        print_status(run)
        for name, record in run.steps.items():
            if record.state in ("failed", "timeout"):
                print_failure(run, name, log_tail(record.log))
        emit(run.summary())
        return 0


@dataclasses.dataclass
class Logs:
    """The log of one step of a run (default: the failed one, else the latest started)."""

    run: Positional[Annotated[str, arg(metavar="RUN")]]
    """run id or run directory"""
    step: Positional[Annotated[str | None, arg(metavar="[STEP]")]] = None
    """step name (training), or stage.step (stage0.training)"""
    follow: bool = False
    """keep printing until the step finishes"""

    def execute(self) -> int:
        from nemotron.launcher.executors.base import get_executor
        from nemotron.launcher.runs import RunError, find_run

        run = find_run(self.run)
        job = _job_name(run, self.step)
        executor = get_executor(run.executor)
        if _not_started(run.steps[job]):
            record = executor.status(run)[job]  # the record may be stale: Slurm states are only polled
            waits = self.follow and record.state in ("planned", "pending")  # --follow waits for it to start
            if _not_started(record) and not waits:
                reason = record.reason or ("its output already existed" if record.state == "reused" else None)
                why = f"{record.state}: {reason}" if reason else record.state
                hint = ", or wait for it with --follow" if record.state in ("planned", "pending") else ""
                raise RunError(f"step {job} of run {run.run_id} has not started ({why}): it has no log{hint}")
        for chunk in executor.logs(run, job, follow=self.follow):
            sys.stderr.write(chunk)
            sys.stderr.flush()
        emit({"run_id": run.run_id, "step": job, "log": str(run.steps[job].log)})
        return 0


def _not_started(record) -> bool:
    """No log to show: planned or reused (never handed to the executor), pending without having run yet (a requeued
    job has), or cancelled before it was submitted; a log on disk says otherwise whatever the state."""
    if record.log is not None and Path(record.log).exists():
        return False
    if record.state == "pending":
        return record.started_at is None
    return record.state in ("planned", "reused") or (record.state == "cancelled" and record.job_id is None)


def _job_name(run, step: str | None) -> str:
    from nemotron.launcher.runs import RunError

    if step is None:
        started = [n for n, r in run.steps.items() if r.state not in ("planned", "reused")]
        failed = [n for n in started if run.steps[n].state == "failed"]
        if failed or started:
            return failed[0] if failed else started[-1]
        raise RunError(f"run {run.run_id} has no started step yet")
    from nemotron.launcher.targets import load_recipe

    recipe = load_recipe(run.plan.recipe)
    for job in run.plan.jobs:
        stage = recipe.stage(job.stage)
        # stage0.training.2 names a sweep's task (its job's name after the stage) as stage0.training names a job
        if step in (job.name, job.step, f"{stage.alias if stage else job.stage}.{job.name.partition('.')[2]}"):
            return job.name
    raise RunError(f"run {run.run_id} has no step {step!r}: its steps are {', '.join(run.steps)}")


@dataclasses.dataclass
class RunFilters:
    state: Annotated[tuple[str, ...], arg(metavar="{planned,running,completed,failed,cancelled,unknown}")] = ()
    """runs in these states (running: any job pending or running; unknown: its record is gone)"""
    target: Annotated[str | None, arg(metavar="TARGET")] = None
    """runs of this target or within it (nano2 takes in nano2.stage0 and nano2.stage0.training)"""
    since: Annotated[str | None, arg(metavar="30m|12h|2d|1w|DATE")] = None
    """runs launched since then"""
    n: Annotated[str | None, arg(name="n", aliases=("-n",), metavar="N")] = None  # a str: "-n x" gets our one line
    """at most the N newest runs"""

    def run_filter(self):
        from nemotron.launcher.run_list import RunFilter

        return RunFilter.parse(self.state, self.target, self.since, self.n)


@dataclasses.dataclass
class Runs(RunFilters):
    """Runs, newest first: id, target, scale, executor/profile, state, started, duration, steps done, the last
    finished step's metric, failures in words. A table on a terminal, JSON on stdout otherwise. The runs in flight
    are brought up to date with one scheduler call per executor (one sacct, or squeue, for every Slurm run)."""

    def execute(self) -> int:
        from nemotron.launcher.runs_command import list_runs

        return list_runs(self.run_filter())


@dataclasses.dataclass
class Cancel(RunFilters):
    """Stop every unfinished job of the runs named, or of the runs in flight a filter selects (asking first on a
    terminal; --yes elsewhere), with one scheduler call per batch of jobs."""

    runs: Positional[Annotated[tuple[str, ...], arg(metavar="[RUN ...]")]] = ()
    """run ids or run directories"""
    yes: bool = False
    """cancel what the filter selects without asking"""

    def execute(self) -> int:
        from nemotron.launcher.report import print_status
        from nemotron.launcher.runs import find_run
        from nemotron.launcher.runs_command import cancel_runs, cancel_selected, check_cancel_arguments

        run_filter = self.run_filter()
        check_cancel_arguments(self.runs, run_filter)
        if not self.runs:
            cancelled, code = cancel_selected(run_filter, self.yes)
            emit({"cancelled": [run.summary() for run in cancelled]})
            return code
        cancelled = cancel_runs([find_run(reference) for reference in self.runs])
        if len(cancelled) == 1:
            print_status(cancelled[0])
            emit(cancelled[0].summary())
        else:
            emit({"cancelled": [run.summary() for run in cancelled]})
        return 0


@dataclasses.dataclass
class Lineage:
    """What an artifact was made from, back to its raw sources: each artifact's type, step, scale, headline metric,
    code digest and image. A tree on a terminal, JSON on stdout otherwise; --format dot for Graphviz."""

    reference: Positional[Annotated[str, arg(metavar="ARTIFACT_DIR|RUN")]]
    """an artifact directory, or a run id / run directory (its last artifacts)"""
    format: Annotated[str, arg(metavar="{auto,text,json,dot}")] = "auto"
    """auto: a tree on a terminal, JSON when stdout is not one"""
    png: Annotated[Path | None, arg(metavar="FILE")] = None
    """also draw the graph into this PNG (needs Graphviz's dot)"""

    def execute(self) -> int:
        from nemotron.launcher.lineage import show

        return show(self.reference, self.format, self.png)


@dataclasses.dataclass
class Plot:
    """One PNG of a run: the loss curve of each training step, each evaluation's figures beside its baseline."""

    run: Positional[Annotated[str | None, arg(metavar="[RUN]")]] = None
    """run id or run directory (default: the newest)"""
    out: Annotated[Path | None, arg(metavar="FILE.png")] = None
    """where to write it (default: plot.png in the run's directory)"""

    def execute(self) -> int:
        from nemotron.launcher.plot import show

        return show(self.run, self.out)


@dataclasses.dataclass
class List:
    """Recipes, their stages and steps (with each step's module and default resources per scale), every target."""

    def execute(self) -> int:
        from nemotron.launcher.resources import per_scale_text
        from nemotron.launcher.targets import all_targets, load_recipe, recipe_modules
        from nemotron.scale import SCALES

        document: dict[str, Any] = {"recipes": {}, "targets": all_targets()}
        for name in recipe_modules():
            recipe = load_recipe(name)
            print(f"{name}: {recipe.description}", file=sys.stderr)
            stages = {}
            for stage in recipe.stages:
                print(f"  {stage.alias} ({stage.name})", file=sys.stderr)
                steps = {}
                for step in stage.steps:
                    per_scale = {scale: step.resources.at(scale) for scale in SCALES}
                    print(
                        f"    {step.name:<14} {step.module}\n    {'':<14} {per_scale_text(per_scale)}", file=sys.stderr
                    )
                    steps[step.name] = {
                        "module": step.module,
                        "artifact_type": step.artifact_type,
                        "inputs": {i.name: f"{i.stage or stage.name}.{i.step}" for i in step.inputs},
                        "resources": {
                            scale: {k: v for k, v in dataclasses.asdict(r).items() if k != "scales"}
                            for scale, r in per_scale.items()
                        },
                    }
                stages[stage.name] = {"alias": stage.alias, "steps": steps}
            document["recipes"][name] = {"description": recipe.description, "stages": stages}
        emit(document)
        return 0


@dataclasses.dataclass
class Profiles:
    """List cluster profiles, or show one fully resolved (extends merged, variables expanded) with the allocation of
    every step of every recipe on it, per scale."""

    name: Positional[str | None] = None
    """profile name or path to a .toml"""

    def execute(self) -> int:
        from nemotron.launcher.profiles import available_profiles, load_profile
        from nemotron.launcher.resources import profile_allocations

        if self.name is not None:
            profile = load_profile(self.name)
            print(f"profile {profile.name}: {profile.description}", file=sys.stderr)
            by_recipe, lines = profile_allocations(profile)
            estimates = _training_estimates(profile, by_recipe)
            print("\n".join(lines), file=sys.stderr)
            for recipe, jobs in estimates.items():
                print(
                    f"{recipe} training jobs on {profile.name}, per scale, with their default settings:",
                    file=sys.stderr,
                )
                for job, per_scale in jobs.items():
                    for scale, estimate in per_scale.items():
                        shown = estimate.get("error") or "; ".join(estimate["lines"])
                        print(f"  {job} {scale}: {shown}", file=sys.stderr)
            emit({**profile.model_dump(mode="json"), "allocations": by_recipe, "estimates": estimates})
            return 0
        found = available_profiles()
        for name, path in sorted(found.items()):
            print(f"{name:<14} {path}", file=sys.stderr)
        emit({"profiles": {name: str(path) for name, path in sorted(found.items())}})
        return 0


def _training_estimates(profile, recipes) -> dict[str, dict[str, Any]]:
    """Per recipe the profile fits: each estimating step's figures per scale (``plan.default_estimates``)."""
    from nemotron.launcher.plan import default_estimates
    from nemotron.launcher.targets import load_recipe

    return {name: default_estimates(profile, load_recipe(name)) for name in recipes}


@dataclasses.dataclass
class Build:
    """Build the recipe's container image (and, for pyxis profiles, its enroot squashfs)."""

    recipe: Positional[str] = "nano2"
    profile: str | None = None
    base_image: str | None = None
    dockerfile: str | None = None
    """a Dockerfile to build instead of containers/RECIPE/Dockerfile (same context and .dockerignore)"""
    push: str | None = None
    """registry to push the image to"""

    def execute(self) -> int:
        try:
            from nemotron.launcher import containers
        except ModuleNotFoundError as exc:
            if exc.name != "nemotron.launcher.containers":
                raise
            raise UserError("build is not available in this installation (nemotron.launcher.containers)") from None
        return containers.build_cli(self)


@dataclasses.dataclass
class NewRecipe:
    """Write a new recipe (src/nemotron/recipes/NAME: declaration, README, a pretraining stage of three working steps
    on the kit's building blocks; containers/NAME) into this checkout; see docs/adding-a-recipe.md."""

    name: Positional[Annotated[str, arg(metavar="NAME")]]
    """the recipe's name: a lowercase Python package name, the first part of its targets"""

    def execute(self) -> int:
        from nemotron.launcher.scaffold import ScaffoldError, new_recipe
        from nemotron.launcher.targets import recipe_modules

        repo = PACKAGE_DIR.parents[1]  # src/nemotron -> the checkout
        if not (repo / "pyproject.toml").is_file():
            raise ScaffoldError(f"new-recipe writes into a source checkout of nemotron-launch; {repo} is not one")
        written = new_recipe(self.name, repo, set(recipe_modules()), SUBCOMMANDS)
        for path in written.values():
            print(f"wrote {path}", file=sys.stderr)
        print(
            f"next: nemotron-launch {self.name} --executor local --scale tiny (docs/adding-a-recipe.md)",
            file=sys.stderr,
        )
        emit({"recipe": self.name, **{kind: str(path) for kind, path in written.items()}})
        return 0


Command = (
    Annotated[Run, subcommand("run")]
    | Annotated[Status, subcommand("status")]
    | Annotated[Runs, subcommand("runs")]
    | Annotated[Logs, subcommand("logs")]
    | Annotated[Cancel, subcommand("cancel")]
    | Annotated[List, subcommand("list")]
    | Annotated[Profiles, subcommand("profiles")]
    | Annotated[Build, subcommand("build")]
    | Annotated[NewRecipe, subcommand("new-recipe")]
    | Annotated[Lineage, subcommand("lineage")]
    | Annotated[Plot, subcommand("plot")]
)

_BOX_RE = re.compile(r"[│╭╮╰╯─┃━┏┓┗┛]+")
_HELP_HINT_RE = re.compile(r"(For full helptext, run )?nemotron-launch( \w+)? --help")


def parse(argv: list[str]):
    """tyro's parse; its multi-line error box becomes the one-line message bad input gets everywhere else."""
    if argv and argv[0] not in SUBCOMMANDS and not argv[0].startswith("-"):
        argv = ["run", *argv]  # `nemotron-launch nano2 ...` is `nemotron-launch run nano2 ...`
    captured = io.StringIO()
    try:
        with redirect_stderr(captured):
            return tyro.cli(Command, args=argv, prog="nemotron-launch", description=__doc__)
    except SystemExit as exit_:
        if exit_.code in (0, None):
            sys.stderr.write(captured.getvalue())
            raise
        lines = [_BOX_RE.sub(" ", line).strip() for line in captured.getvalue().splitlines()]
        words = [ln for ln in lines if ln and not ln.startswith(("For full helptext", "usage:", "Parsing error"))]
        message = _HELP_HINT_RE.sub("", " ".join(" ".join(words).split())).strip() or "invalid arguments"
        where = "nemotron-launch " + (f"{argv[0]} " if argv and argv[0] in SUBCOMMANDS else "")
        print(f"error: {message} (see {where}--help)", file=sys.stderr)
        raise SystemExit(2) from None


def entrypoint(argv: list[str] | None = None) -> None:
    """Run one command. What becomes one line on stderr and what stays a traceback:

    - ``UserError`` (bad input: a value, a name, a path, a profile, an environment variable): ``error: ...``, one
      line, exit code 2. The functions that read user input raise it, naming the value and what would be valid.
    - ``OSError`` naming a file (``err.filename``): the filesystem refusing a path the user chose (artifact root,
      state dir, a log, a profile) somewhere no check foresaw, e.g. a disk full, or permissions root bypasses in
      checks but a filesystem still enforces. One line naming the path and the reason, exit code 2.
    - Anything else (``TypeError``, ``KeyError``, an ``OSError`` without a file or about nemotron's own files...)
      is a bug in nemotron: the traceback is kept, it is what a bug report needs.
    """
    command = parse(list(sys.argv[1:] if argv is None else argv))
    try:
        code = command.execute()
    except UserError as err:
        _fail(str(err), err.exit_code)
    except OSError as err:
        if err.filename is None or Path(str(err.filename)).absolute().is_relative_to(PACKAGE_DIR):
            raise
        _fail(f"{err.filename}: {err.strerror or err}", 2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(code)


def _fail(message: str, exit_code: int) -> None:
    # Messages quote user values with repr; this is the guarantee for the rest (a value inside an exception from a
    # step's own checks): a control character never splits the one line.
    one_line = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)
    print(f"error: {one_line}", file=sys.stderr)
    raise SystemExit(exit_code) from None


if __name__ == "__main__":
    entrypoint()
