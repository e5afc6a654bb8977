"""``bake prune`` on a terminal (a real pseudo-terminal): it shows the plan and asks before it
deletes; "n" (or anything but y/yes) changes nothing. The stack tests' cloud (Keystone,
Glance, the real Nova that says no server uses these images: tests/fixtures/heat.py)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
import uuid

import pytest

from tests.fixtures.heat import CLOUD_NAME
from tests.publish.helpers import BAKE, REPO, bake
from tests.support.cli import table_rows

CLOUD = ("--os-cloud", CLOUD_NAME)


def on_terminal(*args: str, env: dict[str, str], answer: bytes, timeout: float = 120):
    """Run ``bake`` with a pseudo-terminal as stdin, stdout and stderr; type ``answer`` when
    it asks ``[y/N]``. Returns (exit code, everything it printed, whether it asked)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "DIB_"))}
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(BAKE), *args],
        cwd=REPO,
        env={**base, **env},
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    output, asked = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the program closed the terminal (exited)
                break
            if not data:
                break
            output += data
            if not asked and b"[y/N]" in output:
                os.write(master, answer)
                asked = True
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, output.decode().replace("\r\n", "\n"), asked


@pytest.mark.slow  # the stack tests' cloud starts for it (once per session)
def test_prune_asks_on_a_terminal(make_artifact, heat_cloud, tmp_path):
    env = {"OS_CLIENT_CONFIG_FILE": str(heat_cloud.clouds_yaml(tmp_path / "clouds.yaml"))}
    name = f"bbq-y{uuid.uuid4().hex[:8]}"
    for version in ("1", "2", "3"):
        published = bake(
            "publish", str(make_artifact(name=name, version=version, mib=1).path), *CLOUD, env=env
        )
        assert published.returncode == 0, published.stderr
        time.sleep(1.1)  # Glance's created_at has one-second resolution
    args = ("prune", "--spec", name, "--keep", "1", *CLOUD)

    def versions() -> list[str]:
        listing = bake("images", "--spec", name, *CLOUD, env=env)
        return [line[1] for line in table_rows(listing.stdout)[1:]]

    code, output, asked = on_terminal(*args, env=env, answer=b"n\n")

    assert asked and code == 1, output
    assert output.count(f"{name}: would delete ") == 2
    assert "Delete 2 image(s)? [y/N]" in output
    assert "bake: prune: not confirmed; nothing pruned" in output
    assert versions() == ["3", "2", "1"]

    code, output, asked = on_terminal(*args, env=env, answer=b"y\n")

    assert asked and code == 0, output
    assert output.count(f"{name}: deleted ") == 2
    assert versions() == ["3"]

    code, output, asked = on_terminal(*args, env=env, answer=b"y\n")
    assert code == 0 and not asked, output  # nothing left to prune: nothing to ask
