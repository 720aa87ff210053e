"""nano2 stage2: alignment with DPO, as three steps that each run alone, in a pipe, or together.

Steps (each a module with ``Config`` and ``main(config) -> Artifact``):

- ``data_curation``: preference pairs (embedded world facts, or your JSONL) tokenized for the input model ->
  ``PreferenceDataset``
- ``training``: DPO from the input checkpoint against a frozen reference -> ``Checkpoint``
- ``evaluation``: preference accuracy and reward margin on held-out pairs, for this model and its input -> ``Results``

Run the whole stage with ``python -m nemotron.recipes.nano2.stage2_alignment --init-checkpoint-path STAGE1_CKPT``.
Nothing heavy is imported here: the launcher imports this package to plan.
"""

STEPS = ("data_curation", "training", "evaluation")
