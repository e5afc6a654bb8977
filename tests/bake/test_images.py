"""Real builds of our service images on Debian bookworm, each booted with systemd-nspawn
and gated by its spec's smoke checks (Java, Spark, the baked app, services, health), and
what the images must carry for orchestration (curl, sudo, Spark configurable by the login
user and by the file cloud-init writes, the streaming job waiting for its configuration).
The builds are slow; the checks of the elements' own files are not."""

from __future__ import annotations

import json
import re
import stat
import tarfile
import zipfile

import pytest

from tests.support.paths import REPO

ELEMENTS = REPO / "elements"
SPARK_UNITS = ELEMENTS / "spark" / "static" / "usr" / "lib" / "systemd" / "system"
# What cloud-init writes into /etc/spark/spark.conf at stack launch (stacks/ use these names).
SPARK_CONF_NAMES = {
    "SPARK_MASTER_HOST",
    "SPARK_MASTER_PORT",
    "SPARK_MASTER_WEBUI_PORT",
    "SPARK_MASTER_URL",
    "SPARK_WORKER_CORES",
    "SPARK_WORKER_MEMORY",
    "SPARK_WORKER_WEBUI_PORT",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rest", "spark", "streaming"])
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
    elif name == "streaming":
        assert "openjdk-17-jre-headless" in packages
        assert "streaming unit installed, disabled and stopped until configured" in names
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


def tar_members(artifact, names: set[str]) -> dict[str, tarfile.TarInfo]:
    """The members of the image's root filesystem tar with these paths (``/etc/...``)."""
    with tarfile.open(artifact.tar_file()) as tar:
        return {m.name[1:]: m for m in tar if m.name[1:] in names}


def tar_text(artifact, path: str) -> str:
    with tarfile.open(artifact.tar_file()) as tar:
        return tar.extractfile(f".{path}").read().decode()


def id_names(artifact) -> dict[str, dict[int, str]]:
    """The image's own user and group names by id (its tar holds numeric owners only)."""
    names = {}
    for table in ("passwd", "group"):
        rows = (line.split(":") for line in tar_text(artifact, f"/etc/{table}").splitlines())
        names[table] = {int(row[2]): row[0] for row in rows if len(row) > 2}
    return names


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rest", "spark", "streaming"])
def test_images_carry_curl_and_sudo_for_cloud_init(name, request):
    artifact = request.getfixturevalue(f"{name}_artifact")
    packages = {p["name"] for p in artifact.manifest["packages"]}
    assert {"curl", "sudo", "cloud-init"} <= packages
    report = json.loads((artifact.path / "smoke-report.json").read_text())
    passed = {c["name"] for c in report["checks"] if c["passed"]}
    assert "curl and sudo installed, sudoers policy valid and applied" in passed
    assert "cloud-init's default user is created, with passwordless sudo" in passed


@pytest.mark.slow
def test_spark_image_lets_the_login_user_configure_spark(spark_artifact):
    home = "/opt/spark-4.3.0"
    dirs = {f"{home}/{d}" for d in ("conf", "logs", "work")}
    members = tar_members(spark_artifact, dirs | {"/opt/spark", f"{home}/bin"})
    assert members["/opt/spark"].issym() and members["/opt/spark"].linkname == home
    names = id_names(spark_artifact)

    def owner(member):
        return names["passwd"].get(member.uid), names["group"].get(member.gid)

    for path in dirs:
        member = members[path]
        assert member.isdir() and owner(member) == ("spark", "spark"), path
        assert stat.S_IMODE(member.mode) == 0o2775, (path, oct(member.mode))
    assert owner(members[f"{home}/bin"]) == ("root", "root")  # what runs stays root's
    # cloud-init's default user joins the spark group: the drop-in keeps the distro's groups.
    dropin = tar_text(spark_artifact, "/etc/cloud/cloud.cfg.d/80-bbq-spark-group.cfg")
    groups = re.findall(r"^ +- (\S+)$", dropin, re.M)
    assert groups[-1] == "spark" and "sudo" in groups
    defaults = tar_text(spark_artifact, f"{home}/conf/spark-defaults.conf")
    assert re.findall(r"^(spark\.\S+) (\S+)$", defaults, re.M) == [
        ("spark.driver.port", "7100"),
        ("spark.blockManager.port", "7200"),
        ("spark.port.maxRetries", "16"),
    ]
    report = json.loads((spark_artifact.path / "smoke-report.json").read_text())
    cluster = next(c for c in report["checks"] if c["name"].startswith("master and worker"))
    assert cluster["passed"], cluster
    assert "alive workers 1" in cluster["output"]


@pytest.mark.slow
def test_streaming_image_waits_for_its_configuration(streaming_artifact):
    preset = "/usr/lib/systemd/system-preset/80-bbq-streaming.preset"
    wants = "/etc/systemd/system/multi-user.target.wants/bbq-streaming.service"
    unit = "/usr/lib/systemd/system/bbq-streaming.service"
    members = tar_members(streaming_artifact, {preset, wants, unit})
    assert wants not in members  # not enabled
    assert tar_text(streaming_artifact, preset).split() == ["disable", "bbq-streaming.service"]
    text = tar_text(streaming_artifact, unit)
    assert "--config-dir /etc/bbq/bbq.conf.d" in text
    assert "StartLimitIntervalSec=0" in text and "Restart=on-failure" in text
    # The Spark client side of the job: the same fixed ports as the cluster's.
    defaults = tar_text(streaming_artifact, "/opt/spark-4.3.0/conf/spark-defaults.conf")
    assert "spark.driver.port 7100" in defaults


def unit_environment(text: str) -> tuple[set[str], set[str]]:
    """(variables the unit's ExecStart uses, variables its Environment= lines default)."""
    used = set(re.findall(r"\$\{(\w+)\}", text.split("ExecStart=", 1)[1]))
    defaults = {
        assignment.split("=", 1)[0]
        for line in re.findall(r"^Environment=(.*)$", text, re.M)
        for assignment in line.split()
    }
    return used, defaults


def test_spark_units_are_configured_by_the_file_cloud_init_writes():
    conf = (ELEMENTS / "spark" / "static" / "etc" / "spark" / "spark.conf").read_text()
    in_file = set(re.findall(r"^(\w+)=", conf, re.M))
    assert SPARK_CONF_NAMES <= in_file
    used_by_units = set()
    for unit in ("spark-master.service", "spark-worker.service"):
        text = (SPARK_UNITS / unit).read_text()
        assert "EnvironmentFile=/etc/spark/spark.conf" in text
        assert "StartLimitIntervalSec=0" in text  # retries until its peer or address is up
        used, defaults = unit_environment(text)
        # Every setting has a default in the unit, so a file that leaves one out still works,
        # and the image's file sets every one.
        assert used <= defaults and used <= in_file, (unit, used - defaults, used - in_file)
        used_by_units |= used
    assert SPARK_CONF_NAMES <= used_by_units
    master = (SPARK_UNITS / "spark-master.service").read_text()
    assert "--host ${SPARK_MASTER_HOST}" in master  # binds (and advertises) the address given


def test_every_variable_of_our_elements_is_documented():
    undocumented = {}
    for element in sorted(p for p in ELEMENTS.iterdir() if p.is_dir()):
        readme = (element / "README.rst").read_text()
        for env in sorted((element / "environment.d").glob("*.bash")):
            for name in re.findall(r"^export (DIB_\w+)=", env.read_text(), re.M):
                if not re.search(rf"\b{name}\b", readme):
                    undocumented.setdefault(element.name, []).append(name)
    assert undocumented == {}
