"""fab's options: read once (bake.fleet.options), bad values one line with exit code 2
through the real ``fab`` (no host is reached: the options are read first), batches and
failure limits like Ansible's ``serial`` and ``max_fail_percentage``, and ``--format json``.
The same against real instances is in test_deploy.py."""

from __future__ import annotations

import json
import subprocess

import pytest

from bake.fleet import DeployError
from bake.fleet.options import Batches, MaxFail, parse
from bake.fleet.results import DEPLOYED, FAILED, ROLLED_BACK, SKIPPED, HostResult
from bake.fleet.rollout import rollout
from bake.fleet.targets import Target
from tests.deploy.fleet import FAB, REPO


@pytest.mark.parametrize(
    ("text", "hosts", "sizes"),
    [
        ("1", 3, [1, 1, 1]),
        ("2", 5, [2, 2, 1]),
        ("10", 3, [3]),
        ("1,50%", 3, [1, 1, 1]),  # 50% of 3 is 1.5: rounded down
        ("1,50%", 4, [1, 2, 1]),
        ("1,25%,100%", 10, [1, 2, 7]),
        ("1,25%", 10, [1, 2, 2, 2, 2, 1]),  # the last size repeats
        ("1%", 10, [1] * 10),  # a percentage is at least one host
        ("100%", 7, [7]),
        (" 1 , 2 ", 4, [1, 2, 1]),
    ],
)
def test_batches_split_like_ansible_serial(text, hosts, sizes):
    batches = parse("deploy", {"batch": text}).batch
    assert batches.split(hosts) == sizes
    assert sum(sizes) == hosts


def test_defaults_and_numbers():
    opts = parse("deploy", {})
    assert (opts.batch.split(3), opts.max_fail, opts.keep, opts.health_timeout) == (
        [1, 1, 1],
        MaxFail(0),
        3,
        60.0,
    )
    assert (opts.format, opts.check, opts.mode, opts.key) == ("table", False, "clone", ())
    opts = parse("deploy", {"batch": 2, "keep": 4, "health_timeout": "2.5", "key": []})
    assert (opts.batch, opts.keep, opts.health_timeout) == (Batches.of(2), 4, 2.5)


def test_max_fail_counts_in_all_percentages_per_batch():
    count = MaxFail.of("1")
    assert not count.stops(failed=1, batch_failed=1, batch_size=1)
    assert count.stops(failed=2, batch_failed=1, batch_size=5)
    percent = MaxFail.of("10%")
    assert percent.stops(failed=1, batch_failed=1, batch_size=1)  # a failed canary
    assert not percent.stops(failed=1, batch_failed=1, batch_size=10)  # 10% is not more
    assert percent.stops(failed=2, batch_failed=2, batch_size=10)
    assert not MaxFail.of("100%").stops(failed=9, batch_failed=9, batch_size=9)


def outcomes(results: dict[str, str]):
    seen = []

    def act(target: Target) -> HostResult:
        seen.append(target.host)
        return HostResult(target.host, result=results[target.host])

    return seen, act


def test_a_failed_canary_stops_the_rollout():
    seen, act = outcomes({"a": ROLLED_BACK, "b": DEPLOYED, "c": DEPLOYED})
    batches = parse("deploy", {"batch": "1,50%"}).batch
    results = rollout([Target(h) for h in "abc"], act, batches, MaxFail.of("10%"))
    assert seen == ["a"] and [r.result for r in results] == [ROLLED_BACK, SKIPPED, SKIPPED]


def test_a_percentage_tolerates_failures_within_a_batch():
    hosts = "abcdefghijk"
    seen, act = outcomes({h: FAILED if h == "c" else DEPLOYED for h in hosts})
    batches = parse("deploy", {"batch": "1,50%"}).batch  # 1, 5, 5
    results = rollout([Target(h) for h in hosts], act, batches, MaxFail.of("20%"))
    assert sorted(seen) == list(hosts)  # 1 of 5 is 20%: not more, the rollout goes on
    assert [r.result for r in results].count(FAILED) == 1
    seen, act = outcomes({h: FAILED if h in "cd" else DEPLOYED for h in hosts})
    results = rollout([Target(h) for h in hosts], act, batches, MaxFail.of("20%"))
    assert sorted(seen) == list("abcdef")  # 2 of 5: stopped before the last batch
    assert [r.result for r in results][6:] == [SKIPPED] * 5


BAD = [
    (["--batch", "20x"], "--batch must be comma-separated numbers of hosts", "'20x'"),
    (["--batch", "0"], "--batch must be", "'0'"),
    (["--batch", "150%"], "--batch must be", "'150%'"),
    (["--batch", "-1"], "--batch must be", "'-1'"),
    (["--batch", ""], "--batch must be", "''"),
    (["--batch", "1,,2"], "--batch must be", "'1,,2'"),
    (["--batch", "0%"], "--batch must be", "'0%'"),
    (["--max-fail", "10x"], "--max-fail must be a number of hosts", "'10x'"),
    (["--max-fail", "-1"], "--max-fail must be", "'-1'"),
    (["--max-fail", "101%"], "--max-fail must be", "'101%'"),
    (["--keep", "x"], "--keep must be a whole number, at least 2", "'x'"),
    (["--keep", "1"], "--keep must be a whole number, at least 2", "'1'"),
    (["--keep", "2.5"], "--keep must be", "'2.5'"),
    (["--health-timeout", "-1"], "--health-timeout must be a positive number", "'-1'"),
    (["--health-timeout", "x"], "--health-timeout must be", "'x'"),
    (["--health-timeout", "inf"], "--health-timeout must be", "'inf'"),
    (["--health-timeout", "0"], "--health-timeout must be", "'0'"),
    (["--mode", "rsync"], "--mode must be one of clone, fresh", "'rsync'"),
    (["--format", "xml"], "--format must be one of table, json", "'xml'"),
    (["--os-interface", "private"], "--os-interface must be one of public, internal", ""),
    (["--config-file", "/nonexistent.conf"], "--config-file /nonexistent.conf: no such", ""),
    (["--key", "/nonexistent-key"], "--key /nonexistent-key: no such file", ""),
    (["--user", ""], "--user must be a user name", "''"),
]


@pytest.mark.parametrize(("args", "message", "value"), BAD)
def test_a_bad_value_is_one_line_exit_2_through_fab(args, message, value, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    # Port 1: were any host reached, the run would fail otherwise (exit 1, a table).
    run = subprocess.run(
        [str(FAB), "-H", "127.0.0.1:1", "deploy", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and value in lines[0], run.stderr
    assert lines[0].startswith("fab deploy: ")


@pytest.mark.parametrize(("args", "message", "value"), BAD[:12])
def test_a_bad_value_is_an_error_with_exit_code_2(args, message, value):
    name = args[0][2:].replace("-", "_")
    with pytest.raises(DeployError) as caught:
        parse("deploy", {name: args[1]})
    assert caught.value.exit_code == 2 and message in str(caught.value)


def test_options_of_other_tasks_are_refused():
    with pytest.raises(DeployError, match="fab status takes no --keep") as caught:
        parse("status", {"keep": "3"})
    assert caught.value.exit_code == 2


def test_format_json_is_one_document_on_stdout(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    known = tmp_path / "known_hosts"
    known.write_text("")
    run = subprocess.run(
        [str(FAB), "-H", "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", "status"]
        + ["--format", "json", "--batch", "2", "--known-hosts", str(known)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 1  # no sshd on those ports: the hosts failed
    results = json.loads(run.stdout)  # stdout is the document alone
    assert [(r["host"], r["result"]) for r in results] == [
        ("127.0.0.1:1", "failed"),
        ("127.0.0.1:2", "failed"),
        ("127.0.0.1:3", "skipped"),
    ]
    for result in results:
        assert set(result) == {
            "host",
            "from",
            "to",
            "result",
            "seconds",
            "bytes_sent",
            "restarted",
            "message",
        }
    assert "Unable to connect to port 1" in results[0]["message"]
    # The per-host lines and the one error line went to stderr.
    assert "[127.0.0.1:1] FAILED" in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("fab status: 3 of 3 host(s) not ok")
