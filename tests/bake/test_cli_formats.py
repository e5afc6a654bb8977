"""The bake CLI as the openstack CLI: -f/-c/--sort-column output formats, -v/-q/--debug/
--log-file, one-line usage errors, `bake complete`, and `bake build --keep-failed`.

Every case runs the installed ``bake`` (tests/support/cli.py) except the one that needs a
bug to show how an unexpected error is reported.
"""

from __future__ import annotations

import csv
import io
import json
import random
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.cli import MIRROR_ENV, run_bake, table_rows

BASE = ("image-specs/base.yaml", "--plain")


def _artifact(store: Path, name: str, fingerprint: str, size: int, **manifest) -> Path:
    """A complete artifact as the store holds one (a tar file and its manifest)."""
    path = store / name / fingerprint
    path.mkdir(parents=True)
    (path / f"{name}.tar").write_bytes(b"x" * size)
    (path / "manifest.json").write_text(
        json.dumps(
            {
                "name": name,
                "version": "0.1.0",
                "fingerprint": fingerprint,
                "spec": {"name": name},
                "files": {f"{name}.tar": {"size": size}},
                "total_size": size,
                **manifest,
            }
        )
    )
    return path


@pytest.fixture
def store(tmp_path):
    store = tmp_path / "store"
    _artifact(store, "bbq-base", "ab" * 32, 3000, built_at="2026-11-30T10:00:00+00:00")
    _artifact(store, "bbq-rest", "cd" * 32, 5 << 20, status="good")
    return store


def test_list_in_every_format(store):
    as_json = run_bake("list", "--output", str(store), "-f", "json")
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert [r["name"] for r in rows] == ["bbq-base", "bbq-rest"]
    assert rows[1] == {
        "name": "bbq-rest",
        "version": "0.1.0",
        "fingerprint": "cd" * 32,
        "status": "good",
        "size": 5 << 20,
        "built": None,
        "path": str(store / "bbq-rest" / ("cd" * 32)),
    }
    assert json.loads(run_bake("list", "--output", str(store), "--json").stdout) == rows
    noindent = run_bake("list", "--output", str(store), "-f", "json", "--noindent").stdout
    assert noindent.count("\n") == 1 and json.loads(noindent) == rows
    assert yaml.safe_load(run_bake("list", "--output", str(store), "-f", "yaml").stdout) == rows

    as_csv = run_bake("list", "--output", str(store), "-f", "csv", "-c", "size", "-c", "name")
    assert list(csv.reader(io.StringIO(as_csv.stdout))) == [
        ["name", "size"],  # the columns' own order, as the openstack CLI keeps it
        ["bbq-base", "3000"],
        ["bbq-rest", str(5 << 20)],
    ]
    value = run_bake("list", "--output", str(store), "-f", "value", "-c", "name", "-c", "status")
    assert value.stdout == "bbq-base untested\nbbq-rest good\n"

    table = table_rows(run_bake("list", "--output", str(store)).stdout)  # cliff's table
    assert table[0] == ["name", "version", "fingerprint", "status", "size", "built"]
    assert table[2][:5] == ["bbq-rest", "0.1.0", "cd" * 6, "good", "5M"]
    with_path = run_bake("list", "--output", str(store), "-c", "name", "-c", "path").stdout
    assert table_rows(with_path)[1] == ["bbq-base", str(store / "bbq-base" / ("ab" * 32))]


def test_sort_column(store):
    def names(*options: str) -> list[str]:
        args = ("list", "--output", str(store), "-f", "value", "-c", "name", *options)
        return run_bake(*args).stdout.split()

    assert names("--sort-column", "size", "--sort-descending") == ["bbq-rest", "bbq-base"]
    assert names("--sort-column", "size", "--sort-ascending") == ["bbq-base", "bbq-rest"]
    assert names("--sort-column", "status") == ["bbq-rest", "bbq-base"]


# Every command that prints a table or a record, with what it needs to parse its arguments.
COMMANDS = [
    ("list",),
    ("validate",),
    ("fingerprint", *BASE),
    ("build", *BASE),
    ("test", "image-specs/base.yaml"),
    ("matrix",),
    ("publish", "image-specs/base.yaml"),
    ("images",),
    ("prune", "--keep", "1"),
]


def _bad_values(rng: random.Random, good: set[str], count: int) -> list[str]:
    alphabet = "abcdefghijklmnopqrstuvwxyz_-. ,=\n\t'\"éλ🔥\\/%$0123456789"
    values = set(rng.sample(["", "JSON", "json ", "table,json", "name,size", "-", "None"], 2))
    while len(values) < count:
        values.add("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))))
    return sorted(values - good)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_bad_format_or_column_is_one_line_and_exit_2(command, tmp_path):
    """Generated values of -f, -c and --sort-column: one line naming the option, exit 2,
    nothing on stdout, nothing done (no cloud asked: OS_* are dropped)."""
    rng = random.Random(f"formats-{command[0]}")
    good = {"table", "json", "yaml", "value", "csv", "name", "fingerprint", "spec", "row"}
    options = ["-f", "-c"] + (["--sort-column"] if command[0] in ("list", "images") else [])
    for n, value in enumerate(_bad_values(rng, good, 4)):
        option = options[n % len(options)]
        result = run_bake(
            *command, option, value, cwd=tmp_path, env=MIRROR_ENV, drop=("DIB_", "OS_")
        )
        lines = result.stderr.splitlines()
        assert result.returncode == 2, (option, value, result.stderr)
        assert len(lines) == 1 and lines[0].startswith(f"bake {command[0]}: error: "), lines
        assert option in lines[0] or "expected one argument" in lines[0], lines
        assert result.stdout == ""


def test_usage_errors_are_one_line():
    result = run_bake("list", "--no-such-option", "a\nb")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "bake list: error: unrecognized arguments: --no-such-option a b (see bake list --help)"
    ]


def test_help_commands_and_no_command():
    """cliff's help: `bake --help` lists every command and the exit codes; `bake help CMD`
    is `bake CMD --help`; no command or an unknown one is one line, exit 2."""
    top = run_bake("--help")
    assert top.returncode == 0, top.stderr
    assert "Exit codes: 0 success" in top.stdout
    for name in ("build", "publish", "matrix", "stack", "images", "prune", "complete"):
        assert f"\n  {name} " in top.stdout, name
    assert run_bake("help", "build").stdout == run_bake("build", "--help").stdout
    assert "--keep-failed" in run_bake("help", "build").stdout
    none = run_bake()
    assert none.returncode == 2 and none.stdout == ""
    assert none.stderr.startswith("bake: error: a command is required: validate, ")
    assert len(none.stderr.splitlines()) == 1
    unknown = run_bake("lisst", "--output", "x")
    assert (unknown.returncode, unknown.stdout) == (2, "")
    assert (
        unknown.stderr == "error: 'lisst' is not a bake command; did you mean list? "
        "(see bake --help)\n"
    )
    assert run_bake("--version").stdout.startswith("bake ")


def test_fingerprint_formats():
    plain = run_bake("fingerprint", *BASE, env=MIRROR_ENV).stdout.strip()
    document = json.loads(run_bake("fingerprint", *BASE, "-f", "json", env=MIRROR_ENV).stdout)
    assert document == json.loads(run_bake("fingerprint", *BASE, "--json", env=MIRROR_ENV).stdout)
    assert document["fingerprint"] == plain
    value = run_bake("fingerprint", *BASE, "-f", "value", "-c", "fingerprint", env=MIRROR_ENV)
    assert value.stdout.strip() == plain
    some = yaml.safe_load(
        run_bake("fingerprint", *BASE, "-f", "yaml", "-c", "dib_version", env=MIRROR_ENV).stdout
    )
    assert list(some) == ["dib_version"] and some["dib_version"] == document["dib_version"]


def test_validate_json_reports_each_spec(tmp_path):
    (tmp_path / "image-specs").mkdir()
    bad = tmp_path / "image-specs" / "bad.yaml"
    bad.write_text("name: Bad Name\nversion: 1\n")
    good = "image-specs/base.yaml"
    result = run_bake("validate", good, str(bad), "-f", "json")
    assert result.returncode == 2
    rows = json.loads(result.stdout)
    assert rows[0] == {"spec": good, "name": "bbq-base", "valid": True, "problems": []}
    assert rows[1]["spec"] == str(bad) and rows[1]["valid"] is False
    assert rows[1]["problems"] and all(str(bad) in p for p in rows[1]["problems"])
    # the problems are also on stderr, one error line each, as without -f
    assert result.stderr.splitlines() == [f"error: {p}" for p in rows[1]["problems"]]


def test_build_of_an_up_to_date_spec_as_json_and_logging(tmp_path):
    """`bake build -f json`: one document on stdout; -q hides the progress lines;
    --log-file keeps them with times; the options go before or after the command."""
    fp = run_bake("fingerprint", *BASE, env=MIRROR_ENV).stdout.strip()
    path = _artifact(tmp_path, "bbq-base", fp, 4096, build_seconds=95.4, status="good")
    build = ("build", *BASE, "--output", str(tmp_path))

    result = run_bake(*build, "-f", "json", env=MIRROR_ENV)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["status"] == "up to date" and record["fingerprint"] == fp
    assert record["path"] == str(path) and record["size"] == 4096 and record["seconds"] == 95.4
    assert record["image"] is None  # a tar only
    assert result.stderr == f"bake: bbq-base 0.1.0: fingerprint {fp}\n"

    human = run_bake(*build, env=MIRROR_ENV)
    assert human.stdout == f"bake: bbq-base: up to date, not rebuilt (use --force): {path}\n"
    quiet = run_bake("-q", *build, "-f", "value", "-c", "status", env=MIRROR_ENV)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "up to date\n", "")

    log = tmp_path / "bake.log"
    logged = run_bake(*build, "-q", "--log-file", str(log), env=MIRROR_ENV)
    assert logged.returncode == 0 and logged.stderr == ""
    [line] = log.read_text().splitlines()
    assert line.endswith(f"INFO bake.progress: bake: bbq-base 0.1.0: fingerprint {fp}")
    assert line[:4].isdigit()  # a time stamp first

    bad_log = run_bake(*build, "--log-file", str(tmp_path / "no" / "such" / "dir.log"))
    assert bad_log.returncode == 2
    assert bad_log.stderr.startswith(f"error: --log-file: {tmp_path}/no/such/dir.log: ")


def test_test_without_checks_is_one_line_even_with_json(tmp_path):
    path = _artifact(tmp_path, "bbq-x", "ef" * 32, 10)
    result = run_bake("test", str(path), "-f", "json")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"error: {path}: the spec has no smoke checks\n"


def test_an_unexpected_error_is_one_line_and_debug_shows_its_traceback(
    tmp_path, monkeypatch, capsys
):
    """A bug (injected here: the store's listing raises) is one line and exit 1; --debug
    shows the traceback; a --log-file keeps the traceback either way."""
    from bake import cli
    from bake.artifacts import Store

    def broken(self):
        raise RuntimeError("injected bug")

    monkeypatch.setattr(Store, "artifacts", broken)
    log = tmp_path / "bake.log"
    assert cli.main(["list", "--output", str(tmp_path), "--log-file", str(log)]) == 1
    err = capsys.readouterr().err
    assert err == "error: unexpected RuntimeError: injected bug (--debug shows the traceback)\n"
    assert "Traceback" in log.read_text() and "injected bug" in log.read_text()
    assert cli.main(["--debug", "list", "--output", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and 'raise RuntimeError("injected' in err
    assert err.splitlines()[-1] == "error: unexpected RuntimeError: injected bug"


def test_bash_completion(tmp_path):
    script = run_bake("complete")
    assert script.returncode == 0, script.stderr
    (tmp_path / "bake.bash").write_text(script.stdout)

    def complete(*words: str) -> list[str]:
        line = " ".join(f"'{w}'" for w in words)
        shell = (
            f"source {tmp_path / 'bake.bash'}; COMP_WORDS=(bake {line}); "
            f'COMP_CWORD={len(words)}; _bake; printf "%s\\n" "${{COMPREPLY[@]}}"; '
            "complete -p bake"
        )
        done = subprocess.run(
            ["bash", "-c", shell], capture_output=True, text=True, timeout=30, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        *replies, registered = done.stdout.splitlines()
        assert registered == "complete -o filenames -F _bake bake"
        return replies

    assert complete("li") == ["list"]
    assert {"-v", "-q", "--debug", "--log-file", "--version"} <= set(complete("-"))
    assert complete("list", "--so") == ["--sort-column", "--sort-ascending", "--sort-descending"]
    assert complete("list", "-f", "y") == ["yaml"]
    assert complete("images", "-c", "fl") == ["flags"]
    assert complete("build", "--keep") == ["--keep-failed"]
    assert complete("stack", "cr") == ["create"]
    (tmp_path / "myspec.yaml").write_text("")
    assert complete("build", "mysp") == ["myspec.yaml"]


GATE = """#!/bin/bash
# Test-only: leave a mark in bake's work directory, then fail the build at once.
set -eu
touch "$TMP_DIR/bbq-gate-was-here"
echo "bbq-test-gate: failing $DIB_BBQ_IMAGE_NAME as asked" >&2
exit 1
"""


@pytest.mark.slow
def test_keep_failed_and_verbose_build(project):
    """A build failing in its first root.d script: -v streams its log to stderr;
    --keep-failed keeps the whole build directory (log, diskimage-builder's work
    directory) and names it; without it only the log is kept; nothing stays in .tmp."""
    gate = project / "elements" / "bbq-test-gate" / "root.d" / "01-gate"
    gate.parent.mkdir(parents=True)
    gate.write_text(GATE)
    gate.chmod(0o755)
    (project / "image-specs" / "kf.yaml").write_text(
        "name: bbq-kf\nversion: '0.0.1'\ninclude: [common/debian.yaml]\n"
        "types: [tar]\npartitioned: false\nelements: [bbq-test-gate]\n"
    )
    env = {**MIRROR_ENV, "DIB_IMAGE_CACHE": str(project / "cache")}  # no other build's lock
    store = project / "store"
    build = ("build", "image-specs/kf.yaml", "--no-test", "--output", str(store))

    kept = run_bake("-v", *build, "--keep-failed", "-f", "json", cwd=project, env=env)
    assert kept.returncode == 1, kept.stderr[-3000:]
    assert kept.stdout == ""
    assert "bbq-test-gate: failing bbq-kf as asked" in kept.stderr  # streamed by -v
    assert "Running hooks from" in kept.stderr
    error = kept.stderr.splitlines()[-1]
    assert error.startswith("error: bbq-kf: disk-image-create failed (exit 1); build directory ")
    directory = Path(error.split("kept for inspection: ", 1)[1].split(" (log: ")[0])
    assert directory.parent == store / ".failed"
    assert "bbq-test-gate: failing" in (directory / "out" / "build.log").read_text()
    assert (directory / "work" / "bbq-gate-was-here").is_file()

    plain = run_bake(*build, cwd=project, env=env)
    assert plain.returncode == 1
    assert "bbq-test-gate: failing" not in plain.stderr  # the log is not streamed without -v
    log = Path(plain.stderr.splitlines()[-1].rsplit("log: ", 1)[1])
    assert log.parent.parent == store / ".failed" and log.parent != directory
    assert sorted(p.name for p in log.parent.iterdir()) == ["build.log"]
    assert not any((store / ".tmp").iterdir())
    assert not (store / "bbq-kf").exists()
