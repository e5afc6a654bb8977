"""Validation shared by image specs and the matrix: :class:`Problem` (file, field, message,
value), :class:`ValidationError` carrying every problem at once, problems from a JSON
schema, and a YAML reader that treats every input file as hostile.

Example::

    data = read_yaml(Path("image-specs/base.yaml"), "image-specs/base.yaml")
    problems = problems_from_schema(data, schema, "image-specs/base.yaml")
    if problems:
        raise ValidationError(problems)
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from bake.errors import InputError

MAX_FILE_BYTES = 1024 * 1024  # a spec or matrix file larger than this is refused
MAX_DEPTH = 32  # nesting of mappings and lists


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file: where (file, field path), what, and the bad value."""

    file: str
    field: str
    message: str
    value: Any = dataclasses.field(default=None)
    has_value: bool = False

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        text = f"{where}: {self.message}"
        if self.has_value:
            text += f" (value: {_shown(self.value)})"
        return text


def _shown(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ValidationError(InputError):
    """One or more input files failed validation; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


def field_path(parts: Iterable[Any]) -> str:
    """``["smoke", 0, "run"]`` as ``smoke[0].run``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def problems_from_schema(
    data: Any, schema: dict, file: str, messages: Mapping[str, str] | None = None
) -> list[Problem]:
    """Every problem of ``data`` against a draft 2020-12 ``schema``, as :class:`Problem` rows.

    ``messages`` overrides the message of a validator keyword (e.g. ``minProperties``).
    """
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path)))
    return [p for error in errors for p in _error_problems(error, file, messages or {})]


def _error_problems(
    error: jsonschema.ValidationError, file: str, messages: Mapping[str, str]
) -> Iterator[Problem]:
    """The problems one schema error stands for."""
    path = list(error.absolute_path)
    if error.validator == "oneOf" and error.context:
        yield from _one_of_problems(error, file, messages)
    elif error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        for key in sorted(set(error.instance) - set(allowed)):
            message = f"unknown key (allowed: {', '.join(allowed)})"
            yield Problem(file, field_path([*path, key]), message)
    elif error.validator == "required":
        missing = error.message.split("'")[1]
        yield Problem(file, field_path([*path, missing]), "required key is missing")
    elif "propertyNames" in error.schema_path:
        message = f"invalid key name: does not match {error.validator_value!r}"
        yield Problem(file, field_path([*path, error.instance]), message)
    else:
        message = messages.get(str(error.validator)) or _message(error)
        yield Problem(file, field_path(path), message, error.instance, True)


def _one_of_problems(
    error: jsonschema.ValidationError, file: str, messages: Mapping[str, str]
) -> Iterator[Problem]:
    # A value of one alternative's type is judged by that alternative alone.
    relevant = [e for e in error.context if not (e.validator == "type" and not e.path)]
    for sub in relevant:
        yield from _error_problems(sub, file, messages)
    if not relevant:
        types = [e.validator_value for e in error.context if e.validator == "type"]
        message = f"must be of type {' or '.join(types)}"
        yield Problem(file, field_path(error.absolute_path), message, error.instance, True)


def _message(error: jsonschema.ValidationError) -> str:
    """A short message without repeating the value (Problem prints it)."""
    kind = error.validator
    if kind == "enum":
        return "must be one of " + ", ".join(json.dumps(v) for v in error.validator_value)
    if kind == "pattern":
        return f"does not match {error.validator_value!r}"
    if kind == "type":
        return f"must be of type {error.validator_value}"
    if kind == "minItems":
        return f"must have at least {error.validator_value} item(s)"
    if kind == "uniqueItems":
        return "has duplicate items"
    if kind in ("minimum", "exclusiveMinimum", "maximum", "minLength", "maxLength"):
        return error.message.split(" is ", 1)[-1]
    return error.message


# ---------------------------------------------------------------------------------------
# Reading YAML input files


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases (no alias bombs), with duplicate and non-string
    keys refused and nesting bounded."""

    depth = 0
    allowed = 0
    aliases_left = 0  # how many aliases a file may still use (few: no alias bombs)

    def compose_node(self, parent, index):  # noqa: D102 - PyYAML's hook
        if self.check_event(yaml.AliasEvent):
            self.aliases_left -= 1
            if self.aliases_left < 0:
                event = self.peek_event()
                message = (
                    "aliases (*name) are not allowed" if not self.allowed else "too many aliases"
                )
                raise yaml.composer.ComposerError(None, None, message, event.start_mark)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_DEPTH} levels deep", mark
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):  # noqa: D102 - PyYAML's hook
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    None, None, f"keys must be strings, not {key!r}", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping
)


def read_text(path: Path, shown: str, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes``; ValidationError (one
    problem naming ``shown``) for anything else: missing, a directory, a FIFO or device, too
    large, unreadable, not UTF-8. Never blocks on a FIFO, never reads more than the bound."""

    def fail(message: str) -> ValidationError:
        return ValidationError([Problem(shown, "", message)])

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise fail("file not found") from None
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise fail(f"cannot read: {kind}")
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise fail(f"cannot read: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise fail(f"cannot read: larger than {max_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})") from None


def read_yaml(path: Path, shown: str, max_bytes: int = MAX_FILE_BYTES, aliases: int = 0) -> Any:
    """The YAML document in ``path`` (see :func:`read_text`), loaded without duplicate or
    non-string keys and with at most ``aliases`` aliases (none by default: an alias bomb
    needs many); ValidationError with the line and column otherwise."""
    text = read_text(path, shown, max_bytes)
    try:
        return _load(text, aliases)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValidationError([Problem(shown, "", f"invalid YAML: {where}{problem}")]) from None
    except RecursionError:
        message = f"invalid YAML: nested more than {MAX_DEPTH} levels deep"
        raise ValidationError([Problem(shown, "", message)]) from None


def _load(text: str, aliases: int) -> Any:
    loader = _StrictLoader(text)  # its reader refuses bad characters already (YAMLError)
    loader.aliases_left = loader.allowed = aliases
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
