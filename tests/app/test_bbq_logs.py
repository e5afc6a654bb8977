"""Logging through oslo.log (issue 15): bbq-rest's access log records every request of a
scripted session (method, path, status, bytes sent, seconds), escaped so a request cannot
forge a line; --debug and --log-file work; what cannot log says so in one line."""

import http.client
import json
import re
import subprocess
import sys

import pytest
import requests
from bbq import config, logs, testing

from tests.fixtures.rest import bbq_command

ACCESS = re.compile(
    r'bbq\.rest\.access \[-\] (?P<client>\S+) "(?P<method>\S+) (?P<path>(?:[^"\\]|\\.)*)" '
    r"(?P<status>\d{3}) (?P<bytes>\d+) (?P<seconds>\d+\.\d{4})s$"
)


def start_rest(mongo_server, tmp_path, *more):
    """bbq-rest on a free port, logging to a file; (process, url, log path)."""
    port = testing.free_port()
    log = tmp_path / "bbq-rest.log"
    argv = [bbq_command("bbq-rest"), "--config-file", "/dev/null", "--log-file", str(log)]
    argv += ["--rest-host", "127.0.0.1", "--rest-port", str(port)]
    argv += ["--mongodb-url", mongo_server.url, "--mongodb-database", mongo_server.new_database()]
    proc = testing.start([*argv, *more], tmp_path / "bbq-rest.out")
    testing.wait_for_port(port, proc=proc, timeout=30)
    return proc, f"http://127.0.0.1:{port}", log


def access_lines(log) -> list[dict]:
    found = []
    for line in log.read_text().splitlines():
        match = ACCESS.search(line)
        if match:
            found.append(match.groupdict())
    return found


def raw_get(url: str, target: str) -> tuple[int, bytes]:
    """GET with a request target sent as it is (requests would quote it)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", target)
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def test_access_log_records_every_request_of_a_session(mongo_server, tmp_path):
    proc, url, log = start_rest(mongo_server, tmp_path)
    signal = {"run": "s", "batch_id": 1, "time": 1764000000.0, "counts": {"web": 2}}
    signal["totals"] = {"web": 2}
    session = requests.Session()
    calls = [
        ("GET", "/healthz", {}),
        ("GET", "/", {}),
        ("POST", "/api/v1/batches", {"json": signal}),
        ("POST", "/api/v1/batches", {"json": signal}),
        ("POST", "/api/v1/batches", {"data": b"{nope", "headers": JSON}),
        ("POST", "/api/v1/batches", {"data": b"{}", "headers": {"Content-Type": "text/plain"}}),
        ("GET", "/api/v1/summary?since=0", {}),
        ("PUT", "/healthz", {}),
        ("GET", "/no/such/page", {}),
        ("GET", "/metrics", {}),
    ]
    expected = []
    try:
        for method, path, kwargs in calls:
            reply = session.request(method, url + path, timeout=10, **kwargs)
            expected.append((method, path, str(reply.status_code), str(len(reply.content))))
        # A path that tries to forge a second line and break out of the quotes.
        status, body = raw_get(url, "/a%0Ainjected%22%1b%22%20200%201%200.1s")
        expected.append(("GET", '/a\\ninjected\\"\\x1b\\" 200 1 0.1s', str(status), str(len(body))))
        got = testing.wait_until(
            lambda: len(found := access_lines(log)) >= len(expected) and found,
            10,
            what="an access line per request",
        )
    finally:
        testing.stop(proc)
    assert [(g["method"], g["path"], g["status"], g["bytes"]) for g in got] == expected
    assert [e[2] for e in expected] == [
        "200", "200", "201", "200", "400", "415", "200", "405", "404", "200", "404"
    ]  # fmt: skip
    assert all(g["client"] == "127.0.0.1" and float(g["seconds"]) < 10 for g in got)
    text = log.read_text()
    assert not any(line.startswith("injected") for line in text.splitlines())
    assert "Traceback" not in text
    # oslo.log's format: time, pid, level, logger.
    assert re.search(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \d+ INFO bbq\.rest\.access ", text, re.M
    )


JSON = {"Content-Type": "application/json"}

IN_A_PROCESS = """
import logging, sys
from bbq import config, logs
conf = config.load(sys.argv[1:], program=config.REST)
logs.setup(conf, config.REST)
logging.getLogger("bbq.probe").debug("a debug line")
logging.getLogger("bbq.probe").info("an info line")
logging.getLogger("pymongo.command").info("a chatty library line")
print(logs.spark_level(conf))
"""


@pytest.mark.parametrize("debug", [False, True])
def test_debug_and_log_file(tmp_path, debug):
    log = tmp_path / "probe.log"
    argv = ["--config-file", "/dev/null", "--log-file", str(log)] + (["--debug"] if debug else [])
    out = subprocess.run(
        [sys.executable, "-c", IN_A_PROCESS, *argv], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    text = log.read_text()
    assert "INFO bbq.probe [-] an info line" in text
    assert ("DEBUG bbq.probe [-] a debug line" in text) is debug
    assert "chatty" not in text  # pymongo stays at WARN
    assert out.stdout.strip() == ("INFO" if debug else "WARN")  # Spark's own level
    assert out.stderr == ""  # everything went to the file


def test_logs_go_to_stderr_by_default_not_stdout(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", IN_A_PROCESS, "--config-file", "/dev/null"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "an info line" in out.stderr
    assert out.stdout.strip() == "WARN"  # bbq-send pop's messages have stdout to themselves


@pytest.mark.parametrize("program", list(config.PROGRAMS))
def test_what_cannot_log_says_so_in_one_line(program, tmp_path):
    command = ["pop"] if program == config.SEND else []
    missing = tmp_path / "no" / "such" / "dir" / "x.log"
    out = subprocess.run(
        [bbq_command(program), "--config-file", "/dev/null", "--log-file", str(missing), *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        f"{program}: cannot log to {missing}: No such file or directory"
    ]


def test_use_journal_without_its_python_package_says_so(tmp_path):
    try:
        import systemd.journal  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the systemd Python package is installed here: --use-journal works")
    out = subprocess.run(
        [bbq_command("bbq-send"), "--config-file", "/dev/null", "--use-journal", "pop"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    (line,) = out.stderr.splitlines()
    assert line.startswith("bbq-send: --use-journal: the systemd Python package")


def test_use_syslog_is_taken(tmp_path):
    """--use-syslog works without a syslog daemon (Python's syslog drops the lines)."""
    port = testing.free_port()  # nothing listens: pop fails, after logging was set up
    out = subprocess.run(
        [bbq_command("bbq-send"), "--config-file", "/dev/null", "--use-syslog"]
        + ["--zaqar-url", f"http://127.0.0.1:{port}", "--zaqar-retries", "0", "pop"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1].startswith(f"bbq-send: Zaqar at http://127.0.0.1:{port}")
    assert "Traceback" not in out.stderr


def test_printable_escapes_what_could_forge_a_line():
    line = logs.request_line(
        {"REQUEST_METHOD": "GET", "PATH_INFO": '/x\n"\x00é', "QUERY_STRING": ""}
    )
    assert line == 'GET /x\\n\\"\\x00\\xe9'
    assert json.dumps(line)  # plain ASCII
