"""nano2 stage1: instruction tuning (SFT) of the stage0 model, as three steps that each run alone, piped or together.

Steps (each a module with ``Config`` and ``main(config) -> Artifact``):

- ``data_curation``: world instructions (or chat JSONL) -> chat template -> stage0's tokenizer -> packed ``Dataset``
  with an assistant-only loss mask (takes the stage0 ``Checkpoint``: its vocabulary and sequence length)
- ``training``: masked SFT starting from the stage0 ``Checkpoint`` -> ``Checkpoint``
- ``evaluation``: greedy exact match on held-out instructions for the tuned AND the stage0 model, plus stage0's tasks
  (regression) -> ``Results``

Run the whole stage with ``python -m nemotron.recipes.nano2.stage1_instruction_tuning --init-checkpoint-path DIR``.
Nothing heavy is imported here: the launcher imports this package to plan.
"""

STEPS = ("data_curation", "training", "evaluation")
