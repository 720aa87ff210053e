"""The part of a batch script that runs the step as one attempt, classifies how it ended, and applies the policy.

Slurm runs the same script again for every attempt of a job (a requeue keeps the job id, so ``afterok`` dependents
keep waiting). Each attempt appends a ``start`` line and an ``end`` line to the job's attempts file
(``nemotron.launcher.failures``). The script:

1. closes the attempt before it if that one has a start but no end: the batch script died with its node (a node
   failure when one of that attempt's nodes is down or drained now), else Slurm requeued it without a word
   (preemption); Slurm does not place the job on a down node, and ``status`` also puts the failed nodes in the
   pending job's ``ExcNodeList``;
2. refuses to run once ``max_attempts`` are used, or after a node failure the policy does not retry (Slurm requeues
   such a job whatever the profile says); an attempt that reached its time limit after saving a newer checkpoint is
   a *segment* of a long run and does not count (``max_segments`` bounds those), so a run of many time-limit
   segments goes on as long as each makes progress;
3. runs the step in the background, forwarding the profile's signal to it (to the ranks alone under pyxis);
4. classifies the end: 0 completed; SIGTERM node_failure when a node of the job is down (Slurm ends and requeues
   a job that lost a node), else terminated (scancel, or a preemption Slurm requeues itself); the stop code
   stopped; the watchdog's marker hang; the signal within its lead (+ ``TIMER_SLACK_S``) of the job's end time
   time_limit, else preempted (75 alike); anything else application_error;
5. requeues the job when the class's policy is ``retry`` (a time limit only if the attempt saved a newer checkpoint)
   and attempts (segments, for a time limit) are left; otherwise the job ends with the step's exit code (non-zero:
   dependents are cancelled).

Values written into JSON come from Slurm (job ids, hostlists, epoch seconds) or from the launcher (class words),
never from a person, so ``printf`` writes them without escaping.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from nemotron.errors import REQUEUE_EXIT_CODE
from nemotron.launcher.failures import RETRIABLE_CLASSES

# Slurm sends --signal up to 60 s before its time (sbatch(1): "due to the resolution of event handling"), and the
# signal takes a moment to reach the shell
TIMER_SLACK_S = 75


def q(value: object) -> str:
    return shlex.quote(str(value))


def attempt_lines(
    step: list[str],
    *,
    signal: str | None,
    ranks_only: list[str] | None,
    attempts_file: str,
    progress_file: str,
    hang_marker: str,
    max_attempts: int,
    max_segments: int,
    retry: Sequence[str],
    stop_exit_code: int,
    exit_marker: str | None,
    per_task: bool = False,
    task_vars: bool = False,
) -> list[str]:
    """``per_task``: an array task of one step, its attempts file suffixed with its index; ``task_vars``: a sweep's
    task, whose files (``attempts_file``, ``progress_file``, ``hang_marker``, ``exit_marker``) and flags
    (``task_args``) the script set above for its index, so the arguments of the same names are not used."""
    forwarded = (signal or "").removeprefix("B:").split("@")[0] or None
    lead = int(signal.split("@")[1]) if signal and "@" in signal else 0
    policy = " ".join(sorted(set(retry) & set(RETRIABLE_CLASSES)))
    files = [
        f"attempts_file={q(attempts_file)}",
        *(['attempts_file="$attempts_file.$SLURM_ARRAY_TASK_ID"  # an array task: its own'] if per_task else []),
        f"progress_file={q(progress_file)}",
        f"hang_marker={q(hang_marker)}",
    ]
    lines = [
        "# attempts: a requeue runs this script again; each attempt appends its start and its end to the job's record",
        *(files if not task_vars else []),
        f"retried_classes={q(policy)}",
        "attempt=$(( ${SLURM_RESTART_COUNT:-0} + 1 ))",
        "export NEMOTRON_ATTEMPT=$attempt",
        # the record is bookkeeping: a write that fails (a full or read-only filesystem) never fails the job
        'mkdir -p -- "$(dirname -- "$attempts_file")" 2>/dev/null || true',
        'retried() { case " $retried_classes " in *" $1 "*) return 0 ;; esac; return 1; }',
        # attempts that were segments of a long run (a time limit after a newer checkpoint): not failures
        'segments() { n=$(grep -c \'"class":"time_limit","exit_code":[0-9-]*,"decision":"retry"\' '
        '"$attempts_file" 2>/dev/null); echo "${n:-0}"; }',
        "used() { echo $(( attempt - $(segments) )); }  # this attempt and the failures before it",
        # the step of the newest checkpoint the step reported (progress.json is one line of JSON, ours)
        'saved_step() { sed -n \'s/.*"checkpoint_step": *\\([0-9][0-9]*\\).*/\\1/p\' "$progress_file" '
        "2>/dev/null | tail -n 1 || true; }",
        "end_attempt() {  # number class exit_code decision detail",
        '  printf \'{"event":"end","attempt":%s,"class":"%s","exit_code":%s,"decision":"%s",'
        '"detail":"%s","time":%s}\\n\' "$1" "$2" "$3" "$4" "$5" "$(date +%s)" >> "$attempts_file" 2>/dev/null || true',
        "}",
        # the nodes of a hostlist that cannot run jobs now (slurm_state.down_nodes applies the same rule)
        "down_nodes() { sinfo -h -N -n \"$1\" -o '%N %t' 2>/dev/null "
        "| awk '$2 ~ /^(down|drain|drng|fail|failg)|[*]$/ {print $1}' | sort -u | paste -sd, - || true; }",
        "finish() {  # the job's last word: its exit code, also in the exit marker (read once Slurm forgets the job)",
        *([f'  echo "$1" > {q(exit_marker)}'] if exit_marker and not task_vars else []),
        *(['  echo "$1" > "$exit_marker"'] if task_vars else []),
        '  exit "$1"',
        "}",
        "",
        "# an attempt without an end was killed with its batch script: by a node failure if one of its nodes is down",
        'last=$(tail -n 1 "$attempts_file" 2>/dev/null || true)',
        'case "$last" in',
        '  *\'"event":"start"\'*)',
        "    before=$((attempt - 1))",
        '    before_nodes=$(printf \'%s\' "$last" | sed -n \'s/.*"nodes":"\\([^"]*\\)".*/\\1/p\')',
        '    failed=$(down_nodes "$before_nodes")',
        '    if [ -n "$failed" ]; then class=node_failure; else class=preempted; fi',
        '    if retried "$class" && [ "$(used)" -le ' + str(max_attempts) + " ]; then decision=retry; "
        "else decision=stop; fi",
        '    end_attempt "$before" "$class" null "$decision" "$failed"',
        '    if [ "$decision" = stop ]; then',
        f'      echo "attempt $before ended by $class; not running attempt $attempt (policy or {max_attempts} '
        'attempts used)" >&2',
        "      finish 1",
        "    fi",
        '    echo "attempt $before ended by $class${failed:+ ($failed)}: attempt $attempt runs on $SLURM_JOB_NODELIST" '
        ">&2 ;;",
        # Slurm requeues a job that lost a node whatever the profile says: the policy has the last word
        '  *\'"class":"node_failure"\'*\'"decision":"stop"\'*)',
        '    echo "attempt $((attempt - 1)) ended by a node failure the profile does not retry: not running again" >&2',
        "    finish 1 ;;",
        "esac",
        f'if [ "$(used)" -gt {max_attempts} ]; then',
        f'  echo "requeued by Slurm after all {max_attempts} attempts: not running the step again" >&2',
        "  finish 1",
        "fi",
        "",
        "start_step=$(saved_step)",
        'printf \'{"event":"start","attempt":%s,"job_id":"%s","nodes":"%s","checkpoint_step":%s,'
        '"time":%s}\\n\' "$attempt" "$SLURM_JOB_ID" "$SLURM_JOB_NODELIST" "${start_step:-null}" '
        '"$(date +%s)" >> "$attempts_file" 2>/dev/null || true',
        'rm -f "$hang_marker"',
        # the job's end time in epoch seconds; empty without a limit ("NONE") or when squeue cannot say
        'end_time=$(squeue -h -j "$SLURM_JOB_ID" -o %e 2>/dev/null || true)',
        'case "$end_time" in [0-9]*) end_time=$(date -d "$end_time" +%s 2>/dev/null || true) ;; *) end_time= ;; esac',
        "",
        "# the step runs in the background so this shell can forward signals to it",
        "set +e",
        " ".join(q(a) for a in step) + (' "${task_args[@]}"' if task_vars else "") + " &",
        "step_pid=$!",
        "signalled_at=",
    ]
    if forwarded and ranks_only:
        lines += ranks_only
        lines.append(
            f'trap \'signalled_at=$(date +%s); echo "forwarding SIG{forwarded} to the ranks of the step" >&2; '
            f"signal_ranks {forwarded}' {forwarded}"
        )
    elif forwarded:
        lines.append(
            f'trap \'signalled_at=$(date +%s); echo "forwarding SIG{forwarded} to the step" >&2; '
            f"kill -{forwarded} $step_pid' {forwarded}"
        )
    # TERM is scancel (or a preemption Slurm requeues itself): pass it on, and do not requeue from here
    lines += [
        "terminated=0",
        "trap 'terminated=1; kill -TERM $step_pid 2>/dev/null' TERM",
        'while kill -0 "$step_pid" 2>/dev/null; do wait "$step_pid"; done',
        'wait "$step_pid"',
        "rc=$?",
        "set -e",
        "",
        "# what ended this attempt, and whether it gets another",
        "detail=",
        'if [ "$rc" -eq 0 ]; then class=completed',
        # SIGTERM: scancel, a preemption Slurm requeues itself, or Slurm ending the job because a node went down
        'elif [ "$terminated" -eq 1 ]; then',
        '  detail=$(down_nodes "$SLURM_JOB_NODELIST")',
        '  if [ -n "$detail" ]; then class=node_failure; else class=terminated; fi',
        f'elif [ "$rc" -eq {stop_exit_code} ]; then class=stopped',
        'elif [ -e "$hang_marker" ]; then class=hang',
        f'elif [ -n "$signalled_at" ] && [ -n "$end_time" ] && [ $((end_time - signalled_at)) -le '
        f"{lead + TIMER_SLACK_S} ]; then class=time_limit",
        f'elif [ -n "$signalled_at" ] || [ "$rc" -eq {REQUEUE_EXIT_CODE} ]; then class=preempted',
        "else class=application_error",
        "fi",
        "decision=stop",
        'if [ "$class" = completed ]; then decision=done',
        'elif [ "$class" = terminated ]; then decision=  # Slurm decides: cancelled, or requeued after preemption',
        'elif ! retried "$class"; then detail="the profile does not retry $class"',
        'elif [ "$class" = time_limit ] && [ "$(saved_step)" = "$start_step" ]; then '
        'detail="no newer checkpoint in this attempt"',
        'elif [ "$class" = time_limit ] && [ "$(segments)" -ge ' + str(max_segments) + " ]; then "
        f'detail="all {max_segments} time-limit segments used"',
        f'elif [ "$class" != time_limit ] && [ "$(used)" -ge {max_attempts} ]; then '
        f'detail="all {max_attempts} attempts used"',
        "else decision=retry",
        "fi",
        'end_attempt "$attempt" "$class" "$rc" "$decision" "$detail"',
        'if [ "$decision" = retry ] && [ "$class" = node_failure ]; then',
        '  echo "attempt $attempt ended by a node failure ($detail): Slurm requeues the job without it" >&2',
        '  exit "$rc"',
        "fi",
        'if [ "$decision" = retry ]; then',
        '  echo "attempt $attempt ended by $class (exit code $rc): requeued to resume from its last checkpoint" >&2',
        '  scontrol requeue "$SLURM_JOB_ID"',
        '  exit "$rc"',
        "fi",
        'if [ "$class" != completed ]; then echo "attempt $attempt ended by $class (exit code $rc)${detail:+: '
        '$detail}" >&2; fi',
        'finish "$rc"',
    ]
    return lines
