"""Evaluation building blocks: the lm-eval adapter for our CPU/GPU language models, run-time task YAMLs, harness.

Kept empty of imports on purpose: ``artifacts`` is light (pydantic only); the other modules import torch/lm_eval.
"""
