"""The one exception type whose message is shown to people as-is: one line, exit code 2, no traceback."""


class UserError(Exception):
    """Bad input from a person (a path, a name, a value). ``str(err)`` is the whole message."""

    exit_code = 2


# Exit code of a step that was asked to stop (SIGTERM/SIGUSR1: preemption or time limit), saved a checkpoint and
# wants to be run again: 75 is EX_TEMPFAIL from sysexits.h. The Slurm executor requeues the job on it.
REQUEUE_EXIT_CODE = 75

# Exit code of a rank whose hang watchdog fired (no unit of work finished for NEMOTRON_HANG_TIMEOUT seconds; see
# nemotron.heartbeat): the stacks are in its log and ``hang.json`` names the rank and the unit. A hang is often a
# bad node or a stuck collective, not the code: a fresh attempt may well finish.
HANG_EXIT_CODE = 76

# Exit code that means "do not run this again": nvidia-resiliency-ext's convention for a failure no restart can fix.
STOP_EXIT_CODE = 93
