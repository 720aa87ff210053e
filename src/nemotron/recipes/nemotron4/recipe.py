"""The nemotron4 recipe, declared for the launcher: a dense Transformer after Nemotron-4 15B, pretrained (stage0)
then instruction-tuned from that checkpoint (stage1), then aligned with DPO from stage1's (stage2).

Light on purpose (the launcher imports it to plan): step modules are named, not imported. Built only from the kit
(``docs/adding-a-recipe.md``): it started as ``nemotron-launch new-recipe nemotron4``.
"""

from __future__ import annotations

from nemotron.declaration import Recipe, three_step_stage

PACKAGE = "nemotron.recipes.nemotron4"

RECIPE = Recipe(
    name="nemotron4",
    package=PACKAGE,
    description="Nemotron-4 15B: pretraining, SFT and DPO of a dense GQA Transformer LM (RoPE, squared-ReLU)",
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
