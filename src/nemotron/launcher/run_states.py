"""Which states of a run's step are final, and which of those mean its output exists: the vocabulary the run
records (``runs``), their index (``run_index``) and the executors share, in a module that imports nothing."""

FINISHED_STATES = frozenset({"reused", "completed", "failed", "cancelled", "timeout", "unknown"})
SUCCESS_STATES = frozenset({"reused", "completed"})
