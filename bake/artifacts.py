"""The artifact store: where finished builds live, and what each one holds.

Layout::

    STORE/<name>/<fingerprint>/      one good build (moved here only when complete)
        <name>.qcow2 <name>.tar ...  the image files diskimage-builder wrote
        <name>.d/dib-manifests/      diskimage-builder's manifests (packages, environment)
        SHA256SUMS                   `sha256sum -c` format, one line per image file
        build.log                    the full build log
        smoke-report.json            the smoke checks run on an instance booted from it
        manifest.json                what was built, from what, and how big it is; for each
                                     file its size and sha256, and for disk images also the
                                     sha512 and md5 Glance computes (what publish compares)
    STORE/.failed/<name>-<fingerprint>-<time>/   failed builds, kept with their log
    STORE/.tmp/                       builds in progress (same filesystem: moves are atomic)

Example::

    artifact = Artifact.load("artifacts/bbq-base/3f2a...")
    artifact.verify()            # raises ArtifactError when a file fails its SHA256SUMS
    artifact.image_file()        # Path of the qcow2 (or raw) image
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bake.errors import InputError
from bake.hashing import file_digests, sha256_file
from bake.validation import ValidationError, problems_from_schema, read_text

MANIFEST = "manifest.json"
CHECKSUMS = "SHA256SUMS"
BUILD_LOG = "build.log"
SMOKE_REPORT = "smoke-report.json"
MANIFEST_FORMAT = 1
# Files of these kinds are images that can be booted or uploaded, in order of preference.
DISK_FORMATS = {".qcow2": "qcow2", ".raw": "raw", ".vhd": "vhd"}
CHUNK = 1024 * 1024


class ArtifactError(InputError):
    """An artifact is missing, incomplete or fails its checksums."""


# What a disk image's manifest entry records besides sha256: Glance's default
# os_hash_algo (sha512) and its checksum (md5), so publishing need not hash them again.
GLANCE_DIGESTS = ("sha512", "md5")


def is_disk_image(name: str) -> bool:
    """Whether a file of an artifact is a disk image (one that can be uploaded to Glance)."""
    return name.endswith(tuple(DISK_FORMATS))


@dataclasses.dataclass(frozen=True)
class Artifact:
    """One complete build in the store."""

    path: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def spec(self) -> dict[str, Any]:
        return self.manifest["spec"]

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.manifest["files"]

    @classmethod
    def load(cls, path: str | Path) -> Artifact:
        """Read an artifact directory; raise ArtifactError when it is not a complete one."""
        path = Path(path)
        if not path.is_dir():
            raise ArtifactError(f"{path}: no such artifact directory")
        manifest = _read_manifest(path)
        artifact = cls(path, manifest)
        for name, info in artifact.files.items():
            file = path / name
            if not file.is_file():
                raise ArtifactError(f"{path}: file {name} listed in {MANIFEST} is missing")
            if file.stat().st_size != info["size"]:
                raise ArtifactError(
                    f"{file}: size {file.stat().st_size} differs from the manifest's {info['size']}"
                )
        return artifact

    def verify(self) -> None:
        """Check every file against SHA256SUMS; raise ArtifactError naming the first bad one."""
        sums = self.path / CHECKSUMS
        if not sums.is_file():
            raise ArtifactError(f"{self.path}: {CHECKSUMS} missing")
        expected = parse_checksums(sums.read_text())
        if set(expected) != set(self.files):
            raise ArtifactError(f"{sums}: lists {sorted(expected)}, manifest {sorted(self.files)}")
        for name, digest in expected.items():
            actual = sha256_file(self.path / name)
            if actual != digest:
                raise ArtifactError(
                    f"{self.path / name}: sha256 {actual} does not match {CHECKSUMS} ({digest})"
                )

    def image_file(self) -> tuple[Path, str]:
        """The bootable/uploadable image and its disk format (qcow2 preferred over raw)."""
        for suffix, disk_format in DISK_FORMATS.items():
            for name in self.files:
                if name.endswith(suffix):
                    return self.path / name, disk_format
        raise ArtifactError(f"{self.path}: no disk image among {sorted(self.files)}")

    def tar_file(self) -> Path:
        """The root filesystem tarball (output type `tar`), used to boot containers."""
        for name in self.files:
            if name.endswith(".tar"):
                return self.path / name
        raise ArtifactError(f"{self.path}: no .tar output (add `tar` to the spec's types)")


# What Artifact.load needs of a manifest; anything else in it is only shown.
MANIFEST_SCHEMA = {
    "type": "object",
    "required": ["name", "version", "fingerprint", "spec", "files"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
        "version": {"type": "string"},
        "fingerprint": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "spec": {"type": "object"},
        "files": {
            "type": "object",
            "propertyNames": {"pattern": "^[^/\\x00]+$", "not": {"enum": [".", ".."]}},
            "additionalProperties": {
                "type": "object",
                "required": ["size"],
                "properties": {"size": {"type": "integer", "minimum": 0}},
            },
        },
        "built_at": {"type": "string"},
        "status": {"type": "string"},
        "total_size": {"type": "integer", "minimum": 0},
    },
}
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


def _read_manifest(path: Path) -> dict[str, Any]:
    """The artifact's manifest, checked against MANIFEST_SCHEMA; ArtifactError (one line,
    naming the file and the first problem) for a missing, unreadable or malformed one."""
    file = path / MANIFEST
    if not file.exists() and not file.is_symlink():
        raise ArtifactError(f"{path}: not a complete artifact ({MANIFEST} missing)")
    try:
        text = read_text(file, str(file), MAX_MANIFEST_BYTES)
        manifest = json.loads(text, parse_constant=_no_constant)
    except ValidationError as exc:
        raise ArtifactError(exc.lines()[0]) from None
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(f"{file}: invalid JSON: {str(exc)[:200]}") from None
    problems = problems_from_schema(manifest, MANIFEST_SCHEMA, str(file))
    if problems:
        raise ArtifactError(f"{problems[0]}")
    return manifest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_checksums(text: str) -> dict[str, str]:
    """``sha256sum`` output as {file name: hex digest}."""
    result = {}
    for line in text.splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            result[name.lstrip("*")] = digest
    return result


class Store:
    """An artifact store rooted at a directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path_for(self, name: str, fingerprint: str) -> Path:
        return self.root / name / fingerprint

    def find(self, name: str, fingerprint: str) -> Artifact | None:
        """The complete artifact for this name and fingerprint, if the store has one."""
        path = self.path_for(name, fingerprint)
        if not path.exists():
            return None
        try:
            return Artifact.load(path)
        except ArtifactError:
            return None

    def artifacts(self) -> Iterator[Artifact]:
        """Every complete artifact, newest first within each name."""
        if not self.root.is_dir():
            return
        for name_dir in sorted(p for p in self.root.iterdir() if not p.name.startswith(".")):
            found = []
            for path in name_dir.iterdir() if name_dir.is_dir() else ():
                try:
                    found.append(Artifact.load(path))
                except ArtifactError:
                    continue
            found.sort(key=lambda a: a.manifest.get("built_at", ""), reverse=True)
            yield from found

    def new_build_dir(self, name: str) -> Path:
        """A fresh directory under STORE/.tmp for a build in progress."""
        tmp = self.root / ".tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        path = tmp / f"{name}-{os.getpid()}-{time.time_ns()}"
        path.mkdir()
        return path

    def commit(self, build_dir: Path, output_dir: Path, manifest: dict[str, Any]) -> Artifact:
        """Write checksums and manifest into ``output_dir``, then move it into place.

        ``manifest`` gets ``files`` (name: size, sha256, and for disk images sha512 and md5,
        all from one read of each file) and is written last; the move into
        STORE/<name>/<fingerprint> is a rename, so the store never shows half an artifact.
        """
        files = {}
        for file in sorted(output_dir.iterdir()):
            if file.is_file() and file.name not in (MANIFEST, CHECKSUMS, BUILD_LOG, SMOKE_REPORT):
                extra = GLANCE_DIGESTS if is_disk_image(file.name) else ()
                algorithms = ("sha256", *extra)
                files[file.name] = {"size": file.stat().st_size, **file_digests(file, algorithms)}
        (output_dir / CHECKSUMS).write_text(
            "".join(f"{info['sha256']}  {name}\n" for name, info in files.items())
        )
        manifest = {**manifest, "format": MANIFEST_FORMAT, "files": files}
        manifest["total_size"] = sum(info["size"] for info in files.values())
        (output_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        final = self.path_for(manifest["name"], manifest["fingerprint"])
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # a forced rebuild replaces the old artifact
            old = self.root / ".tmp" / f"replaced-{final.name}-{time.time_ns()}"
            final.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        output_dir.rename(final)
        shutil.rmtree(build_dir, ignore_errors=True)
        return Artifact.load(final)

    def _failed_path(self, name: str, fingerprint: str) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        (self.root / ".failed").mkdir(parents=True, exist_ok=True)
        return self.root / ".failed" / f"{name}-{fingerprint[:12]}-{stamp}-{os.getpid()}"

    def keep_failed(self, name: str, fingerprint: str, files: list[Path]) -> Path:
        """Keep a failed build's log and reports under STORE/.failed; return that directory."""
        path = self._failed_path(name, fingerprint)
        path.mkdir()
        for file in files:
            if file.exists():
                shutil.copy2(file, path / file.name)
        return path

    def set_aside(self, output_dir: Path, name: str, fingerprint: str) -> Path:
        """Move a built but failing image (files, log, report) under STORE/.failed."""
        path = self._failed_path(name, fingerprint)
        output_dir.rename(path)
        return path
