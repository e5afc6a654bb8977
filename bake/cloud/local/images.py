"""The images a local stack boots: each role's spec (``stacks`` roles, :data:`ROLES` of
:mod:`bake.cloud.stackfiles`) resolved to the newest good artifact of the spec's current
fingerprint in the artifact store (the spec as written, or ``--plain``: both boot from
their ``tar`` output), and its root filesystem unpacked once per fingerprint under
``<store>/.stacks/.rootfs/`` (instances boot copy-on-write views of it).

Example::

    found = resolve(store, ["master", "worker", "rest", "streaming"])
    found["master"].path      # store/bbq-spark/<fingerprint>
    rootfs(store, found["master"])
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bake.artifacts import Artifact, ArtifactError, Store
from bake.cloud import stackfiles as sf
from bake.errors import InputError

REPO = sf.STACKS_DIR.parent
SPECS_DIR = REPO / "image-specs"
ROOTFS_DIR = ".rootfs"


class ImageError(InputError):
    """A role's image is missing from the store or cannot be read (one line)."""


def spec_file(spec_name: str) -> Path:
    """``image-specs/<short>.yaml`` of an image name (``bbq-spark`` → ``spark.yaml``)."""
    return SPECS_DIR / f"{spec_name.removeprefix('bbq-')}.yaml"


def current_fingerprints(spec_name: str) -> list[str]:
    """The fingerprints the spec builds to now: as written, and plain (``--plain``)."""
    from bake import spec as specs
    from bake.fingerprint import fingerprint
    from bake.plan import make_plan

    path = spec_file(spec_name)
    if not path.is_file():
        raise ImageError(f"image {spec_name}: no spec {path}")
    elements = REPO / "elements"
    try:
        spec = specs.load_spec(path, [elements], root=REPO)
        found = []
        for variant in (spec, spec.replace(partitioned=False)):
            plan = make_plan(variant, elements, os.environ, app_dir=REPO / "app")
            found.append(fingerprint(plan).value)
    except InputError as exc:
        raise ImageError(f"{path}: {str(exc).splitlines()[0]}") from None
    return list(dict.fromkeys(found))


def newest_good(store: Path, spec_name: str) -> Artifact:
    """The newest artifact of the spec's current fingerprint whose smoke test passed;
    ImageError naming the ``bake build`` to run when there is none."""
    candidates = []
    fingerprints = current_fingerprints(spec_name)
    for value in fingerprints:
        artifact = Store(store).find(spec_name, value)
        if artifact is not None and artifact.manifest.get("status") == "good":
            candidates.append(artifact)
    if not candidates:
        path = spec_file(spec_name).relative_to(REPO)
        raise ImageError(
            f"no good {spec_name} image of the current fingerprint ({fingerprints[-1][:12]}) "
            f"in {store}: run `bake build {path} --plain --output {store}`"
        )
    return max(candidates, key=lambda a: a.manifest.get("built_at", ""))


def given(path: str, role: str) -> Artifact:
    """An artifact directory given with ``--image ROLE=DIR``; ImageError when it is none or
    not an image of the role's spec."""
    try:
        artifact = Artifact.load(path)
    except ArtifactError as exc:
        raise ImageError(f"--image {role}={path}: {exc}") from None
    if artifact.name != sf.ROLES[role]:
        raise ImageError(
            f"--image {role}={path}: an image of {artifact.name}, not of {sf.ROLES[role]}"
        )
    return artifact


def resolve(store: Path, roles: list[str], pinned: dict[str, str] | None = None) -> dict:
    """{role: Artifact} for ``roles`` (``pinned``: {role: artifact directory})."""
    pinned = pinned or {}
    by_spec: dict[str, Artifact] = {}
    found = {}
    for role in roles:
        if role in pinned:
            found[role] = given(pinned[role], role)
            continue
        spec_name = sf.ROLES[role]
        if spec_name not in by_spec:
            by_spec[spec_name] = newest_good(store, spec_name)
        found[role] = by_spec[spec_name]
    return found


def rootfs_dir(store: Path, artifact: Artifact) -> Path:
    return (
        Path(store).resolve() / ".stacks" / ROOTFS_DIR / f"{artifact.name}-{artifact.fingerprint}"
    )


def rootfs(store: Path, artifact: Artifact) -> Path:
    """The artifact's root filesystem, unpacked (once) for local stacks."""
    from bake.instances.nspawn import unpacked_rootfs

    try:
        tar = artifact.tar_file()
    except ArtifactError as exc:
        raise ImageError(str(exc)) from None
    target = rootfs_dir(store, artifact)
    target.parent.mkdir(parents=True, exist_ok=True)
    return unpacked_rootfs(tar, target)


def prune_rootfs(store: Path, keep: set[Path]) -> list[Path]:
    """Remove unpacked root filesystems not in ``keep`` (those no local stack boots from)."""
    directory = Path(store).resolve() / ".stacks" / ROOTFS_DIR
    removed = []
    for path in sorted(directory.iterdir()) if directory.is_dir() else ():
        if not path.name.startswith(".") and path.resolve() not in keep:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
