"""Helpers shared by the app's tests."""

import subprocess

from bbq import config, testing

from tests.fixtures.rest import bbq_command


def send_args(args):
    """``args`` (a job's, from tests.fixtures.spark.job_args) without the options bbq-send
    does not take (each program registers only its own)."""
    known = {"--config-file", "--config-dir"}
    for group, opts in config.program_options(config.SEND).items():
        known |= {f"--{group}-{opt.name}" for opt in opts}
        known |= {f"--{group}-{opt.dest}" for opt in opts}  # the old spellings
    pairs = zip(args[::2], args[1::2], strict=True)
    return [item for flag, value in pairs if flag in known for item in (flag, value)]


def send(args, *more, check=True, input=None):
    return subprocess.run(
        [bbq_command("bbq-send"), *send_args(args), *more],
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
        input=input,
    )


def wait_stored(store, n, timeout=120):
    return testing.wait_until(
        lambda: store.packets.count_documents({}) >= n and store.packets.count_documents({}),
        timeout,
        interval=0.5,
        what=f"{n} documents in MongoDB",
    )
