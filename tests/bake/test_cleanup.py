"""The bbq-cleanup element: which kernel modules go, and every switch documented."""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile

import pytest

from tests.support.paths import REPO

ELEMENT = REPO / "elements" / "bbq-cleanup"
SCRIPT = ELEMENT / "finalise.d" / "90-bbq-cleanup"
NATIVES_SCRIPT = ELEMENT / "post-install.d" / "90-bbq-foreign-native-libs"


def dependents(modules_dep: str, dirs: str, tmp_path) -> set[str]:
    """Run the element's own ``dependents`` shell function on a modules.dep."""
    (tmp_path / "modules.dep").write_text(modules_dep)
    text = SCRIPT.read_text()
    function = re.search(r"^dependents\(\) \{\n.*?^\}\n", text, re.M | re.S).group(0)
    result = subprocess.run(
        ["bash", "-c", f'{function}\ndependents "$0" {dirs}', str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(result.stdout.split())


def test_listed_dirs_and_every_module_depending_on_them_go(tmp_path):
    modules_dep = (
        "kernel/sound/core/snd.ko:\n"
        "kernel/sound/pci/snd-hda.ko: kernel/sound/core/snd.ko\n"
        "kernel/drivers/gpu/drm/drm.ko:\n"
        "kernel/drivers/gpu/drm/i915/i915.ko: kernel/drivers/gpu/drm/drm.ko "
        "kernel/drivers/media/cec/cec.ko\n"
        "kernel/drivers/media/cec/cec.ko:\n"
        "kernel/drivers/gpu/drm/display/helper.ko: kernel/drivers/media/cec/cec.ko\n"
        "kernel/drivers/gpu/drm/virtio/virtio-gpu.ko: kernel/drivers/gpu/drm/drm.ko\n"
        "kernel/drivers/x/uses-helper.ko: kernel/drivers/gpu/drm/display/helper.ko\n"
        "kernel/drivers/net/virtio_net.ko:\n"
        "kernel/drivers/soundwire/x.ko:\n"
    )
    gone = dependents(modules_dep, "sound drivers/media drivers/gpu/drm/i915", tmp_path)
    assert gone == {
        "kernel/sound/core/snd.ko",
        "kernel/sound/pci/snd-hda.ko",
        "kernel/drivers/gpu/drm/i915/i915.ko",
        "kernel/drivers/media/cec/cec.ko",
        "kernel/drivers/gpu/drm/display/helper.ko",  # needs cec
        "kernel/drivers/x/uses-helper.ko",  # needs what needed cec
    }


def test_every_switch_is_documented():
    environment = (ELEMENT / "environment.d" / "10-bbq-cleanup.bash").read_text()
    switches = set(re.findall(r"^export (DIB_BBQ_CLEANUP\w*)=", environment, re.M))
    assert len(switches) >= 9
    readme = (ELEMENT / "README.rst").read_text()
    script = SCRIPT.read_text() + NATIVES_SCRIPT.read_text()
    for switch in switches:
        assert switch in readme, f"{switch} is not described in README.rst"
        name = switch.removeprefix("DIB_BBQ_CLEANUP_")
        if switch not in ("DIB_BBQ_CLEANUP", "DIB_BBQ_CLEANUP_KERNEL_MODULE_DIRS"):
            assert re.search(rf"\bon {name}\b", script), switch


# Native libraries as they are laid out in Spark 4.3's jars (RocksDB, zstd-jni, Snappy,
# netlib, jline), for two platforms we run on and several we do not.
JAR_ENTRIES = [
    "META-INF/MANIFEST.MF",
    "org/rocksdb/RocksDB.class",
    "librocksdbjni-linux64.so",
    "librocksdbjni-linux64-musl.so",
    "librocksdbjni-linux32.so",
    "librocksdbjni-linux-aarch64.so",
    "librocksdbjni-linux-aarch64-musl.so",
    "librocksdbjni-osx-arm64.jnilib",
    "librocksdbjni-win64.dll",
    "linux/amd64/libzstd-jni-1.5.7-7.so",
    "linux/aarch64/libzstd-jni-1.5.7-7.so",
    "freebsd/amd64/libzstd-jni-1.5.7-7.so",
    "aix/ppc64/libzstd-jni-1.5.7-7.so",
    "org/xerial/snappy/native/Linux/x86_64/libsnappyjava.so",
    "org/xerial/snappy/native/Linux/x86_64-musl/libsnappyjava.so",
    "org/xerial/snappy/native/Linux/android-aarch64/libsnappyjava.so",
    "org/xerial/snappy/native/Mac/x86_64/libsnappyjava.dylib",
    "org/xerial/snappy/native/AIX/ppc64/libsnappyjava.a",
    "resources/native/Linux-amd64/libnetlibblasjni.so",
    "resources/native/Linux-aarch64/libnetlibblasjni.so",
    "resources/native/windows-amd64/libnetlibblasjni.dll",
    "org/jline/nativ/Linux/arm64/libjlinenative.so",
    "org/jline/nativ/Linux/x86_64/libjlinenative.so",
    "native/libplatformless.so",  # names no platform: kept
]
KEPT = {
    "amd64": {
        "librocksdbjni-linux64.so",
        "linux/amd64/libzstd-jni-1.5.7-7.so",
        "org/xerial/snappy/native/Linux/x86_64/libsnappyjava.so",
        "resources/native/Linux-amd64/libnetlibblasjni.so",
        "org/jline/nativ/Linux/x86_64/libjlinenative.so",
    },
    "arm64": {
        "librocksdbjni-linux-aarch64.so",
        "linux/aarch64/libzstd-jni-1.5.7-7.so",
        "resources/native/Linux-aarch64/libnetlibblasjni.so",
        "org/jline/nativ/Linux/arm64/libjlinenative.so",
    },
}


def strip(arch: str, jar) -> subprocess.CompletedProcess:
    """Run the element's own ``strip_foreign_natives`` (and its patterns) on one jar."""
    text = NATIVES_SCRIPT.read_text()
    patterns = re.search(r"^NATIVE=.*?^PLATFORM_JAR=.*?\n", text, re.M | re.S).group(0)
    function = re.search(r"^strip_foreign_natives\(\) \{\n.*?^\}\n", text, re.M | re.S).group(0)
    return subprocess.run(
        ["bash", "-c", f'set -eu -o pipefail\n{patterns}{function}strip_foreign_natives "$0" "$1"']
        + [arch, str(jar)],
        capture_output=True,
        text=True,
    )


@pytest.mark.skipif(not (shutil.which("zip") and shutil.which("unzip")), reason="needs zip")
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_jars_keep_only_the_native_libraries_of_their_platform(arch, tmp_path):
    jar = tmp_path / "rocksdbjni-9.8.4.jar"
    with zipfile.ZipFile(jar, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in JAR_ENTRIES:
            archive.writestr(name, f"contents of {name}")
    result = strip(arch, jar)
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(jar) as archive:
        left = set(archive.namelist())
        assert archive.testzip() is None  # a valid archive after the rewrite
    natives = {n for n in JAR_ENTRIES if re.search(r"\.(so|dll|dylib|jnilib|a)$", n)}
    assert left == set(JAR_ENTRIES) - natives | KEPT[arch] | {"native/libplatformless.so"}
    removed = {line.split("!/", 1)[1] for line in result.stdout.split()}
    assert removed == natives - KEPT[arch] - {"native/libplatformless.so"}


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("netty-transport-native-epoll-4.2.13.Final-linux-x86_64.jar", True),
        ("netty-transport-native-epoll-4.2.13.Final-linux-aarch_64.jar", False),
        ("netty-transport-native-epoll-4.2.13.Final-linux-riscv64.jar", False),
        ("netty-tcnative-boringssl-static-2.0.76.Final-osx-x86_64.jar", False),
        ("netty-tcnative-boringssl-static-2.0.76.Final-windows-x86_64.jar", False),
    ],
)
def test_native_only_jars_of_other_platforms_go_whole(name, kept, tmp_path):
    jar = tmp_path / name
    with zipfile.ZipFile(jar, "w") as archive:
        archive.writestr("META-INF/native/libnetty.so", "native")
    result = strip("amd64", jar)
    assert result.returncode == 0, result.stderr
    assert jar.exists() is kept
    assert (result.stdout.strip() == str(jar)) is not kept


def test_an_architecture_without_a_rule_leaves_the_jar_whole(tmp_path):
    jar = tmp_path / "zstd-jni.jar"
    with zipfile.ZipFile(jar, "w") as archive:
        archive.writestr("linux/s390x/libzstd-jni.so", "native")
    assert strip("s390x", jar).returncode == 2
    assert zipfile.ZipFile(jar).namelist() == ["linux/s390x/libzstd-jni.so"]


@pytest.mark.skipif(not shutil.which("unzip"), reason="needs unzip")
def test_a_jar_that_cannot_be_read_is_an_error_and_left_as_it_is(tmp_path):
    jar = tmp_path / "broken.jar"
    jar.write_bytes(b"not a zip archive")
    result = strip("amd64", jar)
    assert result.returncode == 1 and result.stdout == ""
    assert jar.read_bytes() == b"not a zip archive"
