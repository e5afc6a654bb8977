"""Sphinx directives that write reference pages from the project's own sources.

Each directive renders reStructuredText and inserts it where it stands, as ``include`` does,
so its titles join the page's sections and every warning fails a ``-W`` build:

``.. bbq-spec-reference::``
    every field of the image spec, from ``bake/schemas/image-spec.json`` (generated from
    ``bake/specfields.py``) with the defaults of ``bake.spec.DEFAULTS``;
``.. bbq-elements::``
    each element's ``README.rst`` (``elements/*/README.rst``), with a label per element;
``.. bbq-cliff:: MODULE:APP``
    a cliff command line: APP's global options and each command's parser
    (``MODULE.command_parsers``), subcommands included;
``.. bbq-config-options:: PATH``
    oslo.config's ``show-options`` for a config generator file (PATH from the repository
    root: the directive makes it absolute, as oslo.config reads it from the working
    directory).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import textwrap
from pathlib import Path

from docutils.parsers.rst import Directive

REPO = Path(__file__).resolve().parents[3]
SCHEMA = REPO / "bake" / "schemas" / "image-spec.json"
ELEMENTS = REPO / "elements"

_RST_SPECIAL = re.compile(r"([\\*`|_<>\[\]])")


def escape(text: str) -> str:
    """Plain text (a help string, a description) safe as reStructuredText."""
    return _RST_SPECIAL.sub(r"\\\1", text)


def literal(text: str) -> str:
    """``text`` as an inline literal (the schema's patterns and values hold no backquote)."""
    return f"``{text}``" if text else '``""``'


class _Inserting(Directive):
    """A directive whose output is reStructuredText inserted in place."""

    def lines(self) -> list[str]:
        raise NotImplementedError

    def depends_on(self) -> list[Path]:
        return []

    def run(self):
        env = self.state.document.settings.env
        for path in self.depends_on():
            env.note_dependency(str(path))
        source = self.state_machine.input_lines.source(
            self.lineno - self.state_machine.input_offset - 1
        )
        self.state_machine.insert_input(self.lines(), source)
        return []


# -- the image spec ----------------------------------------------------------------------


def _resolve(schema: dict, root: dict) -> dict:
    ref = schema.get("$ref")
    if ref and ref.startswith("#/$defs/"):
        return {**root["$defs"][ref.removeprefix("#/$defs/")], **schema}
    return schema


def _shape(schema: dict, root: dict) -> str:
    """One line saying what values a schema takes."""
    schema = _resolve(schema, root)
    if "enum" in schema:
        return "one of " + ", ".join(literal(json.dumps(v).strip('"')) for v in schema["enum"])
    if "oneOf" in schema:
        return " or ".join(_shape(option, root) for option in schema["oneOf"])
    kind = schema.get("type", "any value")
    words = {"string": "a string", "integer": "an integer", "number": "a number"}
    words |= {"boolean": "``true`` or ``false``", "object": "a mapping", "array": "a list"}
    if isinstance(kind, list):  # several types: "a string or a number"
        return " or ".join(_shape({**schema, "type": one}, root) for one in kind)
    text = words.get(kind, str(kind))
    if "pattern" in schema:
        text += f" matching {literal(schema['pattern'])}"
    if "minLength" in schema:
        text += f" of at least {schema['minLength']} character(s)"
    bounds = [
        f"{word} {schema[key]}"
        for key, word in (
            ("minimum", ">="),
            ("exclusiveMinimum", ">"),
            ("maximum", "<="),
            ("exclusiveMaximum", "<"),
        )
        if key in schema
    ]
    if bounds:
        text += " (" + ", ".join(bounds) + ")"
    if kind == "array" and isinstance(schema.get("items"), dict):
        text += ", each item " + _shape(schema["items"], root)
        if schema.get("minItems"):
            text += f", at least {schema['minItems']}"
        if schema.get("uniqueItems"):
            text += ", no repeats"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        names = schema.get("propertyNames", {}).get("pattern")
        keys = f"names matching {literal(names)}" if names else "names"
        text += f" of {keys} to " + _shape(schema["additionalProperties"], root)
    return text


def _subfields(schema: dict, root: dict, prefix: str) -> list[str]:
    """A definition list of an object's (or a list's objects') own fields."""
    schema = _resolve(schema, root)
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        return _subfields(schema["items"], root, f"{prefix}[]")
    options = [schema, *schema.get("oneOf", [])]
    lines: list[str] = []
    for option in options:
        required = set(option.get("required", []))
        for key, sub in option.get("properties", {}).items():
            sub = _resolve(sub, root)
            mark = " (required)" if key in required else ""
            lines += [f"{literal(f'{prefix}.{key}')}{mark}"]
            lines += [f"   {escape(sub.get('description', ''))}", ""]
            lines += [f"   Takes {_shape(sub, root)}.", ""]
            lines += [f"   {line}" if line else "" for line in _subfields(sub, root, "")]
    return lines


def spec_reference(schema: dict, defaults: dict) -> list[str]:
    required = set(schema.get("required", []))
    lines = [escape(schema["description"]), ""]
    lines += ["Required fields: " + ", ".join(literal(k) for k in schema["required"]) + ".", ""]
    for key, field in schema["properties"].items():
        title = literal(key)
        lines += [title, "-" * len(title), ""]
        lines += [escape(field["description"]), ""]
        lines += [f"*{'Required' if key in required else 'Optional'}*: {_shape(field, schema)}."]
        if key in defaults:
            shown = json.dumps(defaults[key], sort_keys=True)
            lines += ["", f"Default: {literal(shown)}."]
        lines.append("")
        nested = _subfields(field, schema, key)
        if nested:
            lines += nested
    return lines


class SpecReference(_Inserting):
    def depends_on(self):
        return [SCHEMA]

    def lines(self):
        from bake.spec import DEFAULTS

        return spec_reference(json.loads(SCHEMA.read_text()), dict(DEFAULTS))


# -- elements ----------------------------------------------------------------------------


class Elements(_Inserting):
    def readmes(self) -> list[Path]:
        return sorted(ELEMENTS.glob("*/README.rst"))

    def depends_on(self):
        return self.readmes()

    def lines(self):
        env = self.state.document.settings.env
        here = Path(env.doc2path(env.docname)).parent
        lines: list[str] = []
        for readme in self.readmes():
            name = readme.parent.name
            lines += [f".. _element-{name}:", ""]
            lines += [f".. include:: {os.path.relpath(readme, here)}", ""]
        return lines


# -- argparse command lines --------------------------------------------------------------

_UNDERLINES = "-~^'"


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    try:
        text = text % {**vars(action), "prog": prog}
    except (KeyError, TypeError, ValueError):
        pass
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        text = f"{text} (one of: {', '.join(map(str, action.choices))})".lstrip()
    return " ".join(text.split())


def _term(action: argparse.Action) -> str:
    if action.option_strings:
        takes = action.nargs != 0
        metavar = action.metavar or action.dest.upper()
        if isinstance(metavar, tuple):
            metavar = " ".join(metavar)
        return ", ".join(
            literal(f"{option} {metavar}" if takes else option) for option in action.option_strings
        )
    return literal(action.metavar or action.dest)


def parser_lines(
    parser: argparse.ArgumentParser,
    depth: int,
    commands: dict[str, argparse.ArgumentParser] | None = None,
) -> list[str]:
    """A parser's usage, description, arguments and (as subsections) its subcommands: its
    own subparsers, else ``commands`` (a cliff application's commands' parsers)."""
    usage = " ".join(parser.format_usage().removeprefix("usage:").split())
    wrapped = textwrap.wrap(usage, 88, break_long_words=False, break_on_hyphens=False)
    lines = ["::", "", *(f"   {'' if i == 0 else '    '}{w}" for i, w in enumerate(wrapped)), ""]
    if parser.description:
        lines += [escape(" ".join(parser.description.split())), ""]
    subcommands = dict(commands or {})
    helps = {}
    arguments = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            subcommands.update(action.choices)
            helps.update({choice.dest: choice.help for choice in action._choices_actions})
        else:
            arguments.append(action)
    for action in arguments:
        lines += [_term(action), f"   {escape(_help(action, parser.prog)) or '(no help)'}", ""]
    for name, sub in subcommands.items():
        title = literal(sub.prog)
        lines += [f".. _cli-{sub.prog.replace(' ', '-')}:", ""]
        lines += [title, _UNDERLINES[depth] * len(title), ""]
        if helps.get(name) and not sub.description:
            lines += [escape(helps[name]), ""]
        lines += parser_lines(sub, depth + 1)
    return lines


class CliffReference(_Inserting):
    """``.. bbq-cliff:: MODULE:APP``: a cliff application's global options, then each
    command (``MODULE.command_parsers(app)``) as a subsection."""

    required_arguments = 1

    def depends_on(self):
        module = importlib.import_module(self.arguments[0].partition(":")[0])
        return [Path(module.__file__)]

    def lines(self):
        module_name, _, app_class = self.arguments[0].partition(":")
        module = importlib.import_module(module_name)
        app = getattr(module, app_class)()
        return parser_lines(app.parser, 0, module.command_parsers(app))


# -- oslo.config -------------------------------------------------------------------------


class ConfigOptions(_Inserting):
    required_arguments = 1

    def depends_on(self):
        return [REPO / self.arguments[0]]

    def lines(self):
        return [".. show-options::", f"   :config-file: {REPO / self.arguments[0]}", ""]


def setup(app):
    app.add_directive("bbq-spec-reference", SpecReference)
    app.add_directive("bbq-elements", Elements)
    app.add_directive("bbq-cliff", CliffReference)
    app.add_directive("bbq-config-options", ConfigOptions)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
