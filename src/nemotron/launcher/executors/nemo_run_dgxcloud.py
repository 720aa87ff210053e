"""NeMo-Run's DGX Cloud executor with its API secret kept out of every file NeMo-Run writes.

NeMo-Run serialises each task's executor, every field included, into its home (``configs/<task>_executor.yaml``,
the compressed experiment config, ``.dgx_jobs.json``), so a ``DGXCloudExecutor.client_secret`` holding the value
would be there in clear text. Ours holds a reference, ``$NAME``, and ``read_secret_at_use`` teaches the executor
class to read the variable only when it asks the API for a token, on a throwaway copy that nothing serialises.
``status``, ``logs`` and ``cancel`` from another shell therefore need the variable exported there too.

Why a patch of the class and not a subclass: NeMo-Run picks the scheduler and decides detachability by an
executor's exact class (``schedulers.api.EXECUTOR_MAPPING``, ``Experiment._DETACH_SUPPORTED_EXECUTORS``), and
rebuilds executors from their saved configs for status, so only the class itself reaches every path.
Imported only inside ``nemo_run.nemo_run_module`` (nothing the CLI imports at start pulls ``nemo_run``).
"""

from __future__ import annotations

import copy
import functools
import logging
import os

from nemo_run.core.execution.dgxcloud import DGXCloudExecutor

logger = logging.getLogger(__name__)
REFERENCE_PREFIX = "$"


def read_secret_at_use() -> None:
    """Once per process: a ``client_secret`` written ``$NAME`` is read from the environment variable NAME when a
    token is asked for; any other value is used as NeMo-Run always did."""
    original = DGXCloudExecutor.get_auth_token
    if getattr(original, "reads_secret_at_use", False):
        return

    @functools.wraps(original)
    def get_auth_token(self: DGXCloudExecutor) -> str | None:
        if not self.client_secret.startswith(REFERENCE_PREFIX):
            return original(self)
        name = self.client_secret.removeprefix(REFERENCE_PREFIX)
        if not os.environ.get(name):
            logger.error("%s is not set in this shell: the dgxcloud backend logs in with it", name)
            return None
        with_secret = copy.copy(self)  # the value never lands on an object NeMo-Run saves
        with_secret.client_secret = os.environ[name]
        return original(with_secret)

    get_auth_token.reads_secret_at_use = True
    DGXCloudExecutor.get_auth_token = get_auth_token
