"""A recipe whose evaluation declares an input (``tokenizer``) its Config has no ``tokenizer_path`` field for."""

from nemotron.declaration import CPU, Input, Recipe, Stage, Step

TOY = "launcher_toy.stage0_toy"

RECIPE = Recipe(
    name="broken",
    package="launcher_toy",
    stages=(
        Stage(
            "stage0_toy",
            "stage0",
            (
                Step("data_curation", f"{TOY}.data_curation", "Dataset", (), CPU),
                Step("training", f"{TOY}.training", "Checkpoint", (Input("dataset", "data_curation"),), CPU),
                Step(
                    "evaluation",
                    f"{TOY}.evaluation",
                    "Results",
                    (Input("checkpoint", "training"), Input("tokenizer", "data_curation")),
                    CPU,
                ),
            ),
        ),
    ),
)
