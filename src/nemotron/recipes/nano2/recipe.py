"""The nano2 recipe, declared for the launcher: stages, steps, artifact wiring and default resources.

Light on purpose (the launcher imports it to plan): step modules are named, not imported. A later stage is one more
``three_step_stage`` line, e.g. ``three_step_stage(PACKAGE, "stage1_instruction_tuning", "stage1",
init_from="stage0_pretrain")`` — its training then starts from stage0's checkpoint (``init_checkpoint_path``).
"""

from __future__ import annotations

from nemotron.declaration import Recipe, three_step_stage

PACKAGE = "nemotron.recipes.nano2"

RECIPE = Recipe(
    name="nano2",
    package=PACKAGE,
    description="Nemotron Nano 2: pretraining, instruction tuning and alignment of a hybrid Mamba-Transformer LM",
    stages=(
        three_step_stage(PACKAGE, "stage0_pretrain", "stage0"),
        three_step_stage(PACKAGE, "stage1_instruction_tuning", "stage1", init_from="stage0_pretrain"),
        three_step_stage(
            PACKAGE,
            "stage2_alignment",
            "stage2",
            init_from="stage1_instruction_tuning",
            dataset_type="PreferenceDataset",
        ),
    ),
)
