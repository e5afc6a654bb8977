"""The documentation builds with warnings as errors, and its generated references cover
every spec field, element, command and configuration option; reno reads the release notes.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import subprocess

import pytest

from tests.support.paths import BIN, ELEMENTS, REPO

SCHEMA = REPO / "bake" / "schemas" / "image-spec.json"


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, str]:
    """The text of every built page, by path (``reference/spec`` ...), tags stripped."""
    out = tmp_path_factory.mktemp("docs")
    result = subprocess.run(
        [str(BIN / "sphinx-build"), "-W", "--keep-going", "-q", "-b", "html", "docs/source", out],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stderr == "", result.stderr  # -q: only warnings would be printed
    return {
        str(page.relative_to(out).with_suffix("")): html.unescape(
            re.sub(r"<[^>]+>", "", page.read_text())
        )
        for page in out.rglob("*.html")
    }


def test_every_page_of_the_guide_and_reference_is_built(pages):
    expected = {"index", "install", "releasenotes"}
    expected |= {f"user/{n}" for n in ("bake", "publish", "deploy", "matrix", "stack")}
    expected |= {f"reference/{n}" for n in ("cli", "spec", "elements", "config")}
    assert expected <= set(pages)


def _fields(schema: dict, prefix: str = ""):
    for key, sub in schema.get("properties", {}).items():
        yield f"{prefix}{key}", sub["description"]
        yield from _fields(sub, f"{prefix}{key}.")
        items = sub.get("items")
        if isinstance(items, dict):
            yield from _fields(items, f"{prefix}{key}[].")
        for option in sub.get("oneOf", []):
            yield from _fields(option, f"{prefix}{key}.")


def _squash(text: str) -> str:
    return " ".join(text.split())


def test_the_spec_reference_has_every_field_with_its_description(pages):
    page = _squash(pages["reference/spec"])
    fields = list(_fields(json.loads(SCHEMA.read_text())))
    assert len(fields) > 20
    for key, description in fields:
        assert key in page, key
        assert _squash(description) in page, key


def test_every_elements_readme_is_included(pages):
    page = _squash(pages["reference/elements"])
    readmes = sorted(ELEMENTS.glob("*/README.rst"))
    assert len(readmes) == len(list(ELEMENTS.iterdir()))  # every element has one
    for readme in readmes:
        first_paragraph = readme.read_text().split("\n\n")[0].splitlines()[3:]
        assert readme.parent.name in page
        # a sentence of the README's own text, as rendered (inline markup dropped)
        words = _squash(" ".join(first_paragraph).replace("``", ""))[:60]
        assert words in page, readme


def _commands(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield sub
                yield from _commands(sub)


def test_the_cli_reference_has_every_command_and_option(pages):
    from bake.cli import BakeApp, command_parsers

    page = _squash(pages["reference/cli"])
    app = BakeApp()
    commands = [app.parser]
    for parser in command_parsers(app).values():
        commands += [parser, *_commands(parser)]
    assert {"bake build", "bake validate", "bake stack"} <= {c.prog for c in commands}
    for command in commands:
        assert command.prog in page
        for action in command._actions:
            if action.help == argparse.SUPPRESS:
                continue  # hidden on purpose (left out of --help too)
            for option in action.option_strings:
                assert option in page, (command.prog, option)
    assert "--version" in page


def test_the_config_reference_has_every_option_of_the_app(pages):
    from bbq.config import list_opts

    page = pages["reference/config"]
    for group, options in list_opts():
        name = getattr(group, "name", group)  # an OptGroup (with its title) or a name
        assert name in page
        for option in options:
            assert option.dest in page, (name, option.dest)


def test_reno_reads_the_release_notes(pages):
    reno = [str(BIN / "reno")]
    lint = subprocess.run([*reno, "lint"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stderr
    report = subprocess.run([*reno, "report"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    notes = sorted((REPO / "releasenotes" / "notes").glob("*.yaml"))
    assert notes
    for note in notes:
        assert f"releasenotes/notes/{note.name}" in report.stdout  # every note is reported
    assert "The first release notes of Big Data BBQ" in report.stdout
    assert "The first release notes of Big Data BBQ" in _squash(pages["releasenotes"])
