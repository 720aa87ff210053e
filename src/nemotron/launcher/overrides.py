"""Step overrides (``training.train_iters=50``, ``stage0.training.lr=1e-3``) checked against the step's Config.

Values are converted by the field's annotation (int, float, bool, str, Path, Literal, ``X | None``, ``list[X]``),
and a Config is turned back into the step's own CLI flags with only its non-default values, in tyro's spelling.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal

from nemotron.errors import UserError

TRUE_WORDS = {"true", "1", "yes", "on"}
FALSE_WORDS = {"false", "0", "no", "off"}
NONE_WORDS = {"none", "null"}


class OverrideError(UserError):
    pass


@dataclasses.dataclass(frozen=True)
class Override:
    stage: str | None  # stage name or alias as typed; None applies to the step in every selected stage
    step: str
    field: str
    value: str
    text: str  # as the user typed it, for messages


def parse_override(text: str) -> Override:
    key, sep, value = text.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) not in (2, 3) or not all(parts):
        raise OverrideError(
            f"invalid override {text!r}: expected STEP.FIELD=VALUE or STAGE.STEP.FIELD=VALUE "
            "(e.g. training.train_iters=50)"
        )
    stage = parts[0] if len(parts) == 3 else None
    return Override(stage, parts[-2], parts[-1], value, text)


def config_fields(config_cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(config_cls)}


def field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def check_field(config_cls: type, name: str, where: str) -> None:
    fields = config_fields(config_cls)
    if name not in fields:
        close = difflib.get_close_matches(name, list(fields), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"valid fields are {', '.join(fields)}"
        raise OverrideError(f"unknown field {name!r} for step {where}: {hint}")


def convert(raw: str, annotation: Any, what: str) -> Any:
    """``raw`` as a value of ``annotation``, or an ``OverrideError`` naming ``what`` and the expected type."""
    try:
        return _convert(raw.strip(), annotation)
    except (ValueError, TypeError):
        raise OverrideError(f"invalid value {raw!r} for {what}: expected {type_name(annotation)}") from None


def _convert(raw: str, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if annotation in (Any, str):
        return raw
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if type(None) in options and raw.lower() in NONE_WORDS:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(raw, option)
            except (ValueError, TypeError):
                continue
        raise ValueError(raw)
    if origin is Literal:
        for choice in typing.get_args(annotation):
            if str(choice) == raw:
                return choice
        raise ValueError(raw)
    if annotation is bool:
        if raw.lower() in TRUE_WORDS | FALSE_WORDS:
            return raw.lower() in TRUE_WORDS
        raise ValueError(raw)
    if annotation in (int, float):
        return annotation(raw)
    if annotation is Path or (isinstance(annotation, type) and issubclass(annotation, Path)):
        if not raw:
            raise ValueError(raw)
        return Path(raw).expanduser().absolute()  # jobs run elsewhere: relative paths must not change meaning
    if origin in (list, tuple):
        item_type = (typing.get_args(annotation) or (str,))[0]
        items = [_convert(item, item_type) for item in raw.split(",") if item.strip()] if raw else []
        return items if origin is list else tuple(items)
    raise TypeError(f"unsupported field type {annotation!r}")


def type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(str(c) for c in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) if a is not type(None) else "None" for a in typing.get_args(annotation))
    if origin in (list, tuple):
        return f"a comma-separated list of {type_name((typing.get_args(annotation) or (str,))[0])}"
    if annotation is Path:
        return "a path"
    return getattr(annotation, "__name__", str(annotation))


def cli_flags(config: Any) -> list[str]:
    """The step's own CLI for ``config``: only fields that differ from their defaults, spelled as tyro parses them."""
    flags: list[str] = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field_default(field) == value:
            continue
        flag = field.name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(f"--{flag}" if value else f"--no-{flag}")
        elif value is None:
            flags += [f"--{flag}", "None"]
        elif isinstance(value, list | tuple):
            flags += [f"--{flag}", *(_list_item(field.name, v) for v in value)]
        elif str(value).startswith("-"):  # "--lr -1" would read -1 as a flag
            flags.append(f"--{flag}={value}")
        else:
            flags += [f"--{flag}", str(value)]
    return flags


def _list_item(field: str, item: Any) -> str:
    """One item of a list flag (``--sources a b``): argparse has no quoting for these, so an item that starts with
    ``-`` would be read as an option of the step (``--output-dir /elsewhere``); it is refused, never passed."""
    text = str(item)
    if text.startswith("-"):
        raise OverrideError(
            f"invalid list item {text!r} for {field}: list items cannot start with '-' "
            "(for a file, give its path, e.g. ./-name)"
        )
    return text
