"""A recipe of stages that are not three steps, from the toy steps: a 2-step stage, and a 4-step one that
starts from the first stage's checkpoint and fine-tunes twice (training -> finetune) before its evaluation."""

from nemotron.declaration import CPU, Input, Recipe, Stage, Step

TOY = "launcher_toy.stage0_toy"


def _step(name: str, module: str, artifact: str, *inputs: Input, option: str = "") -> Step:
    return Step(name, f"{TOY}.{module}", artifact, inputs, CPU, option)


RECIPE = Recipe(
    name="shapes",
    package="launcher_toy",
    stages=(
        Stage(
            "two",
            "s2",
            (
                _step("data_curation", "data_curation", "Dataset", option="data"),
                _step("training", "training", "Checkpoint", Input("dataset", "data_curation"), option="train"),
            ),
        ),
        Stage(
            "four",
            "s4",
            (
                _step("data_curation", "data_curation", "Dataset", option="data"),
                _step(
                    "training",
                    "training",
                    "Checkpoint",
                    Input("dataset", "data_curation"),
                    Input("init_checkpoint", "training", stage="two"),
                    option="train",
                ),
                _step(
                    "finetune",
                    "training",
                    "Checkpoint",
                    Input("dataset", "data_curation"),
                    Input("init_checkpoint", "training"),
                ),
                _step("evaluation", "evaluation", "Results", Input("checkpoint", "finetune"), option="eval"),
            ),
        ),
    ),
)
