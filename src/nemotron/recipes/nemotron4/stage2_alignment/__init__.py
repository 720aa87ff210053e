"""nemotron4 stage2: alignment with DPO of the stage1 checkpoint, as three steps that each run alone or together.

- ``data_curation``: preference pairs about the stage0 corpus's world (or your JSONL), tokenized for stage1's model
  -> ``PreferenceDataset``
- ``training``: DPO from stage1's Checkpoint against it as the frozen reference -> ``Checkpoint``
- ``evaluation``: preference accuracy and reward margin on held-out pairs, for the aligned and the input model
  -> ``Results``

Run the whole stage with ``python -m nemotron.recipes.nemotron4.stage2_alignment --init-checkpoint-path
STAGE1/training``. Nothing heavy is imported here: the launcher imports this package to plan.
"""

STEPS = ("data_curation", "training", "evaluation")
