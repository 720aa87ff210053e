"""nemotron4 stage1: instruction tuning of the stage0 checkpoint, as three steps that each run alone or together.

- ``data_curation``: conversations about the stage0 corpus's world -> chat-templated, assistant-masked, packed rows
- ``training``: supervised fine-tuning from stage0's Checkpoint -> ``Checkpoint``
- ``evaluation``: held-out instructions and stage0's own tasks, for the tuned and the input model -> ``Results``

Run the whole stage with ``python -m nemotron.recipes.nemotron4.stage1_instruction_tuning --init-checkpoint-path
STAGE0/training``. Nothing heavy is imported here: the launcher imports this package to plan.
"""

STEPS = ("data_curation", "training", "evaluation")
