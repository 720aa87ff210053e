"""Shared fixtures, each defined in the module named for its area."""

from data_curated import curated_dataset  # noqa: F401
from docker_engine import code_snapshot, docker_engine, docker_env, docker_test_image  # noqa: F401
from eval_toy import toy_world  # noqa: F401
from launcher_env import launcher_env  # noqa: F401
from pyxis_cluster import pyxis_cluster, pyxis_cluster_2nodes, pyxis_install, tiny_squashfs  # noqa: F401
from pyxis_image import pyxis_nano2_image  # noqa: F401
from slurm_cluster import slurm_cluster, slurm_cluster_2nodes, slurm_cluster_3nodes, slurm_cluster_acct  # noqa: F401
from ssh_server import loopback_ssh  # noqa: F401
from stage_runs import stage0_tiny_run, stage1_tiny_run  # noqa: F401
