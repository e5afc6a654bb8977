"""Glance: one table of image properties (written by publish, read by prune and ``bake
images``), what an artifact's image gets, and a retrying python-glanceclient v2.

Every property bake writes or reads is declared once, as a field of :class:`Image` with its
name on the wire (the way openstacksdk declares a resource): ``Image(raw).fingerprint`` reads
``bake_fingerprint`` from an image glanceclient returned, and ``Image.wire(fingerprint=...)``
is a request body or a list filter. ``print(Image.__doc__)`` shows the whole table.

What :func:`image_properties` writes for an artifact: its name (spec, version and the
fingerprint's first 8 hex digits: one per build, :func:`image_name`), tags and visibility as
``bake publish`` chose them, the disk format of its image file,
``os_distro``/``os_version``/``architecture`` (which the spec's ``glance.properties`` may
override), ``min_disk`` (default: the image's virtual size) and ``min_ram``, the spec's
other ``glance.properties`` (``hw_*``, ...), its fingerprint, spec name, version and build
time, and Sahara's image registry (``_sahara_username``,
``_sahara_description``, ``_sahara_tag_<tag> = "True"``, exactly as Sahara reads it).

Transient failures of single API calls (connection refused or reset, HTTP 502/503/504) are
retried with exponential backoff by tenacity; image data uploads are never retried.

Example::

    glance = Glance(cloud)
    [Image(raw).spec_version for raw in glance.list(Image.wire(spec="bbq-spark"))]
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import re
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import tenacity
from glanceclient import exc as glance_exc
from keystoneauth1 import exceptions as ksa_exc

from bake.artifacts import Artifact
from bake.cloud.auth import Cloud, describe_call
from bake.distros import DISTROS
from bake.errors import OperationFailed

LOG = logging.getLogger(__name__)
T = TypeVar("T")


class Origin(enum.StrEnum):
    """Who sets an image property."""

    GLANCE = "glance"  # Glance itself (bake only reads it; ``id`` is also chosen on create)
    BAKE = "bake"  # bake, from the artifact: a spec's glance.properties may not set it
    DEFAULT = "default"  # bake, unless the spec's glance.properties sets it


class Field:
    """One image property: its wire name, who sets it, its Python type, and what it means.

    Read from a glanceclient image (any mapping) through :class:`Image`'s attribute of the
    same field; written by :meth:`Image.wire` (``None`` leaves the property out).
    """

    def __init__(
        self, wire: str, doc: str, origin: Origin = Origin.BAKE, kind: type = str, default=None
    ):
        self.wire, self.doc, self.origin, self.kind, self.default = wire, doc, origin, kind, default
        self.attr = ""

    def __set_name__(self, owner: type, attr: str) -> None:
        self.attr = attr

    def __get__(self, image: Image | None, owner: type) -> Any:
        return self if image is None else self.read(image.raw)

    def read(self, raw: Any) -> Any:
        value = raw.get(self.wire)
        return self.default if value is None else self.kind(value)

    def write(self, value: Any) -> dict[str, Any]:
        return {} if value is None else {self.wire: self.kind(value)}

    @property
    def label(self) -> str:
        """The wire name as the table shows it."""
        return self.wire


class TagField(Field):
    """A family of properties ``<prefix><tag> = "True"``, read and written as a list of tags."""

    def read(self, raw: Any) -> list[str]:
        prefix = self.wire
        return sorted(k[len(prefix) :] for k, v in raw.items() if k.startswith(prefix) and v)

    def write(self, value: Iterable[str] | None) -> dict[str, Any]:
        return {f"{self.wire}{tag}": "True" for tag in value or ()}

    @property
    def label(self) -> str:
        return f"{self.wire}<tag>"


class Image:
    """A Glance image as bake reads and writes it: the table of its properties.

    ``Image(raw)`` reads a glanceclient image through these fields; ``Image.wire(**values)``
    turns field names into wire names (a create body, a list filter).
    """

    # Glance's own
    id = Field("id", "image id (chosen by publish: see bake.cloud.publish)", Origin.GLANCE)
    status = Field("status", "queued, saving, active, deactivated, ...", Origin.GLANCE, str, "")
    size = Field("size", "bytes stored", Origin.GLANCE, int)
    checksum = Field("checksum", "md5 of the data, computed by Glance", Origin.GLANCE)
    hash_algo = Field("os_hash_algo", "Glance's hashing_algorithm (sha512)", Origin.GLANCE)
    hash_value = Field("os_hash_value", "the data's digest by os_hash_algo", Origin.GLANCE)
    created_at = Field("created_at", "ISO 8601, one-second resolution", Origin.GLANCE, str, "")
    owner = Field("owner", "project id", Origin.GLANCE)
    protected = Field("protected", "deletion refused", Origin.GLANCE, bool, False)
    # Set by bake for an artifact
    name = Field("name", "<spec>-<version>-<fingerprint[:8]>: one per build", Origin.BAKE, str, "")
    disk_format = Field("disk_format", "qcow2, raw or vhd: the artifact's image file")
    container_format = Field("container_format", "bare")
    visibility = Field("visibility", "--visibility, else glance.visibility (default private)")
    tags = Field("tags", "Glance's image tags (--tag)", kind=list, default=[])
    hidden = Field(
        "os_hidden", "out of listings: older builds, --hide-older", kind=bool, default=False
    )
    min_disk = Field("min_disk", "GiB: glance.min_disk, else the virtual size", kind=int)
    min_ram = Field("min_ram", "MiB: the spec's glance.min_ram (default 0)", kind=int)
    os_distro = Field("os_distro", "the distro's os_distro", Origin.DEFAULT)
    os_version = Field("os_version", "glance.os_version, else the release", Origin.DEFAULT)
    architecture = Field("architecture", "x86_64 / aarch64, from arch", Origin.DEFAULT)
    fingerprint = Field("bake_fingerprint", "what dedupe and pruning match", default="")
    spec = Field("bake_spec", "the spec's name", default="")
    spec_version = Field("bake_spec_version", "the spec's version", default="")
    built_at = Field("bake_built_at", "when the artifact was built (manifest)")
    publisher = Field("bake_publisher", "host:pid of a publish in progress; removed once active")
    latest = Field("bake_latest", '"True" on the newest verified image of its spec, only')
    # Sahara's image registry, as Sahara reads it
    sahara_username = Field("_sahara_username", "the login user")
    sahara_description = Field("_sahara_description", "a description")
    sahara_tags = TagField("_sahara_tag_", '"True" for each tag')

    FIELDS: dict[str, Field] = {}  # filled below, in declaration order

    def __init__(self, raw: Any):
        self.raw = raw

    @classmethod
    def wire(cls, **values: Any) -> dict[str, Any]:
        """``{wire name: value}`` for the given fields (None values left out)."""
        body: dict[str, Any] = {}
        for attr, value in values.items():
            body.update(cls.FIELDS[attr].write(value))
        return body


Image.FIELDS = {k: v for k, v in vars(Image).items() if isinstance(v, Field)}
Image.__doc__ = (
    (Image.__doc__ or "")
    + "\n    Fields (wire name, set by, meaning)::\n\n"
    + "\n".join(f"        {f.label:<20} {f.origin:<8} {f.doc}" for f in Image.FIELDS.values())
)

# Short names of the wire names most used (from the table, not declared again)
FINGERPRINT = Image.fingerprint.wire
SPEC = Image.spec.wire
SPEC_VERSION = Image.spec_version.wire
PUBLISHER = Image.publisher.wire
LATEST = Image.latest.wire
# A spec's glance.properties may not set what bake sets, nor anything in Sahara's namespace.
RESERVED = {f.wire for f in Image.FIELDS.values() if f.origin is Origin.BAKE}
RESERVED_PREFIX = "_sahara_"
UNFINISHED = ("queued", "saving", "uploading", "importing")
ARCHITECTURES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}
GIB = 1024**3
VERSION_SUFFIX = re.compile(r"/v\d+(\.\d+)?/?$|/$")


class GlanceError(OperationFailed):
    """A Glance call failed for good (after retries); the message is one line."""


class Conflict(GlanceError):
    """Glance answered 409 Conflict (e.g. an image with this id exists or existed)."""


def qcow2_virtual_size(path: Path) -> int | None:
    """The virtual disk size recorded in a qcow2 header, or None if not a qcow2 file."""
    with open(path, "rb") as handle:
        header = handle.read(32)
    if len(header) < 32 or header[:4] != b"QFI\xfb":
        return None
    return struct.unpack(">Q", header[24:32])[0]


def image_name(artifact: Artifact) -> str:
    """The image's name: unique per build, so ``openstack image show NAME`` finds one image
    (``bbq-spark-0.1.0-3f2a9c1b``); the spec's newest is the one with ``bake_latest``."""
    return f"{artifact.name}-{artifact.version}-{artifact.fingerprint[:8]}"


def image_properties(
    artifact: Artifact, visibility: str | None = None, tags: Iterable[str] = ()
) -> dict[str, Any]:
    """Everything ``images.create`` gets for this artifact (no data, no publisher marker);
    ``visibility`` and ``tags`` as ``bake publish --visibility/--tag`` give them."""
    spec = artifact.spec
    glance = spec.get("glance") or {}
    sahara = spec.get("sahara") or {}
    path, disk_format = artifact.image_file()
    props = spec_properties(spec)
    defaults = Image.wire(
        os_distro=DISTROS[spec["distro"]].os_distro,
        os_version=glance.get("os_version") or spec["release"],
        architecture=ARCHITECTURES.get(spec.get("arch", "amd64"), "x86_64"),
    )
    for key, value in defaults.items():
        props.setdefault(key, value)
    props |= Image.wire(
        name=image_name(artifact),
        disk_format=disk_format,
        container_format="bare",
        visibility=visibility or glance.get("visibility", "private"),
        tags=sorted(set(tags)) or None,
        min_disk=_min_disk(glance, path, disk_format),
        min_ram=glance.get("min_ram", 0),
        fingerprint=artifact.fingerprint,
        spec=artifact.name,
        spec_version=artifact.version,
        built_at=artifact.manifest.get("built_at") or None,
        sahara_username=sahara.get("username"),
        sahara_description=sahara.get("description") or None,
        sahara_tags=sahara.get("tags"),
    )
    return props


def spec_properties(spec: dict[str, Any]) -> dict[str, str]:
    """The spec's ``glance.properties`` as Glance stores custom properties (strings; booleans
    keep Python's spelling, True/False); GlanceError if one is bake's own."""
    props = {}
    for key, value in ((spec.get("glance") or {}).get("properties") or {}).items():
        if key in RESERVED or key.startswith(RESERVED_PREFIX):
            raise GlanceError(f"spec {spec['name']}: glance.properties may not set {key!r}")
        props[key] = str(value)
    return props


def _min_disk(glance: dict[str, Any], path: Path, disk_format: str) -> int:
    """The spec's glance.min_disk, else the image's virtual size in whole GiB (rounded up)."""
    if glance.get("min_disk") is not None:
        return int(glance["min_disk"])
    virtual = qcow2_virtual_size(path) if disk_format == "qcow2" else path.stat().st_size
    return math.ceil((virtual or 0) / GIB)


class Busy(Exception):
    """Glance refused for now (HTTP 409 while an image changes state): worth retrying."""


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same API call may succeed (network hiccup or server restarting)."""
    if isinstance(
        exc,
        (
            Busy,
            glance_exc.CommunicationError,
            glance_exc.InvalidEndpoint,
            ksa_exc.ConnectFailure,
            ksa_exc.ConnectTimeout,
            ksa_exc.RetriableConnectionFailure,
        ),
    ):
        return True
    code = getattr(exc, "code", None) or getattr(exc, "http_status", None)
    return code in (502, 503, 504)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How long transient failures are retried: API calls, and deleting a half-made image."""

    seconds: float = 30.0
    cleanup_seconds: float = 120.0
    max_wait: float = 8.0

    def retrying(self, seconds: float | None = None) -> tenacity.Retrying:
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            wait=tenacity.wait_exponential(multiplier=0.25, max=self.max_wait),
            stop=tenacity.stop_after_delay(self.seconds if seconds is None else seconds),
            before_sleep=_log_retry,
            reraise=True,
        )


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    LOG.warning(
        "glance: %s (attempt %d), retrying in %.1fs",
        describe(exc) if exc else "?",
        state.attempt_number,
        state.next_action.sleep if state.next_action else 0,
    )


def describe(exc: BaseException) -> str:
    """One line for a glanceclient/keystoneauth1 exception."""
    # glanceclient wraps keystoneauth1's ConnectTimeout in InvalidEndpoint ("... timed out")
    return describe_call(
        exc, "Glance", (glance_exc.CommunicationError,), (glance_exc.InvalidEndpoint,)
    )


class Glance:
    """python-glanceclient v2 over a :class:`~bake.cloud.auth.Cloud` session, with retries."""

    def __init__(self, cloud: Cloud, retry: RetryPolicy | None = None):
        from glanceclient import client

        self.cloud = cloud
        self.retry = retry or RetryPolicy()
        self.client = client.Client("2", session=cloud.session, **cloud.adapter_kwargs("image"))

    def call(self, what: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``func(*args, **kwargs)`` retried on transient errors; GlanceError when it fails."""
        try:
            return self.retry.retrying()(func, *args, **kwargs)
        except glance_exc.HTTPConflict as e:
            raise Conflict(f"{what}: {describe(e)}") from e
        except (glance_exc.BaseException, glance_exc.ClientException, ksa_exc.ClientException) as e:
            raise GlanceError(f"{what}: {describe(e)}") from e

    def list(self, filters: dict[str, Any] | None = None, hidden: bool = True) -> list[Any]:
        """Every image matching the filters (properties match exactly), all pages; with
        ``hidden`` also those hidden from listings (``os_hidden``), which Glance leaves out
        unless asked for them alone."""

        def attempt() -> list[Any]:
            found = list(self.client.images.list(filters=filters or {}))
            if hidden:
                only_hidden = {**(filters or {}), Image.hidden.wire: True}
                found.extend(list(self.client.images.list(filters=only_hidden)))
            return found

        return self.call("listing images", attempt)

    def get(self, image_id: str) -> Any:
        return self.call(f"reading image {image_id}", self.client.images.get, image_id)

    def status(self, image_id: str) -> str | None:
        """The image's status, or None if Glance no longer has it."""

        def attempt() -> str | None:
            try:
                return self.client.images.get(image_id).get("status")
            except glance_exc.HTTPNotFound:
                return None

        return self.call(f"reading image {image_id}", attempt)

    def create(self, properties: dict[str, Any]) -> Any:
        return self.call("creating the image record", self.client.images.create, **properties)

    def update(self, image_id: str, remove: Iterable[str] = (), **properties: Any) -> Any:
        return self.call(
            f"updating image {image_id}",
            self.client.images.update,
            image_id,
            remove_props=list(remove) or None,
            **properties,
        )

    def deactivate(self, image_id: str) -> None:
        self.call(f"deactivating image {image_id}", self.client.images.deactivate, image_id)

    def delete(self, image_id: str, seconds: float | None = None) -> bool:
        """Delete an image, retrying while Glance is away, busy (409) or failing (500);
        False if it was already gone."""

        def attempt() -> bool:
            try:
                self.client.images.delete(image_id)
            except glance_exc.HTTPNotFound:
                return False
            except glance_exc.HTTPConflict as exc:  # e.g. still finishing an aborted upload
                raise Busy(describe(exc)) from exc
            except glance_exc.HTTPInternalServerError as exc:
                # e.g. the database busy with the aborted upload's own write: retried, since
                # a half-made image must not be left behind
                raise Busy(describe(exc)) from exc
            return True

        try:
            return self.retry.retrying(seconds)(attempt)
        except (
            Busy,
            glance_exc.BaseException,
            glance_exc.ClientException,
            ksa_exc.ClientException,
        ) as e:
            raise GlanceError(f"deleting image {image_id}: {describe(e)}") from e

    def upload(self, image_id: str, data: Any, size: int) -> None:
        """Send the image data once (a stream cannot be replayed; no retry here).

        This is Glance v2's ``PUT /v2/images/{id}/file`` as glanceclient's ``images.upload``
        sends it (same session, endpoint, headers), except with ``Content-Length`` instead of
        chunked transfer encoding (glanceclient always chunks a file): Glance then knows the
        size up front, and its WSGI server reads a plain body measurably faster
        (bench/bench_publish.py). ``data.read(n)`` supplies the bytes.
        """
        endpoint = VERSION_SUFFIX.sub("", self.client.http_client.get_endpoint())
        response = self.cloud.session.put(
            f"{endpoint}/v2/images/{image_id}/file",
            data=SizedStream(data, size),
            headers={
                "Content-Type": "application/octet-stream",
                "x-openstack-image-size": str(size),
            },
            raise_exc=False,
        )
        if response.status_code >= 400:
            text = " ".join(response.text.split())[:200]
            raise GlanceError(f"uploading the data: HTTP {response.status_code}: {text}")


class SizedStream:
    """An iterable of 1 MiB chunks read from ``source.read`` with a known length, so that
    requests sends it with ``Content-Length`` (streamed, never held in memory)."""

    def __init__(self, source: Any, size: int, chunk: int = 1024 * 1024):
        self.source, self.size, self.chunk = source, size, chunk

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        while data := self.source.read(self.chunk):
            yield data
