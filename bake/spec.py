"""Image specs: load ``image-specs/*.yaml``, merge their includes, apply defaults, validate.

The fields themselves (schema, defaults, the :data:`Spec` attributes) are declared once, in
the table of :mod:`bake.specfields`.

A spec is validated in two passes: each file alone against the schema (so a bad value is
reported in the file that holds it), then the merged result (required keys, cross-field
rules, element names). Every problem is collected; :class:`SpecError` carries them all.

Example::

    spec = load_spec("image-specs/base.yaml", elements_dirs=[Path("elements")])
    spec.name, spec.elements, spec.environment
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from bake import distros, specfields
from bake.specfields import SPEC_FIELDS
from bake.validation import Problem, ValidationError, problems_from_schema, read_yaml

# Lists that an including file extends; any other value it replaces.
EXTENDING_KEYS = ("elements", "packages", "smoke")

# The value of every optional field that neither a spec nor its includes set.
DEFAULTS: Mapping[str, Any] = {
    field.key: field.default for field in SPEC_FIELDS if not field.required
}

# Variables a spec may not set in `environment`: bake sets them from other fields.
RESERVED_ENVIRONMENT = {
    "ELEMENTS_PATH": "bake sets it to elements/ of this project",
    "DIB_RELEASE": "use the `release` field",
    "DIB_DISTRIBUTION_MIRROR": "use `mirrors.main`",
    "DIB_DEBIAN_SECURITY_MIRROR": "use `mirrors.security`",
    "DIB_IMAGE_CACHE": "a host setting, not part of an image",
    "TMP_DIR": "bake builds in its own temporary directory",
    "DIB_BBQ_APP_EXTRAS": "use `app: {extras: [...]}`",
}


class SpecError(ValidationError):
    """A spec (or several) failed validation; ``problems`` lists every reason."""


class _SpecMethods:
    """What a Spec does besides holding its fields (see :data:`Spec`)."""

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data, in the schema's vocabulary, without file locations."""
        return {field.key: field.dump(self) for field in SPEC_FIELDS}

    def replace(self, **changes: Any) -> Spec:
        """A copy with some fields changed (e.g. ``partitioned`` from the command line)."""
        return dataclasses.replace(self, **changes)


Spec = dataclasses.make_dataclass(
    "Spec",
    [
        ("path", Path),  # the spec file
        *[attribute for field in SPEC_FIELDS for attribute in field.attributes()],
        ("files", tuple[Path, ...]),  # the spec file and every file it includes
    ],
    bases=(_SpecMethods,),
    frozen=True,
    namespace={
        "__module__": __name__,
        "__doc__": "A validated spec with includes merged and defaults applied: one attribute "
        "per field of bake.specfields.SPEC_FIELDS (YAML key with - as _; `app` also fills "
        "`app_extras`), plus `path` and `files`.",
    },
)


@cache
def _schemas() -> tuple[dict, dict]:
    """The full schema, and a partial one for a single file of an include chain."""
    full = specfields.schema()
    partial = copy.deepcopy(full)
    partial.pop("required", None)
    partial["properties"]["sahara"].pop("required", None)
    return full, partial


class _Loader:
    """Reads one spec file and its includes, collecting problems instead of stopping."""

    def __init__(self, root: Path):
        self.root = root
        self.problems: list[Problem] = []
        self.files: list[Path] = []
        self.top: Path | None = None  # includes must stay inside the top spec's directory

    def show(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(self.root))
        except ValueError:
            return str(path)

    def read(self, path: Path, chain: tuple[Path, ...] = ()) -> dict | None:
        """The file merged over its includes, or None when it cannot be read."""
        path = path.resolve()
        if self.top is None:
            self.top = path.parent
        shown = self.show(path)
        if path in chain:
            cycle = " -> ".join(self.show(p) for p in (*chain, path))
            includer = self.show(chain[-1])
            self.problems.append(Problem(includer, "include", f"include cycle: {cycle}"))
            return None
        try:
            data = read_yaml(path, shown)
        except ValidationError as exc:
            self.problems.extend(exc.problems)
            return None
        if not isinstance(data, dict):
            kind = "empty" if data is None else type(data).__name__
            self.problems.append(Problem(shown, "", f"must be a mapping of keys, not {kind}"))
            return None
        self.files.append(path)
        problems = list(problems_from_schema(data, _schemas()[1], shown))
        self.problems.extend(problems)
        if problems:
            return None
        merged: dict = {}
        for index, name in enumerate(data.get("include", [])):
            target = self.include_target(path, shown, index, name)
            if target is None:
                continue
            included = self.read(target, (*chain, path))
            if included is not None:
                merged = merge(merged, included)
        own = {k: v for k, v in data.items() if k != "include"}
        return merge(merged, own)

    def include_target(self, path: Path, shown: str, index: int, name: str) -> Path | None:
        """The file an include names, if it exists inside the top spec's directory."""
        field = f"include[{index}]"
        try:
            target = (path.parent / name).resolve()
        except (OSError, RuntimeError, ValueError):
            self.problems.append(Problem(shown, field, "cannot resolve this path", name, True))
            return None
        if not target.is_relative_to(self.top):
            message = (
                f"outside {self.show(self.top)}/: includes must stay inside the specs' directory"
            )
            self.problems.append(Problem(shown, field, message, name, True))
            return None
        if not target.exists():
            self.problems.append(Problem(shown, field, "included file not found", name, True))
            return None
        return target


def merge(base: Mapping[str, Any], over: Mapping[str, Any], top: bool = True) -> dict:
    """``over`` merged onto ``base``: mappings merge, EXTENDING_KEYS lists extend, else replace."""
    result = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge(result[key], value, top=False)
        elif top and key in EXTENDING_KEYS and isinstance(result.get(key), list):
            combined = result[key] + [v for v in value if v not in result[key]]
            result[key] = copy.deepcopy(combined)
        else:
            result[key] = copy.deepcopy(value)
    return result


def load_spec(
    path: str | Path,
    elements_dirs: Iterable[Path] = (),
    root: Path | None = None,
) -> Spec:
    """Load, merge and validate one spec file; raise SpecError listing every problem.

    ``elements_dirs`` are searched (with diskimage-builder's own elements) to check that
    every element named exists. ``root`` is what file names in messages are relative to.
    """
    path = Path(path)
    loader = _Loader((root or Path.cwd()).resolve())
    data = loader.read(path)
    shown = loader.show(path)
    if data is None or loader.problems:
        raise SpecError(loader.problems)
    problems = list(problems_from_schema(data, _schemas()[0], shown))
    if not problems:
        problems = list(_semantic_problems(data, shown, list(elements_dirs)))
    if problems:
        raise SpecError(problems)
    full = merge(DEFAULTS, data)
    attributes: dict[str, Any] = {}
    for field in SPEC_FIELDS:
        attributes.update(field.load(full[field.key]))
    return Spec(path=path.resolve(), files=tuple(loader.files), **attributes)


def _semantic_problems(data: dict, file: str, elements_dirs: list[Path]) -> Iterator[Problem]:
    """Rules the schema cannot say: known elements, reserved variables, valid regexes."""
    known = available_elements(elements_dirs)
    distro = distros.DISTROS[data["distro"]]
    for index, element in enumerate(data["elements"]):
        field = f"elements[{index}]"
        if element not in known:
            searched = ", ".join(str(d) for d in elements_dirs) or "(none)"
            yield Problem(
                file,
                field,
                f"no such element in {searched} or diskimage-builder's elements",
                element,
                True,
            )
        elif element in distros.DISTRO_ELEMENTS:
            yield Problem(
                file,
                field,
                f"distro elements come from `distro` (here {distro.element}); remove it",
                element,
                True,
            )
        elif element in ("vm", "baremetal"):
            yield Problem(
                file,
                field,
                "set `partitioned: true` (vm) or `partitioned: false` (baremetal) instead",
                element,
                True,
            )
    for key in data.get("environment", {}):
        if key in RESERVED_ENVIRONMENT:
            yield Problem(
                file, f"environment.{key}", f"reserved: {RESERVED_ENVIRONMENT[key]}", key, True
            )
    if data.get("mirrors", {}).get("security") and not distro.security_mirror_env:
        yield Problem(
            file,
            "mirrors.security",
            f"{data['distro']} has no separate security mirror",
            data["mirrors"]["security"],
            True,
        )
    if data.get("smoke") and "tar" not in data.get("types", DEFAULTS["types"]):
        yield Problem(
            file,
            "types",
            "smoke checks boot the image's root filesystem: add tar to types",
            data.get("types"),
            True,
        )
    for index, check in enumerate(data.get("smoke", [])):
        if "expect" in check:
            try:
                re.compile(check["expect"])
            except re.error as exc:
                yield Problem(
                    file,
                    f"smoke[{index}].expect",
                    f"invalid regular expression: {exc}",
                    check["expect"],
                    True,
                )


def dib_elements_dir() -> Path:
    """The directory of diskimage-builder's own elements."""
    from diskimage_builder import paths

    return Path(paths.get_path("elements"))


def available_elements(elements_dirs: Iterable[Path]) -> set[str]:
    """Names of every element in ``elements_dirs`` and in diskimage-builder."""
    names: set[str] = set()
    for directory in [*elements_dirs, dib_elements_dir()]:
        if directory.is_dir():
            names.update(p.name for p in directory.iterdir() if p.is_dir())
    return names


def spec_files(directory: Path) -> list[Path]:
    """The image specs in ``directory`` (``*.yaml``; includes live in subdirectories)."""
    return sorted(p for p in directory.glob("*.yaml") if p.name != "matrix.yaml")
