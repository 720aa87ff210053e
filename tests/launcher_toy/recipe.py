"""The toy recipe's declaration: two three-step stages, stage1 training starting from stage0's checkpoint."""

from nemotron.declaration import Recipe, three_step_stage

PACKAGE = "launcher_toy"

RECIPE = Recipe(
    name="toy",
    package=PACKAGE,
    stages=(
        three_step_stage(PACKAGE, "stage0_toy", "stage0"),
        three_step_stage(PACKAGE, "stage1_toy", "stage1", init_from="stage0_toy"),
    ),
)
