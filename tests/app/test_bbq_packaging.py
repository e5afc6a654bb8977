"""Plain ``bbq`` (no extras) is enough for the REST service and bbq-send: pyarrow, pandas
and pyspark belong to the Spark job only (extras ``stream`` and ``spark``)."""

import configparser
import subprocess
import sys

import requests
from bbq import testing
from packaging.requirements import Requirement

from tests.support.paths import APP

SETUP_CFG = APP / "setup.cfg"
JOB_ONLY = ("pyarrow", "pandas", "pyspark")

# Runs a console script's entry point with the job-only modules made unimportable
# (sys.modules[name] = None makes ``import name`` and its submodules raise ImportError).
RUN_WITHOUT = """
import sys
from importlib.metadata import entry_points
for name in {blocked!r}:
    sys.modules[name] = None
(script,) = entry_points(group="console_scripts", name=sys.argv[1])
sys.argv = sys.argv[1:]
sys.exit(script.load()())
"""


def without_job_modules(script: str, *args: str) -> list[str]:
    return [sys.executable, "-c", RUN_WITHOUT.format(blocked=JOB_ONLY), script, *args]


def requirement_names(text: str) -> set[str]:
    return {Requirement(line).name.lower() for line in text.split("\n") if line.strip()}


def test_job_only_packages_are_in_extras_not_in_the_base_install():
    cfg = configparser.ConfigParser()
    cfg.read(SETUP_CFG)
    base = requirement_names(cfg["options"]["install_requires"])
    extras = cfg["options.extras_require"]
    assert not base & set(JOB_ONLY), f"{SETUP_CFG}: install_requires has {base & set(JOB_ONLY)}"
    assert {"pyarrow", "pandas"} <= requirement_names(extras["stream"])
    assert "pyspark" in requirement_names(extras["spark"])


def test_rest_service_runs_without_job_modules(tmp_path):
    port = testing.free_port()
    argv = without_job_modules(
        "bbq-rest", "--config-file", "/dev/null", "--rest-host", "127.0.0.1"
    ) + ["--rest-port", str(port)]
    proc = testing.start(argv, tmp_path / "bbq-rest.log")
    try:
        testing.wait_for_port(port, proc=proc, timeout=30)
        url = f"http://127.0.0.1:{port}"
        signal = {
            "run": "plain",
            "batch_id": 0,
            "time": 1764000000.0,
            "records": 3,
            "counts": {"web": 3},
            "totals": {"web": 3},
            "dead": 0,
            "dead_total": 0,
        }
        assert requests.post(f"{url}/api/v1/batches", json=signal, timeout=10).status_code == 201
        assert requests.get(f"{url}/api/v1/summary", timeout=10).json()["totals"] == {"web": 3}
        assert "dashboard.js" in requests.get(url, timeout=10).text
    finally:
        testing.stop(proc)
    assert "ModuleNotFoundError" not in testing.log_tail(proc)


def test_send_runs_without_job_modules(zaqar_server):
    queue = zaqar_server.new_queue()
    args = ["--config-file", "/dev/null", "--zaqar-url", zaqar_server.url]
    args += ["--zaqar-queue", queue, "--zaqar-project_id", "bbq-tests"]
    out = subprocess.run(
        without_job_modules("bbq-send", *args, "post", "--generate", "7"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert zaqar_server.queue_depth(queue)["total"] == 7
    # The blocker is real: the job itself cannot start without them.
    job = subprocess.run(
        without_job_modules("bbq-stream", "--config-file", "/dev/null"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert job.returncode != 0 and "pyspark" in job.stderr
