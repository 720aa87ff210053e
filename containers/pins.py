"""Install-time helper of the recipes' Dockerfile, containers/Dockerfile (runs inside the build; standard library).

python pins.py constraints      # pins of the base image's CUDA-built packages, one `name==version` a line
python pins.py requirements     # the project's dependencies minus those the base image provides (transformer-engine)
python pins.py check-gpu-extra  # fail the build if the base lacks what the project's `gpu` extra asks for
"""

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
# Built against the base's CUDA: a resolver must never replace them with PyPI wheels.
BASE_PROVIDED = re.compile(
    r"^(torch|torchvision|torchaudio|triton|pytorch-triton|transformer-engine.*|apex|flash-attn"
    r"|nvidia-.*|cuda-.*|cupy.*|nvfuser|tensorrt.*)$"
)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalized(re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0])


def constraints() -> list[str]:
    pins = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and BASE_PROVIDED.match(normalized(name)):
            pins[normalized(name)] = f"{normalized(name)}=={dist.version}"
    return sorted(pins.values())


def project() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["project"]


def requirements() -> list[str]:
    gpu = {requirement_name(r) for r in project().get("optional-dependencies", {}).get("gpu", [])}
    return [r for r in project()["dependencies"] if requirement_name(r) not in gpu]


def check_gpu_extra() -> None:
    installed = {normalized(d.metadata["Name"]) for d in importlib.metadata.distributions() if d.metadata["Name"]}
    for requirement in project().get("optional-dependencies", {}).get("gpu", []):
        name = requirement_name(requirement)
        if name not in installed:
            sys.exit(f"the base image lacks {name} (the project's gpu extra): use an NGC PyTorch image as BASE_IMAGE")


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) == 2 else ""
    if command == "constraints":
        print("\n".join(constraints()))
    elif command == "requirements":
        print("\n".join(requirements()))
    elif command == "check-gpu-extra":
        check_gpu_extra()
    else:
        sys.exit(__doc__)
