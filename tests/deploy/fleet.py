"""Instances of the bbq-rest image to deploy to, and app versions to deploy (no pytest here,
so the deploy benchmark uses it too).

Each instance boots with systemd-nspawn from one unpacked rootfs (overlay per instance), sshd
on its own loopback port, and its REST service on its own port (a ``90-instance.conf``).

Example::

    with Fleet.boot(rootfs, workdir, count=3) as fleet:
        fleet.fab("status")
        app = app_variant(tmp / "v2", version="0.2.0", marker="v2")
        fleet.markers["0.2.0"] = "v2"
        fleet.health(0)             # {"status": "ok", "marker": "v2"} once deployed
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from bake.hostsys import free_port
from bake.instances import Instance, boot
from tests.support.paths import APP, FAB, REPO

__all__ = ["FAB", "REPO", "UNHEALTHY_FLAG", "Fleet", "app_variant"]

# While this file exists on an instance its REST service answers /healthz with 503 (the app's
# [rest] unhealthy_file option, set on every instance by Fleet.boot): any release there fails
# its health check.
UNHEALTHY_FLAG = "/etc/bbq/unhealthy"


def app_variant(target: Path, version: str, marker: str, source: Path = APP) -> Path:
    """A copy of the project's app/ (or ``source``) at ``version`` (its setup.cfg), its source
    one line apart from app/'s: ``marker`` in a comment (a distinct release even at the same
    version).

    Its /healthz names the version it runs (app/bbq/rest.py); see Fleet.markers.
    """
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(
        source,
        target,
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist"),
    )
    setup = target / "setup.cfg"
    text, count = re.subn(r"(?m)^version = .*$", f"version = {version}", setup.read_text())
    assert count == 1, "app/setup.cfg has no version line"
    setup.write_text(text)
    with open(target / "bbq" / "__init__.py", "a") as init:
        init.write(f"# app_variant: {marker}\n")
    return target


@dataclasses.dataclass
class Fleet:
    """Booted instances with one known_hosts file and their client keys.

    ``markers`` names app versions (version: marker) for :meth:`health`.
    """

    instances: list[Instance]
    rest_ports: list[int]
    known_hosts: Path
    markers: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    @contextlib.contextmanager
    def boot(
        cls,
        rootfs: Path,
        workdir: Path,
        count: int,
        prefix: str = "bbq-deploy",
        binds: Sequence[tuple[Path, str]] = (),
        files: Mapping[str, str] = {},
    ):
        """Boot ``count`` instances of ``rootfs``; stop them all afterwards.

        ``binds`` and ``files`` go to every instance (see bake.instances.boot).
        """
        ports: list[int] = []
        while len(ports) < 2 * count:  # SSH and REST ports, all distinct
            port = free_port()
            if port not in ports:
                ports.append(port)
        contexts = [
            boot(
                rootfs,
                f"{prefix}-{i + 1}",
                workdir / f"i{i + 1}",
                ssh_port=ports[2 * i],
                bind=binds,
                files={
                    # No PAM session (pam_systemd starting a user manager) per SSH command:
                    # under nspawn it sometimes stalled a command for ~2 minutes.
                    "/etc/ssh/sshd_config.d/10-no-pam.conf": "UsePAM no\n",
                    **files,
                    "/etc/bbq/bbq.conf.d/90-instance.conf": (
                        f"[rest]\nport = {ports[2 * i + 1]}\n"
                        f"url = http://127.0.0.1:{ports[2 * i + 1]}\n"
                        f"unhealthy_file = {UNHEALTHY_FLAG}\n"
                    ),
                },
            )
            for i in range(count)
        ]
        with contextlib.ExitStack() as stack:
            # Boot them side by side; whatever booted is stopped on the way out.
            with concurrent.futures.ThreadPoolExecutor(count) as pool:
                futures = [pool.submit(context.__enter__) for context in contexts]
            instances, errors = [], []
            for context, future in zip(contexts, futures, strict=True):
                try:
                    instances.append(future.result())
                    stack.push(context)
                except Exception as exc:
                    errors.append(exc)
            if errors:
                raise errors[0]
            known = workdir / "known_hosts"
            known.write_text("".join(i.known_hosts.read_text() for i in instances))
            yield cls(instances, ports[1::2], known)

    def hosts(self, *indexes: int) -> str:
        """The ``-H`` value for some instances (all by default)."""
        chosen = indexes or range(len(self.instances))
        return ",".join(f"{self.instances[i].host}:{self.instances[i].port}" for i in chosen)

    def ssh_args(self, known_hosts: Path | None = None) -> list[str]:
        args = ["--known-hosts", str(known_hosts or self.known_hosts)]
        for instance in self.instances:
            args += ["--key", str(instance.key_file)]
        return args

    def fab(
        self,
        task: str,
        *args: str,
        hosts: str | None = None,
        env: dict[str, str] | None = None,
        known_hosts: Path | None = None,
        timeout: float = 900,
    ):
        """Run the real ``fab`` from the project root; CompletedProcess with text output.

        ``hosts`` defaults to every instance; ``""`` gives no ``-H`` (hosts from Nova).
        """
        hosts = self.hosts() if hosts is None else hosts
        ssh = self.ssh_args(known_hosts)
        command = [str(FAB), *(["-H", hosts] if hosts else []), task, *ssh, *args]
        return subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env
        )

    def sh(self, index: int, command: str) -> str:
        """Run a command on an instance as root; its stdout (AssertionError if it fails)."""
        result = self.instances[index].run(command)
        assert result.exited == 0, f"{command}: {result.stderr}"
        return result.stdout.strip()

    def current(self, index: int) -> str:
        return self.sh(index, "basename $(readlink /opt/bbq/current)")

    def releases(self, index: int) -> list[str]:
        return self.sh(index, "ls /opt/bbq/releases").split()

    def main_pid(self, index: int) -> str:
        return self.sh(index, "systemctl show -P MainPID bbq-rest.service")

    def health(self, index: int) -> dict:
        """The instance's /healthz answer, its version given as the version's marker."""
        port = self.rest_ports[index]
        answer = json.loads(self.sh(index, f"curl -fsS http://127.0.0.1:{port}/healthz"))
        version = answer.pop("version", None)
        answer["marker"] = self.markers.get(version, version)
        return answer

    def pool(self, index: int) -> str:
        return self.sh(index, "cd /opt/bbq/wheels && sha256sum *.whl")
