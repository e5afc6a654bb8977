"""Real builds of our service images on Debian bookworm, each booted with systemd-nspawn
and gated by its spec's smoke checks (Java, Spark, the baked app, services, health)."""

from __future__ import annotations

import json

import pytest

from bake.artifacts import Artifact
from tests.bake.conftest import run_bake

pytestmark = pytest.mark.slow
BUILD_TIMEOUT = 2400


@pytest.mark.parametrize("name", ["rest", "spark"])
def test_image_is_built_booted_and_passes_its_smoke_checks(name, tmp_path):
    spec = f"image-specs/{name}.yaml"
    store = tmp_path / "store"
    result = run_bake("build", spec, "--plain", "--output", str(store), timeout=BUILD_TIMEOUT)
    assert result.returncode == 0, result.stderr[-5000:]
    fingerprint = run_bake("fingerprint", spec, "--plain").stdout.strip()
    artifact = Artifact.load(store / f"bbq-{name}" / fingerprint)
    assert artifact.manifest["status"] == "good"
    assert artifact.manifest["app"]  # the app source hash: the app is baked in
    report = json.loads((artifact.path / "smoke-report.json").read_text())
    names = [c["name"] for c in report["checks"]]
    assert names == [c["name"] for c in artifact.spec["smoke"]]
    assert "app version from the baked venv" in names
    failed = [c for c in report["checks"] if not c["passed"]]
    assert not failed, failed
    packages = {p["name"] for p in artifact.manifest["packages"]}
    if name == "spark":
        assert "openjdk-17-jre-headless" in packages
        assert "a tiny Spark job runs" in names
    else:
        assert "health endpoint answers" in names
