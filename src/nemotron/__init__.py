"""nemotron-launch: LLM training recipes from a laptop to multi-node Slurm clusters."""

__version__ = "0.1.0"
