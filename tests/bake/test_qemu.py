"""bake test --qemu: the QEMU command, the host key from the console, a real boot (slow)."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from bake.instances import InstanceError, qemu
from tests.support.cli import run_bake

CONSOLE = """\
[   30.1] cloud-init[512]: Cloud-init v. 22.4.2 running 'modules:final'
-----BEGIN SSH HOST KEY KEYS-----
ecdsa-sha2-nistp256 AAAAE2VjZHNh root@bbq
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK root@bbq
-----END SSH HOST KEY KEYS-----
"""


def test_host_key_comes_from_cloud_inits_console_block():
    assert qemu.host_key_line(CONSOLE, 2222) == (
        "[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK\n"
    )
    assert qemu.host_key_line(CONSOLE.split("-----BEGIN")[0], 2222) is None


def test_user_data_lets_root_in_with_the_key_only():
    data = yaml.safe_load(qemu.user_data("ssh-ed25519 AAAA test\n"))
    assert data == {
        "disable_root": False,
        "ssh_authorized_keys": ["ssh-ed25519 AAAA test"],
        "ssh_pwauth": False,
    }


def test_unknown_accelerator_is_refused():
    with pytest.raises(InstanceError, match="unknown QEMU accelerator 'hvf'"):
        qemu.preflight("hvf")


def test_bake_test_qemu_refuses_an_unknown_accelerator_in_one_line(tmp_path):
    result = run_bake("test", str(tmp_path), "--qemu", "--accel", "hvf")
    assert result.returncode == 2
    assert "invalid choice: 'hvf'" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which(qemu.QEMU), reason="QEMU is not installed")
def test_rest_image_boots_its_own_kernel_under_qemu_and_passes(rest_artifact):
    """The image's kernel finds its root disk with the modules bbq-cleanup keeps, the
    network comes up, cloud-init applies its user-data, and the smoke checks pass."""
    result = run_bake("test", str(rest_artifact.path), "--qemu", timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smoke test passed" in result.stdout
    report = json.loads((rest_artifact.path / "smoke-report.json").read_text())
    assert report["passed"] and len(report["checks"]) == len(rest_artifact.spec["smoke"])
