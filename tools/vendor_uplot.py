#!/usr/bin/env python3
"""Vendor uPlot (the dashboard's charting library) into app/bbq/static/, reproducibly.

    tools/vendor_uplot.py 1.6.32      fetch that version with npm, check it, vendor it
    tools/vendor_uplot.py --refetch   fetch the recorded version again and compare
    tools/vendor_uplot.py --check     the vendored files match the record (offline)

The package tarball comes from npm's configured registry (``npm pack``), and its sha512 must
equal the ``dist.integrity`` the registry's metadata gives (``npm view``) and, when the same
version was vendored before, the integrity recorded in ``app/bbq/static/uPlot.json``. Three
files of the tarball are kept, flat beside the dashboard (package data is ``static/*``):
``uPlot.iife.min.js``, ``uPlot.min.css`` and the licence as ``uPlot.LICENSE``; the record
holds the version, the tarball's integrity and each kept file's sha256.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "uplot"
STATIC = Path(__file__).resolve().parents[1] / "app" / "bbq" / "static"
RECORD = STATIC / "uPlot.json"
# tarball member -> vendored file name
FILES = {
    "package/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
    "package/dist/uPlot.min.css": "uPlot.min.css",
    "package/LICENSE": "uPlot.LICENSE",
}
VERSION = re.compile(r"\A[0-9]+\.[0-9]+\.[0-9]+\Z")
NPM_TIMEOUT = 300


class Failed(Exception):
    pass


def integrity_of(data: bytes) -> str:
    """The Subresource Integrity string npm records for a tarball (sha512, base64)."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def npm(*args: str, cwd: str | None = None) -> str:
    try:
        done = subprocess.run(
            ["npm", *args], cwd=cwd, capture_output=True, text=True, timeout=NPM_TIMEOUT
        )
    except FileNotFoundError:
        raise Failed("npm not found (apt-get install npm)") from None
    except subprocess.TimeoutExpired:
        raise Failed(f"npm {' '.join(args)}: no answer within {NPM_TIMEOUT}s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise Failed(f"npm {' '.join(args)} failed: {last}")
    return done.stdout


def registry_integrity(version: str) -> str:
    found = json.loads(npm("view", f"{PACKAGE}@{version}", "dist.integrity", "--json") or "null")
    if not isinstance(found, str) or not found.startswith("sha512-"):
        raise Failed(f"the registry gives no sha512 integrity for {PACKAGE}@{version}: {found!r}")
    return found


def fetch(version: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="vendor-uplot-") as tmp:
        npm("pack", f"{PACKAGE}@{version}", "--silent", cwd=tmp)
        tarballs = list(Path(tmp).glob("*.tgz"))
        if len(tarballs) != 1:
            raise Failed(f"npm pack wrote {len(tarballs)} tarballs, expected one")
        return tarballs[0].read_bytes()


def checked_members(tarball: bytes, integrity: str, version: str) -> dict[str, bytes]:
    """The kept files of ``tarball`` once its sha512 equals ``integrity`` and its
    package.json names ``version``."""
    got = integrity_of(tarball)
    if got != integrity:
        raise Failed(f"tarball of {PACKAGE}@{version}: sha512 {got} is not {integrity}")
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        meta = json.loads(tar.extractfile("package/package.json").read())
        if meta.get("version") != version:
            raise Failed(f"tarball holds version {meta.get('version')!r}, not {version}")
        for member, name in FILES.items():
            found = tar.extractfile(member)
            if found is None:
                raise Failed(f"tarball of {PACKAGE}@{version} has no file {member}")
            out[name] = found.read()
    return out


def recorded() -> dict:
    try:
        return json.loads(RECORD.read_text())
    except FileNotFoundError:
        return {}


def vendor(version: str) -> None:
    if not VERSION.match(version):
        raise Failed(f"version must be X.Y.Z, not {version!r}")
    integrity = registry_integrity(version)
    before = recorded()
    if before.get("version") == version and before.get("integrity") != integrity:
        raise Failed(
            f"the registry's integrity of {PACKAGE}@{version} is {integrity}, "
            f"but {RECORD.name} recorded {before.get('integrity')}: refusing"
        )
    files = checked_members(fetch(version), integrity, version)
    for name, data in files.items():
        (STATIC / name).write_bytes(data)
    record = {
        "package": PACKAGE,
        "version": version,
        "license": "MIT",
        "integrity": integrity,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        "refresh": f"tools/vendor_uplot.py {version}",
    }
    RECORD.write_text(json.dumps(record, indent=2) + "\n")
    print(f"vendored {PACKAGE}@{version} ({integrity}) into {STATIC}")


def check() -> None:
    """The vendored files are the ones recorded (no network)."""
    record = recorded()
    if not record:
        raise Failed(f"{RECORD} missing: run tools/vendor_uplot.py VERSION")
    for name, digest in record["files"].items():
        path = STATIC / name
        if not path.exists():
            raise Failed(f"{path} missing")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise Failed(f"{path}: sha256 differs from {RECORD.name}")
    banner = (STATIC / "uPlot.iife.min.js").read_text()[:200]
    if f"(v{record['version']})" not in banner:
        raise Failed(f"uPlot.iife.min.js does not say version {record['version']}")
    print(f"ok: {PACKAGE}@{record['version']} as recorded in {RECORD.name}")


def refetch() -> None:
    """Fetch the recorded version again: same integrity, same files."""
    record = recorded()
    version = record.get("version")
    if not version:
        raise Failed(f"{RECORD} records no version")
    if registry_integrity(version) != record["integrity"]:
        raise Failed(f"the registry's integrity of {PACKAGE}@{version} changed")
    files = checked_members(fetch(version), record["integrity"], version)
    for name, data in files.items():
        if (STATIC / name).read_bytes() != data:
            raise Failed(f"{name} differs from the registry's {PACKAGE}@{version}")
    print(f"ok: {PACKAGE}@{version} is the registry's, byte for byte")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("version", nargs="?", help="the uPlot version to vendor (X.Y.Z)")
    group.add_argument("--check", action="store_true", help="offline: files match the record")
    group.add_argument("--refetch", action="store_true", help="compare with the registry's")
    args = parser.parse_args(argv)
    try:
        if args.check:
            check()
        elif args.refetch:
            refetch()
        else:
            vendor(args.version)
    except Failed as exc:
        print(f"vendor_uplot: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
