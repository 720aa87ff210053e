"""The one exception type whose message is shown to people as-is: one line, exit code 2, no traceback."""


class UserError(Exception):
    """Bad input from a person (a path, a name, a value). ``str(err)`` is the whole message."""

    exit_code = 2


# Exit code of a step that was asked to stop (SIGTERM/SIGUSR1: preemption or time limit), saved a checkpoint and
# wants to be run again: 75 is EX_TEMPFAIL from sysexits.h. The Slurm executor requeues the job on it.
REQUEUE_EXIT_CODE = 75
