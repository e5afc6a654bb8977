"""The build plan: exactly what ``disk-image-create`` will be run with for a spec.

The plan is the single place a spec turns into diskimage-builder's vocabulary (elements,
variables, arguments). The fingerprint hashes it and the builder runs it, so what is hashed
is what is built.

Example::

    plan = make_plan(spec, elements_dir=Path("elements"), environ=os.environ)
    plan.command("/tmp/out/bbq-base")   # ['disk-image-create', '-a', 'amd64', ...]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from bake import distros, mirrors, wheelhouse
from bake.errors import InputError
from bake.hashing import tree_hash
from bake.spec import Spec

# Variables from the caller's environment that reach diskimage-builder but cannot change
# what ends up in the image; each row says why it is left out of the fingerprint.
NOT_IN_FINGERPRINT = {
    "DIB_DEBUG_TRACE": "only makes the build log more verbose",
    "DIB_IMAGE_CACHE": "where downloads are cached, not what is downloaded",
    "DIB_NO_TMPFS": "where the build works, not what it makes",
    "DIB_MIN_TMPFS": "where the build works, not what it makes",
    "DIB_SHOW_IMAGE_USAGE": "only reports sizes in the log",
    "DIB_NO_TIMESTAMP": "only changes log line prefixes",
    "DIB_QUIET": "only changes log output",
    "DIB_BBQ_WHEELHOUSE": "a host path; the app source it is built from is fingerprinted",
    "DIB_DEBOOTSTRAP_CACHE": "whether the bootstrapped root is cached (it is dist-upgraded)",
    "DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE": "whether a cached root is used (it is dist-upgraded)",
}


# disk-image-create's arguments for the spec's qcow2-compression (-u: uncompressed;
# --qemu-img-options reaches `qemu-img convert -o`).
QCOW2_COMPRESSION = {
    "zlib": [],
    "zstd": ["--qemu-img-options", "compression_type=zstd"],
    "none": ["-u"],
}


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """A spec resolved into one disk-image-create run."""

    spec: Spec
    elements: tuple[str, ...]  # every element named on the command line, distro first
    environment: Mapping[str, str]  # every variable that reaches DIB and can shape the image
    elements_dir: Path
    app_dir: Path | None = None  # the app baked in, when the spec says `app: true`
    app_hash: str | None = None  # its tree hash
    app_extras: tuple[str, ...] = ()  # its extras installed with it (normalized)

    def command(self, output_stem: Path | str) -> list[str]:
        """The disk-image-create argument list writing ``output_stem.<type>``."""
        spec = self.spec
        args = ["disk-image-create", "-a", spec.arch, "-o", str(output_stem)]
        args += ["-t", ",".join(spec.types)]
        if "qcow2" in spec.types:
            args += QCOW2_COMPRESSION[spec.qcow2_compression]
        if spec.image_size is not None:
            size = spec.image_size
            args += ["--image-size", str(int(size) if float(size).is_integer() else size)]
        if spec.packages:
            args += ["-p", ",".join(spec.packages)]
        args += list(self.elements)
        return args

    def fingerprinted_environment(self) -> dict[str, str]:
        """The variables that decide the image (the others are listed in NOT_IN_FINGERPRINT)."""
        return {
            k: v
            for k, v in sorted(self.environment.items())
            if k not in NOT_IN_FINGERPRINT and k != "ELEMENTS_PATH"
        }


def make_plan(
    spec: Spec, elements_dir: Path, environ: Mapping[str, str], app_dir: Path | None = None
) -> BuildPlan:
    """Resolve a spec against the caller's environment into a BuildPlan.

    ``app_dir`` is required when the spec bakes the app. Raises mirrors.MirrorError when a
    mirror marked ``auto`` cannot be found on this host, InputError without ``app_dir`` or
    for an extra (``app.extras``) that the app does not declare.
    """

    distro = distros.DISTROS[spec.distro]
    elements = [distro.element, "vm" if spec.partitioned else "baremetal", *spec.elements]
    environment = {k: v for k, v in environ.items() if k.startswith("DIB_")}
    environment.update(spec.environment)
    environment.update(mirrors.resolve(distro, spec.mirrors, environ))
    environment["DIB_RELEASE"] = spec.release
    environment["DIB_BBQ_IMAGE_NAME"] = spec.name  # read by the bbq-base element
    environment["DIB_BBQ_IMAGE_VERSION"] = spec.version
    environment["ELEMENTS_PATH"] = str(elements_dir.resolve())
    app_hash = None
    extras: tuple[str, ...] = ()
    if spec.app:
        if app_dir is None or not (app_dir / "setup.cfg").is_file():
            raise InputError(f"{spec.name}: the spec bakes the app, but {app_dir} has none")
        extras = wheelhouse.normalize_extras(spec.app_extras)
        declared = wheelhouse.declared_extras(app_dir)
        unknown = [extra for extra in extras if extra not in declared]
        if unknown:
            raise InputError(
                f"app.extras: {', '.join(unknown)} not declared in {app_dir / 'setup.cfg'} "
                f"[options.extras_require] (declared: {', '.join(declared) or 'none'})"
            )
        app_hash = tree_hash(app_dir)
        environment["DIB_BBQ_RELEASE"] = wheelhouse.release_name(app_dir, app_hash)
        environment["DIB_BBQ_WHEELHOUSE"] = str(wheelhouse.path_for(app_hash, extras))
        environment["DIB_BBQ_APP_EXTRAS"] = ",".join(extras)  # read by the bbq-app element
    return BuildPlan(
        spec=spec,
        elements=tuple(dict.fromkeys(elements)),
        environment=dict(sorted(environment.items())),
        elements_dir=elements_dir.resolve(),
        app_dir=app_dir.resolve() if spec.app and app_dir else None,
        app_hash=app_hash,
        app_extras=extras,
    )
