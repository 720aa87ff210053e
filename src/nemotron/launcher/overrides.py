"""Step overrides (``training.train_iters=50``, ``stage0.training.lr=1e-3``) checked against the step's Config.

Values are parsed by the step's own CLI parser (tyro), the one the job parses its flags with, from a syntax made
for one line: ``true``/``false`` for a bool, ``none`` for an unset optional, ``a,b,c`` for a list. A Config is turned
back into the step's own CLI flags with only its non-default values, in tyro's spelling.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import io
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


def parse_values(config_cls: type, overrides: list[Override], where: str) -> dict[str, Any]:
    """The overridden fields' values, parsed by the step's own CLI (tyro, as the job will parse its flags): one
    parser, so the plan and the job cannot read a value differently. A value it refuses is an ``OverrideError``
    naming the field and the type it expects. Paths are made absolute: jobs run elsewhere."""
    hints = typing.get_type_hints(config_cls)
    for override in overrides:
        check_field(config_cls, override.field, where)
    try:
        parsed = _parse(config_cls, [flag for o in overrides for flag in _flags(o, hints[o.field])])
    except OverrideError:  # which one: each alone (the error path only; one parse when all are good)
        for override in overrides:
            _parse(config_cls, _flags(override, hints[override.field]), override, f"{where}.{override.field}")
        raise
    return {o.field: _absolute(getattr(parsed, o.field)) for o in overrides}


def _flags(override: Override, annotation: Any) -> list[str]:
    """``FIELD=VALUE`` as the step's flags: ``--field=VALUE`` (a value starting with '-' stays the value), a bool's
    words as ``--field`` / ``--no-field``, a list's comma-separated items as separate arguments."""
    flag, raw = "--" + override.field.replace("_", "-"), override.value.strip()
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    # A union's options; any other annotation is its own one option (tuple[str, ...]'s args are its items' types).
    options = [a for a in typing.get_args(annotation) if a is not type(None)] if union else [annotation]
    if union and raw.lower() in NONE_WORDS:
        return [f"{flag}=None"]
    if options[0] is bool and raw.lower() in TRUE_WORDS | FALSE_WORDS:
        true = raw.lower() in TRUE_WORDS
        if union:  # tyro spells an optional bool as one flag taking True, False or None
            return [f"{flag}={true}"]
        return [flag if true else f"--no-{flag[2:]}"]
    if typing.get_origin(options[0]) in (list, tuple):
        return [flag, *(_list_item(override.field, item.strip()) for item in raw.split(",") if item.strip())]
    if options[0] is Path and not raw:
        return [flag]  # no value: refused by the parser like any value it cannot read
    return [f"{flag}={raw}"]


def _parse(config_cls: type, flags: list[str], override: Override | None = None, what: str = "") -> Any:
    import tyro

    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(errors):
            return tyro.cli(config_cls, args=flags)
    except SystemExit:
        if override is None:
            raise OverrideError("an override was refused") from None
        annotation = typing.get_type_hints(config_cls)[override.field]
        raise OverrideError(f"invalid value {override.value!r} for {what}: expected {type_name(annotation)}") from None


def _absolute(value: Any) -> Any:
    if isinstance(value, Path):
        return value.expanduser().absolute()
    if isinstance(value, list | tuple):
        return type(value)(_absolute(item) for item in value)
    return value


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
