"""What our elements leave out of images: bbq-cleanup's removals (kernel modules, native
libraries of other platforms, symbol tables), every switch documented, and the spark
element's parts left out and its stored jars."""

from __future__ import annotations

import ctypes
import re
import shutil
import struct
import subprocess
import sys
import zipfile

import pytest

from tests.support.paths import REPO

ELEMENT = REPO / "elements" / "bbq-cleanup"
SCRIPT = ELEMENT / "finalise.d" / "90-bbq-cleanup"
NATIVES_SCRIPT = ELEMENT / "post-install.d" / "90-bbq-foreign-native-libs"
STRIP_SCRIPT = ELEMENT / "post-install.d" / "91-bbq-strip-libs"
SPARK = REPO / "elements" / "spark"
STORE_JARS = SPARK / "install.d" / "61-spark-jars-stored"


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
    assert len(switches) >= 13
    readme = (ELEMENT / "README.rst").read_text()
    script = "".join(
        path.read_text()
        for phase in ("post-install.d", "finalise.d")
        for path in sorted((ELEMENT / phase).iterdir())
    )
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


def shell_function(script, name: str) -> str:
    text = script.read_text()
    return re.search(rf"^{name}\(\) \{{\n.*?^\}}\n", text, re.M | re.S).group(0)


def run_strip_functions(call: str, *args) -> subprocess.CompletedProcess:
    """Run the strip script's own ``aligned`` and ``strip_library`` functions."""
    functions = shell_function(STRIP_SCRIPT, "aligned") + shell_function(
        STRIP_SCRIPT, "strip_library"
    )
    return subprocess.run(
        ["bash", "-c", f"set -eu -o pipefail\n{functions}{call}", "bash", *args],
        capture_output=True,
        text=True,
    )


def shared_library(tmp_path):
    """A shared library with a symbol table, built here."""
    source = tmp_path / "answer.c"
    source.write_text(
        "static int helper(void) { return 41; }\nint answer(void) { return helper() + 1; }\n"
    )
    library = tmp_path / "libanswer.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-g", "-o", str(library), str(source)], check=True)
    return library


def misalign_first_writable_load(library, target) -> None:
    """Copy LIBRARY to TARGET with a LOAD segment's file offset moved off its alignment,
    what strip makes of libraries patchelf rewrote."""
    data = bytearray(library.read_bytes())
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for index in range(phnum):
        at = phoff + index * phentsize
        kind, flags = struct.unpack_from("<II", data, at)
        if kind == 1 and flags & 2:  # PT_LOAD, writable
            (offset,) = struct.unpack_from("<Q", data, at + 8)
            struct.pack_into("<Q", data, at + 8, offset + 0x10)
            break
    target.write_bytes(bytes(data))


needs_binutils = pytest.mark.skipif(
    not (shutil.which("strip") and shutil.which("readelf") and shutil.which("cc")),
    reason="needs binutils and a C compiler",
)


@needs_binutils
def test_stripped_library_loses_its_symbol_table_and_still_loads(tmp_path):
    library = shared_library(tmp_path)
    library.chmod(0o755)
    before = library.stat().st_size
    result = run_strip_functions('strip_library "$1"', str(library))
    assert result.returncode == 0 and result.stdout == "", result.stderr
    assert library.stat().st_size < before
    assert oct(library.stat().st_mode & 0o777) == "0o755"
    symbols = subprocess.run(["readelf", "-sW", str(library)], capture_output=True, text=True)
    assert "helper" not in symbols.stdout  # a local symbol: gone
    assert ctypes.CDLL(str(library)).answer() == 42
    assert list(tmp_path.glob("libanswer.so.*")) == []  # no temporary copy left


@needs_binutils
def test_segments_the_loader_would_refuse_are_found(tmp_path):
    good = shared_library(tmp_path)
    assert run_strip_functions('aligned "$1"', str(good)).returncode == 0
    bad = tmp_path / "libbad.so"
    misalign_first_writable_load(good, bad)
    assert run_strip_functions('aligned "$1"', str(bad)).returncode == 1


@needs_binutils
def test_a_library_strip_cannot_handle_is_kept_whole(tmp_path):
    broken = tmp_path / "libbroken.so"
    broken.write_bytes(shared_library(tmp_path).read_bytes()[:200])  # a truncated ELF
    content = broken.read_bytes()
    result = run_strip_functions('strip_library "$1"', str(broken))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"bbq-cleanup: kept {broken} unstripped"
    assert broken.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("libbroken")] == [
        "libbroken.so"
    ]


def leave_out(tmp_path, shells: str, kubernetes: str) -> set[str]:
    """Run the spark element's own ``leave_out`` and its two blocks on a Spark 4.3 layout;
    what is left, relative to Spark's home."""
    home = tmp_path / "spark"
    for name in SPARK_LAYOUT:
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text(name)
    text = (SPARK / "install.d" / "60-spark").read_text()
    start = text.index("# leave_out PATTERN")
    end = text.index("\nfi\n", text.index('if [ "${DIB_SPARK_KUBERNETES}"')) + 4
    result = subprocess.run(
        ["bash", "-c", "set -eu -o pipefail\n" + text[start:end]],
        env={
            "PATH": "/usr/bin:/bin",
            "home": str(home),
            "DIB_SPARK_SHELLS": shells,
            "DIB_SPARK_KUBERNETES": kubernetes,
        },
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return {str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()}


SHELLS = {
    "jars/connect-repl/spark-connect-client-jvm_2.13-4.3.0.jar",
    "jars/connect-repl/ammonite-compiler_2.13.18-3.0.8.jar",
    "jars/spark-connect_2.13-4.3.0.jar",
    "jars/spark-repl_2.13-4.3.0.jar",
    "jars/scala-compiler-2.13.18.jar",
    "bin/spark-shell",
    "bin/spark-connect-shell",
    "bin/spark-pipelines",
    "sbin/start-connect-server.sh",
    "sbin/stop-connect-server.sh",
}
KUBERNETES = {
    "jars/spark-kubernetes_2.13-4.3.0.jar",
    "jars/kubernetes-client-7.6.1.jar",
    "jars/kubernetes-model-core-7.6.1.jar",
    "jars/volcano-model-7.6.1.jar",
    "jars/vertx-core-4.5.26.jar",
    "jars/zjsonpatch-7.6.1.jar",
    "bin/docker-image-tool.sh",
}
KEPT_ALWAYS = {
    "jars/spark-core_2.13-4.3.0.jar",
    "jars/spark-sql_2.13-4.3.0.jar",
    "jars/spark-hive-thriftserver_2.13-4.3.0.jar",
    "jars/scala-library-2.13.18.jar",
    "jars/scala-reflect-2.13.18.jar",
    "jars/snakeyaml-2.5.jar",
    "jars/jackson-dataformat-yaml-2.21.2.jar",
    "jars/netty-codec-http-4.2.13.Final.jar",
    "jars/jline-3.29.0-jdk8.jar",
    "bin/spark-submit",
    "bin/pyspark",
    "bin/spark-sql",
    "bin/spark-class",
    "sbin/spark-daemon.sh",
}
SPARK_LAYOUT = SHELLS | KUBERNETES | KEPT_ALWAYS


@pytest.mark.parametrize(
    ("shells", "kubernetes", "gone"),
    [
        ("0", "0", SHELLS | KUBERNETES),
        ("1", "0", KUBERNETES),
        ("0", "1", SHELLS),
        ("1", "1", set()),
    ],
)
def test_spark_leaves_out_the_shells_and_kubernetes_unless_asked(
    shells, kubernetes, gone, tmp_path
):
    assert leave_out(tmp_path, shells, kubernetes) == SPARK_LAYOUT - gone


def store_jars(path, stored="1") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(STORE_JARS), str(path)],
        env={"PATH": "/usr/bin:/bin", "DIB_SPARK_JARS_STORED": stored},
        capture_output=True,
        text=True,
    )


def deflated_jar(path) -> list[tuple]:
    """A jar like Spark's (a JAR marker in the first entry's extra field, a directory,
    class files, an executable script); its entries as (name, time, attributes, data)."""
    entries = [
        ("META-INF/", (2025, 10, 27, 0, 57, 0), 0o40755 << 16 | 0x10, b""),
        ("META-INF/MANIFEST.MF", (2025, 10, 27, 0, 57, 2), 0o644 << 16, b"Manifest-Version: 1.0\n"),
        (
            "org/apache/spark/A.class",
            (2025, 10, 27, 0, 57, 4),
            0o644 << 16,
            b"\xca\xfe\xba\xbe" * 500,
        ),
        (
            "org/apache/spark/B.class",
            (2025, 10, 27, 0, 57, 6),
            0o644 << 16,
            b"org/apache/spark/" * 300,
        ),
        ("bin/run.sh", (2025, 10, 27, 0, 57, 8), 0o755 << 16, b"#!/bin/sh\necho run\n"),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for index, (name, when, attributes, data) in enumerate(entries):
            info = zipfile.ZipInfo(name, when)
            info.external_attr = attributes
            info.compress_type = zipfile.ZIP_DEFLATED
            if index == 0:
                info.extra = b"\xfe\xca\x00\x00"  # JarMarker
            archive.writestr(info, data)
    return entries


def test_jars_are_rewritten_with_the_same_entries_stored(tmp_path):
    jars = tmp_path / "jars"
    entries = deflated_jar(jars / "spark-core_2.13-4.3.0.jar")
    nested = deflated_jar(jars / "connect-repl" / "client.jar")
    (jars / "spark-core_2.13-4.3.0.jar").chmod(0o644)
    result = store_jars(jars)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("spark: 2 jars stored,")
    for jar, expected in (
        (jars / "spark-core_2.13-4.3.0.jar", entries),
        (jars / "connect-repl" / "client.jar", nested),
    ):
        with zipfile.ZipFile(jar) as archive:
            assert archive.testzip() is None
            infos = archive.infolist()
            assert [
                (i.filename, i.date_time, i.external_attr, archive.read(i)) for i in infos
            ] == expected
            assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}
            assert infos[0].extra == b"\xfe\xca\x00\x00"
    assert oct((jars / "spark-core_2.13-4.3.0.jar").stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in jars.iterdir()) == ["connect-repl", "spark-core_2.13-4.3.0.jar"]
    again = store_jars(jars)
    assert again.returncode == 0 and again.stdout.startswith("spark: 0 jars stored,")


def test_jars_stay_deflated_when_switched_off(tmp_path):
    deflated_jar(tmp_path / "a.jar")
    content = (tmp_path / "a.jar").read_bytes()
    assert store_jars(tmp_path, stored="0").returncode == 0
    assert (tmp_path / "a.jar").read_bytes() == content


def test_a_jar_that_cannot_be_read_is_one_line_and_left_as_it_is(tmp_path):
    (tmp_path / "broken.jar").write_bytes(b"not a zip archive")
    result = store_jars(tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"spark: cannot store the entries of {tmp_path / 'broken.jar'}: File is not a zip file"
    ]
    assert (tmp_path / "broken.jar").read_bytes() == b"not a zip archive"
