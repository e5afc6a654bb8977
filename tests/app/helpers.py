"""Helpers shared by the app's tests."""

import subprocess

from bbq import testing

from tests.fixtures.rest import bbq_command


def send(args, *more, check=True, input=None):
    return subprocess.run(
        [bbq_command("bbq-send"), *args, *more],
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
