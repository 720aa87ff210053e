"""nemotron4 stage0: pretraining, as three steps that each run alone, in a pipe, or together.

- ``data_curation``: the embedded world corpus (or your files) -> filtered, deduplicated, tokenized ``Dataset``
- ``training``: megatron-core pretraining on the Dataset -> ``Checkpoint``
- ``evaluation``: lm-eval on held-out facts and validation perplexity -> ``Results``

Run the whole stage with ``python -m nemotron.recipes.nemotron4.stage0_pretrain --scale tiny``. Nothing heavy is
imported here: the launcher imports this package to plan.
"""

STEPS = ("data_curation", "training", "evaluation")
