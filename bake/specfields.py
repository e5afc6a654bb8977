"""The image spec's fields, one row each: the only place a spec field is declared.

A row (:class:`Field`) gives the field's YAML key, its description, its JSON schema fragment,
its default and how its value becomes attributes of :class:`bake.spec.Spec` and back (the
shape). From the table come the JSON schema (``bake/schemas/image-spec.json``, generated and
checked in for editors and docs), ``spec.DEFAULTS``, the ``Spec`` class, ``Spec.to_dict`` and
the ``Spec`` built by ``load_spec``. Adding a field is adding a row (then using it in the plan).
The distro and arch vocabularies come from :mod:`bake.distros`. This follows
diskimage-builder's YAML front end (one PROPERTIES table yields its schema, argv and help) and
mkosi's SETTINGS table.

Every ``pattern`` is built by :func:`anchored`: JSON schema patterns are searched, not
matched, and ``$`` also matches before a trailing newline, which would let a name or a
variable carry one into artifact paths and diskimage-builder's variables.

Regenerate the schema after changing a row::

    python -m bake.specfields            # writes bake/schemas/image-spec.json
    python -m bake.specfields --check    # exit 1 when the file is out of date
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bake.distros import Arch, DistroName

SCHEMA_PATH = Path(__file__).with_name("schemas") / "image-spec.json"
GENERATE = "python -m bake.specfields"  # writes SCHEMA_PATH from the table


def anchored(body: str) -> str:
    """A ``pattern`` matching a whole value that ``body`` matches, and never a trailing newline.

    ``$(?!\\n)`` is Python's ``\\Z`` (jsonschema searches with :func:`re.search`) written in
    the ECMA-262 dialect that JSON schema specifies, so editors using the generated file
    understand it too (``\\A`` and ``\\Z`` are invalid there).
    """
    if "|" in body:
        body = f"(?:{body})"
    return f"^{body}$(?!\\n)"


def _pattern(body: str) -> dict[str, Any]:
    return {"type": "string", "pattern": anchored(body)}


@dataclasses.dataclass(frozen=True)
class Shape:
    """How a field's merged YAML value becomes its Spec attribute (``load``) and back into
    plain data in the schema's vocabulary (``dump``, for ``Spec.to_dict``)."""

    load: Callable[[Any], Any]
    dump: Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


def _tree(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else copy.deepcopy(dict(value))


VALUE = Shape(_same, _same)  # a string, number or boolean, as it is
LIST = Shape(tuple, list)  # a list of strings, kept as a tuple
MAPPING = Shape(dict, dict)  # a flat mapping of strings
TREE = Shape(_same, _tree)  # a nested mapping (or None), copied deeply when dumped
RECORDS = Shape(tuple, lambda value: [dict(item) for item in value])  # a list of mappings


@dataclasses.dataclass(frozen=True)
class Field:
    """One spec field: YAML key, description, schema fragment, default and Spec attribute."""

    key: str  # the YAML key
    description: str
    schema: Mapping[str, Any]  # its JSON schema, without the description
    type: Any = None  # the Spec attribute's type; None: no attribute (read by the loader only)
    required: bool = False
    default: Any = None  # the value when neither the spec nor its includes set it
    shape: Shape = VALUE

    @property
    def attribute(self) -> str:
        return self.key.replace("-", "_")

    def attributes(self) -> list[tuple[str, Any]]:
        """The Spec attributes this field fills, with their types."""
        return [(self.attribute, self.type)] if self.type is not None else []

    def load(self, value: Any) -> dict[str, Any]:
        """Spec attribute values from the merged (defaults applied) YAML value."""
        return {self.attribute: self.shape.load(value)}

    def dump(self, spec: Any) -> Any:
        """The field's value in the schema's vocabulary, from a Spec."""
        return self.shape.dump(getattr(spec, self.attribute))

    def property_schema(self) -> dict[str, Any]:
        return {"description": self.description, **self.schema}


class AppField(Field):
    """``app``: true/false, or a mapping naming extras; two attributes, ``app`` (whether the
    app is baked) and ``app_extras`` (the extras as written)."""

    def attributes(self) -> list[tuple[str, Any]]:
        return [("app", bool), ("app_extras", tuple[str, ...])]

    def load(self, value: Any) -> dict[str, Any]:
        if isinstance(value, Mapping):
            return {"app": True, "app_extras": tuple(value.get("extras", ()))}
        return {"app": bool(value), "app_extras": ()}

    def dump(self, spec: Any) -> Any:
        return {"extras": list(spec.app_extras)} if spec.app_extras else spec.app


_SMOKE_CHECK = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "run"],
    "properties": {
        "name": {"description": "Shown in the smoke report.", "type": "string", "minLength": 1},
        "run": {
            "description": "Shell command run on the instance.",
            "type": "string",
            "minLength": 1,
        },
        "expect": {"description": "Regular expression the output must match.", "type": "string"},
        "timeout": {
            "description": "Seconds the command may take.",
            "type": "integer",
            "minimum": 1,
            "maximum": 3600,
        },
    },
}

FIELDS: tuple[Field, ...] = (
    Field(
        "name",
        "Image name: output file stem and Glance name prefix.",
        _pattern("[a-z0-9][a-z0-9-]{0,62}"),
        type=str,
        required=True,
    ),
    Field(
        "version",
        "Version of the image, e.g. 1.2.0.",
        _pattern("[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}"),
        type=str,
        required=True,
    ),
    Field(
        "description",
        "What the image is for (recorded in its manifest).",
        {"type": "string"},
        type=str,
        default="",
    ),
    Field(
        "include",
        "Shared defaults: spec files (relative to this one) merged under this spec.",
        {"type": "array", "items": {"type": "string", "minLength": 1}},
    ),
    Field(
        "distro",
        "Distribution family; picks the diskimage-builder distro element.",
        {"enum": [name.value for name in DistroName]},
        type=str,
        required=True,
    ),
    Field(
        "release",
        "Distribution release (DIB_RELEASE), e.g. bookworm.",
        _pattern("[0-9A-Za-z][0-9A-Za-z._-]*"),
        type=str,
        required=True,
    ),
    Field(
        "arch",
        "Architecture of the image (disk-image-create -a).",
        {"enum": [arch.value for arch in Arch]},
        type=str,
        default=Arch.AMD64.value,
    ),
    Field(
        "elements",
        "Elements besides the distro element: ours from elements/ or diskimage-builder's.",
        {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": _pattern("[a-z0-9][a-z0-9_-]*"),
        },
        type=tuple[str, ...],
        required=True,
        shape=LIST,
    ),
    Field(
        "packages",
        "Extra distribution packages (disk-image-create -p).",
        {"type": "array", "items": _pattern("[a-z0-9][a-z0-9.+-]*")},
        type=tuple[str, ...],
        default=[],
        shape=LIST,
    ),
    Field(
        "environment",
        "Variables for the build (strings only, as diskimage-builder's own YAML).",
        {
            "type": "object",
            "propertyNames": {"pattern": anchored("[A-Z_][A-Z0-9_]*")},
            "additionalProperties": {"type": "string"},
        },
        type=Mapping[str, str],
        default={},
        shape=MAPPING,
    ),
    Field(
        "types",
        "Output types (disk-image-create -t).",
        {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"enum": ["qcow2", "raw", "tar", "vhd", "squashfs"]},
        },
        type=tuple[str, ...],
        default=["qcow2", "tar"],
        shape=LIST,
    ),
    Field(
        "image-size",
        "Root filesystem size in GB (disk-image-create --image-size).",
        {"type": "number", "exclusiveMinimum": 0, "maximum": 1024},
        type=float | None,
    ),
    Field(
        "partitioned",
        "true: partitioned disk via the vm element (needs device-mapper); false: plain "
        "filesystem image with kernel and initrd beside it (baremetal element).",
        {"type": "boolean"},
        type=bool,
        default=True,
    ),
    Field(
        "qcow2-compression",
        "How the qcow2 image is compressed: zlib (diskimage-builder's default), zstd (about "
        "6x faster to write here and a little smaller; every QEMU that reads the image, on "
        "compute hosts and in Glance's conversions, must be 5.1 or newer) or none.",
        {"enum": ["zlib", "zstd", "none"]},
        type=str,
        default="zlib",
    ),
    Field(
        "mirrors",
        "Package mirrors: a URL, or 'auto' for the one this host's apt uses.",
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "main": {"description": "The distribution's mirror.", "$ref": "#/$defs/mirror"},
                "security": {
                    "description": "The security updates' mirror (Debian only).",
                    "$ref": "#/$defs/mirror",
                },
            },
        },
        type=Mapping[str, str],
        default={},
        shape=MAPPING,
    ),
    AppField(
        "app",
        "Whether the image bakes the application from app/ (its source is then part of the "
        "fingerprint): true, or a mapping that also names the app's extras to install (e.g. "
        "{extras: [stream]} installs bbq[stream]; the image records them in "
        "/etc/bbq/app-extras).",
        {
            "oneOf": [
                {"type": "boolean"},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "extras": {
                            "description": "Extras declared in app/setup.cfg "
                            "[options.extras_require], installed with the app.",
                            "type": "array",
                            "items": _pattern("[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?"),
                            "uniqueItems": True,
                        }
                    },
                },
            ]
        },
        default=False,
    ),
    Field(
        "glance",
        "Properties the image gets in Glance.",
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "min_disk": {
                    "description": "Smallest root disk in GiB to boot the image "
                    "(default: the image's virtual size).",
                    "type": "integer",
                    "minimum": 0,
                },
                "min_ram": {
                    "description": "Smallest RAM in MB to boot the image.",
                    "type": "integer",
                    "minimum": 0,
                },
                "os_version": {
                    "description": "Glance's os_version (default: the release).",
                    "type": "string",
                },
                "visibility": {
                    "description": "Who may see the image (default: private).",
                    "enum": ["private", "shared", "community", "public"],
                },
                "properties": {
                    "description": "Further image properties, e.g. hw_disk_bus: virtio.",
                    "type": "object",
                    "propertyNames": {"pattern": anchored("[a-z][a-z0-9_:.-]*")},
                    "additionalProperties": {"type": ["string", "integer", "boolean"]},
                },
            },
        },
        type=Mapping[str, Any],
        default={},
        shape=TREE,
    ),
    Field(
        "sahara",
        "Sahara image registry: the login user and tags Sahara matches plugins by.",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["username"],
            "properties": {
                "username": {
                    "description": "The image's login user.",
                    **_pattern("[a-z_][a-z0-9_-]*"),
                },
                "description": {"description": "Shown in Sahara.", "type": "string"},
                "tags": {
                    "description": "Tags Sahara matches plugins by, e.g. spark and its version.",
                    "type": "array",
                    "items": _pattern("[A-Za-z0-9][A-Za-z0-9._-]*"),
                },
            },
        },
        type=Mapping[str, Any] | None,
        shape=TREE,
    ),
    Field(
        "smoke",
        "Checks run over SSH on an instance booted from the image.",
        {"type": "array", "items": _SMOKE_CHECK},
        type=tuple[Mapping[str, Any], ...],
        default=[],
        shape=RECORDS,
    ),
)

# The fields that become Spec attributes (all but `include`, which the loader reads).
SPEC_FIELDS: tuple[Field, ...] = tuple(field for field in FIELDS if field.attributes())

DEFS = {
    "mirror": {
        "description": "A URL, or 'auto' for the mirror this host's apt uses.",
        **_pattern(r"auto|https?://[^\s]+|file:///[^\s]*"),
    }
}


def schema() -> dict[str, Any]:
    """The image spec's JSON schema (draft 2020-12), from the table (a new copy each call)."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "bbq:image-spec",
        "title": "Big Data BBQ image spec",
        "$comment": f"Generated from bake/specfields.py by {GENERATE}: edit the table there.",
        "description": "One image: what to build with diskimage-builder and how to publish "
        "and check it. Keys that diskimage-builder's own YAML front end has (elements, "
        "environment, release, types, image-size, arch, packages) keep its names and meaning.",
        "type": "object",
        "additionalProperties": False,
        "required": [field.key for field in FIELDS if field.required],
        "properties": {field.key: field.property_schema() for field in FIELDS},
        "$defs": DEFS,
    }
    return copy.deepcopy(schema)


def render() -> str:
    """The schema file's text."""
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the schema file, or with ``--check`` exit 1 when it differs from the table."""
    parser = argparse.ArgumentParser(prog=GENERATE, description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(SCHEMA_PATH))
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args(argv)
    output = Path(args.output)
    text = render()
    if args.check:
        current = output.read_text() if output.is_file() else ""
        if current != text:
            print(
                f"{output} is out of sync with bake/specfields.py: run {GENERATE}", file=sys.stderr
            )
            return 1
        print(f"{output}: in sync with bake/specfields.py")
        return 0
    output.write_text(text)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
