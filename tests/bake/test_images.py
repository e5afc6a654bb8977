"""Real builds of our service images on Debian bookworm, each booted with systemd-nspawn
and gated by its spec's smoke checks (Java, Spark, the baked app, services, health)."""

from __future__ import annotations

import json
import re
import tarfile
import zipfile

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["rest", "spark"])
def test_image_is_built_booted_and_passes_its_smoke_checks(name, request):
    artifact = request.getfixturevalue(f"{name}_artifact")
    assert artifact.name == f"bbq-{name}"
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
        assert "a tiny Spark job runs, with Spark's native libraries" in names
        assert natives_in_spark_jars(artifact.tar_file()) == {
            "rocksdbjni": ["librocksdbjni-linux64.so"],
            "zstd-jni": ["linux/amd64/libzstd-jni-1.5.7-7.so"],
        }
    else:
        assert "health endpoint answers" in names


def natives_in_spark_jars(tar_path) -> dict[str, list[str]]:
    """The native libraries left inside the image's RocksDB and zstd jars (bbq-cleanup keeps
    the Linux x86-64 ones only), by jar name without its version."""
    found = {}
    with tarfile.open(tar_path) as tar:
        for member in tar:
            match = re.search(
                r"^\./opt/spark-[^/]+/jars/(rocksdbjni|zstd-jni)-[^/]+\.jar$", member.name
            )
            if match:
                with zipfile.ZipFile(tar.extractfile(member)) as jar:
                    found[match.group(1)] = sorted(
                        n for n in jar.namelist() if re.search(r"\.(so|dll|dylib|jnilib)$", n)
                    )
    return found
