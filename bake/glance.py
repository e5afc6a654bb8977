"""Glance: the properties an artifact's image gets, and a retrying python-glanceclient v2.

Properties written for an artifact (see :func:`image_properties`)::

    name                      <spec name>-<version>
    disk_format               from the artifact's image file (qcow2, raw, vhd)
    container_format          bare
    os_distro, os_version     from the spec's distro and glance.os_version (or release)
    architecture              x86_64 / aarch64, from the spec's arch
    min_disk, min_ram         from the spec (min_disk defaults to the image's virtual size)
    hw_* and other properties from the spec's glance.properties
    bake_fingerprint          the artifact's fingerprint: what dedupe and pruning match on
    bake_spec, bake_spec_version, bake_built_at
    _sahara_username, _sahara_description, _sahara_tag_<tag> = "True"
                              Sahara's image registry, exactly as Sahara reads it

Transient failures of single API calls (connection refused or reset, HTTP 502/503/504) are
retried with exponential backoff by tenacity; image data uploads are never retried.
"""

from __future__ import annotations

import dataclasses
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
from bake.auth import Cloud
from bake.distros import DISTROS
from bake.errors import OperationFailed

LOG = logging.getLogger(__name__)
T = TypeVar("T")

FINGERPRINT = "bake_fingerprint"
SPEC = "bake_spec"
SPEC_VERSION = "bake_spec_version"
BUILT_AT = "bake_built_at"
PUBLISHER = "bake_publisher"  # host:pid of the publish in progress; removed once active
SAHARA_USERNAME = "_sahara_username"
SAHARA_DESCRIPTION = "_sahara_description"
SAHARA_TAG = "_sahara_tag_"
ARCHITECTURES = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}
# Properties bake owns: a spec's glance.properties cannot set them.
RESERVED = {
    "name",
    "disk_format",
    "container_format",
    "visibility",
    "min_disk",
    "min_ram",
    FINGERPRINT,
    SPEC,
    SPEC_VERSION,
    BUILT_AT,
    PUBLISHER,
}
UNFINISHED = ("queued", "saving", "uploading", "importing")
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


def image_properties(artifact: Artifact) -> dict[str, Any]:
    """Everything ``images.create`` gets for this artifact (no data, no publisher marker)."""
    spec = artifact.spec
    glance = spec.get("glance") or {}
    path, disk_format = artifact.image_file()
    min_disk = glance.get("min_disk")
    if min_disk is None:
        virtual = qcow2_virtual_size(path) if disk_format == "qcow2" else path.stat().st_size
        min_disk = math.ceil((virtual or 0) / GIB)
    props: dict[str, Any] = {}
    for key, value in (glance.get("properties") or {}).items():
        if key in RESERVED or key.startswith("_sahara_"):
            raise GlanceError(f"spec {spec['name']}: glance.properties may not set {key!r}")
        props[key] = _text(value)
    props.setdefault("os_distro", DISTROS[spec["distro"]].os_distro)
    props.setdefault("os_version", str(glance.get("os_version") or spec["release"]))
    props.setdefault("architecture", ARCHITECTURES.get(spec.get("arch", "amd64"), "x86_64"))
    props.update(
        {
            "name": f"{artifact.name}-{artifact.version}",
            "disk_format": disk_format,
            "container_format": "bare",
            "visibility": glance.get("visibility", "private"),
            "min_disk": int(min_disk),
            "min_ram": int(glance.get("min_ram", 0)),
            FINGERPRINT: artifact.fingerprint,
            SPEC: artifact.name,
            SPEC_VERSION: artifact.version,
        }
    )
    if artifact.manifest.get("built_at"):
        props[BUILT_AT] = str(artifact.manifest["built_at"])
    sahara = spec.get("sahara")
    if sahara:
        props[SAHARA_USERNAME] = sahara["username"]
        if sahara.get("description"):
            props[SAHARA_DESCRIPTION] = sahara["description"]
        for tag in sahara.get("tags") or ():
            props[SAHARA_TAG + tag] = "True"
    return props


def _text(value: Any) -> str:
    """Glance custom properties are strings; booleans keep Python's spelling (True/False)."""
    return str(value)


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
    code = getattr(exc, "code", None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, glance_exc.CommunicationError | ksa_exc.ConnectFailure):
        return "Glance unreachable (connection failed)"
    if code:
        name = type(exc).__name__
        return f"HTTP {code} {name}: {text[:200]}" if text else f"HTTP {code} {name}"
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


class Glance:
    """python-glanceclient v2 over a :class:`~bake.auth.Cloud` session, with retries."""

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

    def list(self, filters: dict[str, Any] | None = None) -> list[Any]:
        """Every image matching the filters (properties match exactly), all pages."""
        return self.call(
            "listing images", lambda: list(self.client.images.list(filters=filters or {}))
        )

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
