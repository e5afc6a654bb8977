"""Publish an artifact to Glance: deduplicated, streamed, verified, and never left half-made.

:func:`publish` does, in order:

1. reads the disk image's sha256 from the artifact's SHA256SUMS;
2. looks for an active image of this project with the same ``bake_fingerprint``: if there is
   one it is reported and nothing is sent; leftovers of this host's publishes that died
   (queued/saving images whose publisher process is gone) are deleted;
3. creates the image record with :func:`bake.cloud.glance.image_properties` plus a publisher
   marker,
   under an id derived from project and fingerprint (:func:`create_claimed`), so that of two
   concurrent publishes of one artifact only one can create it;
4. streams the file in 1 MiB reads with progress (bytes, MiB/s, ETA: a bar on a terminal,
   else a plain line every few seconds, for CI logs), checking its
   sha256 against SHA256SUMS in that same single pass (constant memory, hashing overlapped
   with sending): a file that fails SHA256SUMS is cut off before its upload completes;
5. compares Glance's ``os_hash_value`` (sha512), ``checksum`` (md5) and ``size`` with the
   sha512 and md5 the manifest recorded for the file at build time, then removes the marker.
   The data read matched the build (step 4) and Glance holds the same bytes (step 5), with no
   sha512/md5 hashing on the sending side, which otherwise costs more CPU than the upload.
   Artifacts built before manifests recorded them get sha512 and md5 computed in the same
   pass as the sha256 instead.

Any failure or interrupt (Ctrl-C: :class:`Interrupted`) after step 3 deletes the image
(retrying while Glance is away) and raises :class:`PublishError` with one line.

Once the image is active (uploaded now, or found), :func:`settle_spec` moves ``bake_latest``
to the spec's newest verified image (``openstack image list --property bake_spec=NAME
--property bake_latest=True`` finds exactly one) and, with ``hide_older``, sets ``os_hidden``
on the spec's older active images. Names are unique per build (``<spec>-<version>-<fp[:8]>``),
so a rebuild of the same version never makes ``openstack image show NAME`` ambiguous.

Example::

    result = publish(Artifact.load(path), auth.connect(cloud="mycloud"))
    result.image_id, result.uploaded
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from tqdm import tqdm

from bake import ui
from bake.artifacts import CHECKSUMS, GLANCE_DIGESTS, MANIFEST, Artifact, parse_checksums
from bake.cloud import glance as g
from bake.cloud.auth import AuthError, Cloud
from bake.cloud.glance import Image
from bake.errors import OperationFailed

CHUNK = 1024 * 1024
# Image ids: uuid5(ID_NAMESPACE, "project:fingerprint:generation"); see create_claimed().
ID_NAMESPACE = uuid.UUID("5d1f3c4e-8b7a-4f0e-9c2d-6a1b0e7f3a52")
MAX_GENERATIONS = 100
PROGRESS_INTERVAL = 10.0  # seconds between plain progress lines (not on a terminal)
VISIBILITIES = ("private", "shared", "community", "public")
SETTLE_SECONDS = 5.0  # how long Glance may take to notice an aborted upload
RESURRECTION_WATCH = 2.0  # how long a deleted half-made image is watched for coming back
LOG = logging.getLogger(__name__)


class PublishError(OperationFailed):
    """Publishing failed; nothing half-made is left in Glance (the message says if it was)."""


class ChecksumMismatch(PublishError):
    """The data read for upload does not match the artifact's SHA256SUMS."""


@dataclasses.dataclass(frozen=True)
class Digests:
    """What Glance's ``os_hash_value`` (sha512) and ``checksum`` (md5) must be for an image,
    and where those values come from (for messages)."""

    sha512: str
    md5: str
    source: str


def recorded_digests(artifact: Artifact, path: Path) -> Digests | None:
    """The sha512 and md5 the artifact's manifest recorded for its image file when it was
    built (:func:`bake.artifacts.file_digests`), or None for artifacts made before they were."""
    info = artifact.files.get(path.name, {})
    if all(info.get(name) for name in GLANCE_DIGESTS):
        return Digests(info["sha512"], info["md5"], f"recorded in {MANIFEST}")
    return None


class HashingReader:
    """A read-only view of the first ``size`` bytes of a file that hashes every byte it
    returns, in constant memory.

    With ``expect_sha256`` it checks the data against the artifact's SHA256SUMS; with
    ``glance_digests`` it also computes sha512 and md5 (what Glance computes), for artifacts
    whose manifest does not record them. The hashes are updated by background threads (one per
    lane: sha256 | md5 | sha512) while the caller sends the chunk just returned: hashlib
    releases the GIL on large buffers, so hashing overlaps the network. The last chunk is
    hashed before it is returned: if the sha256 then differs from ``expect_sha256``, or the
    file ends early, ``read`` raises :class:`ChecksumMismatch` and the final bytes are never
    sent, so the upload cannot complete. ``progress(n)`` is called after each read with the
    number of bytes just read.
    """

    def __init__(
        self,
        handle: BinaryIO,
        size: int,
        progress: Callable[[int], Any] | None = None,
        expect_sha256: str | None = None,
        label: str = "data",
        glance_digests: bool = True,
    ):
        self.handle = handle
        self.size = size
        self.sha256 = hashlib.sha256() if expect_sha256 else None
        self.sha512 = hashlib.sha512() if glance_digests else None
        self.md5 = hashlib.md5(usedforsecurity=False) if glance_digests else None
        self.expect_sha256 = expect_sha256
        self.label = label
        self.bytes = 0
        self.progress = progress
        self._lanes = [h for h in (self.sha256, self.md5, self.sha512) if h is not None]
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max(len(self._lanes), 1), thread_name_prefix="bake-hash"
        )
        self._pending: list[concurrent.futures.Future] = []

    def _wait(self) -> None:
        for future in self._pending:
            future.result()
        self._pending = []

    def read(self, size: int = CHUNK) -> bytes:
        want = min(size if size and size > 0 else CHUNK, self.size - self.bytes)
        data = self.handle.read(want) if want > 0 else b""
        self._wait()  # at most one chunk being hashed: memory stays at two chunks
        if self.bytes < self.size and len(data) < want:
            self.close()
            raise ChecksumMismatch(
                f"{self.label}: file ended at byte {self.bytes + len(data)} of {self.size}"
            )
        if not data:
            self.close()
            self._check()
            return data
        self.bytes += len(data)
        if self.bytes == self.size:  # the last chunk: check before letting it go
            for digest in self._lanes:
                digest.update(data)
            self.close()
            self._check()
        else:
            self._pending = [self._pool.submit(digest.update, data) for digest in self._lanes]
        if self.progress is not None:
            self.progress(len(data))
        return data

    def _check(self) -> None:
        if self.sha256 is not None and self.sha256.hexdigest() != self.expect_sha256:
            raise ChecksumMismatch(
                f"artifact fails its checksums: {self.label}: sha256 {self.sha256.hexdigest()} "
                f"does not match {CHECKSUMS} ({self.expect_sha256})"
            )

    def digests(self) -> Digests:
        """sha512 and md5 of the data read (after :meth:`close`; needs ``glance_digests``)."""
        if self.sha512 is None or self.md5 is None:
            raise ValueError("HashingReader made without glance_digests")
        return Digests(self.sha512.hexdigest(), self.md5.hexdigest(), "of the data sent")

    def close(self) -> None:
        """Finish hashing what was read; the digests are final afterwards."""
        self._wait()
        self._pool.shutdown(wait=True)


@dataclasses.dataclass(frozen=True)
class PublishResult:
    """What publish did: the image, and whether data was sent (False: already published)."""

    image_id: str
    name: str
    uploaded: bool
    bytes_sent: int = 0
    seconds: float = 0.0
    sha512: str = ""
    md5: str = ""
    removed_leftovers: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()  # older images of the spec hidden (--hide-older)


@dataclasses.dataclass(frozen=True)
class PublishOptions:
    """What ``bake publish`` may choose beyond the artifact itself.

    ``progress``: True a bar, False nothing, None a bar on a terminal and otherwise a plain
    line every ``progress_interval`` seconds (stderr).
    """

    visibility: str | None = None  # None: the spec's glance.visibility (default private)
    tags: tuple[str, ...] = ()
    hide_older: bool = False
    progress: bool | None = None
    progress_interval: float = PROGRESS_INTERVAL


def _publisher() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_orphan(image: Any) -> bool:
    """An unfinished image whose publisher ran on this host and is no longer running."""
    marker = Image(image).publisher
    if not marker or Image(image).status not in g.UNFINISHED:
        return False
    host, _, pid = str(marker).rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid))


def images_of(glance: g.Glance, fingerprint: str) -> list[Any]:
    """Every image (any status, any owner we can see) whose bake_fingerprint is ``fingerprint``:
    one listing, from which :func:`find_published` and :func:`remove_orphans` pick."""
    return glance.list(Image.wire(fingerprint=fingerprint))


def find_published(
    glance: g.Glance, fingerprint: str, images: list[Any] | None = None
) -> Any | None:
    """The newest active image of our project whose bake_fingerprint is ``fingerprint``
    (among ``images``, default: :func:`images_of`)."""
    owner = glance.cloud.project_id()
    raws = images_of(glance, fingerprint) if images is None else images
    for image in sorted(map(Image, raws), key=lambda image: image.created_at, reverse=True):
        if image.status == "active" and image.fingerprint == fingerprint:
            if not owner or image.owner == owner:
                return image.raw
    return None


def remove_orphans(
    glance: g.Glance, fingerprint: str, images: list[Any] | None = None
) -> list[str]:
    """Delete unfinished images of this fingerprint left by dead publishes on this host
    (among ``images``, default: :func:`images_of`)."""
    removed = []
    for image in images_of(glance, fingerprint) if images is None else images:
        if Image(image).fingerprint == fingerprint and _is_orphan(image):
            glance.delete(Image(image).id)
            removed.append(Image(image).id)
    return removed


def image_id_for(project: str, fingerprint: str, generation: int) -> str:
    """The image id a publish of ``fingerprint`` claims: the same for every publisher."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{project}:{fingerprint}:{generation}"))


def create_claimed(glance: g.Glance, fingerprint: str, properties: dict[str, Any]) -> Any:
    """Create the image under an id derived from the project and fingerprint, so that Glance
    itself lets only one publish of an artifact create its image (the others get 409).

    Glance never reuses the id of a deleted image, so a fingerprint whose image was deleted
    (a failed upload, a prune) moves on to the next generation's id. Returns the new image,
    or the already active one of a publish that won the race; raises PublishError while
    another publish of the same artifact is still uploading.
    """
    project = glance.cloud.project_id() or ""
    for generation in range(MAX_GENERATIONS):
        image_id = image_id_for(project, fingerprint, generation)
        try:
            return glance.create({**properties, **Image.wire(id=image_id)})
        except g.Conflict:
            pass
        try:
            image = glance.get(image_id)
        except g.GlanceError:
            continue  # deleted (hidden from us): its id stays taken
        claimed = Image(image)
        if claimed.status == "active" and claimed.fingerprint == fingerprint:
            return image
        if claimed.status in g.UNFINISHED:
            raise PublishError(
                f"image {image_id} of this artifact is being uploaded right now "
                f"(by {claimed.publisher or 'another publish'}); not publishing it twice"
            )
    raise PublishError(
        f"{MAX_GENERATIONS} images of fingerprint {fingerprint[:12]} were deleted already; "
        "purge deleted images (glance-manage db purge) to publish it again"
    )


def expected_sha256(artifact: Artifact, path: Path) -> str:
    """The image file's sha256 from SHA256SUMS (which must agree with the manifest)."""
    sums = artifact.path / CHECKSUMS
    try:
        listed = parse_checksums(sums.read_text())
    except (OSError, ValueError) as exc:
        raise PublishError(f"artifact fails its checksums: {sums}: {exc}") from None
    digest = listed.get(path.name)
    if digest is None:
        raise PublishError(f"artifact fails its checksums: {sums} does not list {path.name}")
    if digest != artifact.files[path.name].get("sha256", digest):
        raise PublishError(f"artifact fails its checksums: {sums} and the manifest disagree")
    return digest


def verify_upload(image: Any, expected: Digests, sent: int, size: int) -> None:
    """Raise PublishError unless Glance's size, checksum and os_hash_value match ``expected``
    and the ``sent`` bytes were the whole ``size``."""
    problems = []
    got = Image(image)
    if got.size != size or sent != size:
        problems.append(f"size {got.size} (sent {sent} of {size})")
    if got.checksum != expected.md5:
        problems.append(f"checksum {got.checksum} != md5 {expected.md5}")
    if got.hash_algo == "sha512":
        if got.hash_value != expected.sha512:
            problems.append(f"os_hash_value differs from the sha512 {expected.source}")
    elif got.hash_algo is not None:  # an operator's choice (glance hashing_algorithm)
        LOG.warning(
            "image %s: Glance hashes with %s, not sha512: only md5 compared",
            got.id,
            got.hash_algo,
        )
    if got.status != "active":
        problems.append(f"status {got.status!r}, expected 'active'")
    if problems:
        raise PublishError(
            f"image {got.id}: Glance disagrees: "
            + "; ".join(problems)
            + f" (expected: {expected.source})"
        )


class ProgressLines:
    """Upload progress as plain lines, for logs that are not a terminal (CI)::

        bake: bbq-spark-0.1.0-3f2a9c1b: 48.0MiB of 160.0MiB (30%), 9.6MiB/s, ETA 12s

    one every ``interval`` seconds and a last one at the end; the rate is the average since
    the start, in MiB/s (2**20 bytes per second).
    """

    def __init__(self, total: int, name: str, interval: float, stream=None, clock=time.monotonic):
        self.total, self.name, self.interval = total, name, max(interval, 0.0)
        self.stream = stream or sys.stderr
        self.clock = clock
        self.started = self.last = clock()
        self.n = 0
        self.shown = -1

    def update(self, count: int) -> None:
        self.n += count
        now = self.clock()
        if now - self.last >= self.interval:
            self.show(now)

    def show(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self.last, self.shown = now, self.n
        elapsed = now - self.started
        rate = self.n / elapsed if elapsed > 0 else 0.0
        percent = 100 * self.n / self.total if self.total else 100
        if self.n >= self.total:
            tail = f"done in {elapsed:.0f}s"
        else:
            tail = f"ETA {(self.total - self.n) / rate:.0f}s" if rate else "ETA ?"
        print(
            f"bake: {self.name}: {ui.binary_size(self.n)} of {ui.binary_size(self.total)} "
            f"({percent:.0f}%), {ui.binary_size(rate)}/s, {tail}",
            file=self.stream,
            flush=True,
        )

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None and self.shown != self.n:
            self.show()


class ProgressBar(tqdm):
    """tqdm's bar with sizes and rate in binary units, spelled so (KiB, MiB, MiB/s)."""

    FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {sent}/{size} [{elapsed}<{remaining}, {speed}]"

    @property
    def format_dict(self) -> dict[str, Any]:
        d = super().format_dict
        rate = d.get("rate") or (d["n"] / d["elapsed"] if d.get("elapsed") else 0.0)
        d.update(
            sent=ui.binary_size(d["n"]),
            size=ui.binary_size(d["total"] or 0),
            speed=f"{ui.binary_size(rate)}/s",
        )
        return d


class NoProgress:
    def update(self, count: int) -> None:
        pass

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def progress_for(total: int, name: str, show: bool | None, interval: float = PROGRESS_INTERVAL):
    """The upload's progress display: a bar (``show`` True, or None on a terminal), plain
    lines every ``interval`` seconds (None, stderr not a terminal), or nothing (False)."""
    if show is False:
        return NoProgress()
    if show is None and not sys.stderr.isatty():
        return ProgressLines(total, name, interval)
    return ProgressBar(
        total=total,
        desc=name,
        file=sys.stderr,
        mininterval=0.5,
        dynamic_ncols=True,
        bar_format=ProgressBar.FORMAT,
    )


def publish(
    artifact: Artifact,
    cloud: Cloud,
    *,
    retry: g.RetryPolicy | None = None,
    progress: bool | None = None,
    on_read: Callable[[int], Any] | None = None,
    options: PublishOptions | None = None,
) -> PublishResult:
    """Put the artifact's disk image into Glance once; see the module docstring for the steps.

    ``options``: visibility, tags, hide_older and progress (``progress`` alone is a shortcut
    for ``PublishOptions(progress=...)``). ``on_read(n)`` is called after every read of the
    upload stream with the total bytes read so far.
    """
    options = options or PublishOptions(progress=progress)
    glance = g.Glance(cloud, retry)
    result = _publish_once(artifact, glance, options, on_read)
    try:
        hidden = settle_spec(glance, artifact.name, result.image_id, options.hide_older)
    except g.GlanceError as exc:
        raise PublishError(f"image {result.image_id} is published and active, but {exc}") from None
    return dataclasses.replace(result, hidden=tuple(hidden))


def _publish_once(
    artifact: Artifact,
    glance: g.Glance,
    options: PublishOptions,
    on_read: Callable[[int], Any] | None,
) -> PublishResult:
    """Steps 1-5 of the module docstring: the active image of the artifact, made if need be."""
    path, _ = artifact.image_file()
    expect_sha256 = expected_sha256(artifact, path)
    glance.cloud.check()
    try:
        properties = g.image_properties(artifact, options.visibility, options.tags)
        images = images_of(glance, artifact.fingerprint)
        existing = find_published(glance, artifact.fingerprint, images)
        if existing is not None:
            return PublishResult(Image(existing).id, Image(existing).name, uploaded=False)
        removed = tuple(remove_orphans(glance, artifact.fingerprint, images))
        size = path.stat().st_size
        marked = {**properties, **Image.wire(publisher=_publisher())}
        image = create_claimed(glance, artifact.fingerprint, marked)
    except g.GlanceError as exc:
        raise PublishError(str(exc)) from None
    claimed = Image(image)
    if claimed.status == "active":  # another publish finished it meanwhile
        return PublishResult(claimed.id, claimed.name, uploaded=False)
    upload = Upload(claimed.id, path, size, expect_sha256, recorded_digests(artifact, path))
    try:
        return _upload(glance, upload, Image(properties).name, options, on_read, removed)
    except BaseException as exc:
        raise _cleanup(glance, claimed.id, exc) from None


@dataclasses.dataclass(frozen=True)
class Upload:
    """What one upload sends: the file's first ``size`` bytes to the claimed image, checked
    against SHA256SUMS and the digests the manifest recorded (None: computed while sending)."""

    image_id: str
    path: Path
    size: int
    expect_sha256: str
    recorded: Digests | None


def settle_spec(glance: g.Glance, spec: str, image_id: str, hide_older: bool) -> list[str]:
    """After a publish of ``image_id`` (active): ``bake_latest`` on the spec's newest verified
    image only, and with ``hide_older`` ``os_hidden`` on the spec's active images older than
    ``image_id``; returns the ids hidden now. Convergent: concurrent publishes of one spec
    leave the newest marked."""
    owner = glance.cloud.project_id()
    images = [
        Image(raw)
        for raw in glance.list(Image.wire(spec=spec, owner=owner or None))
        if Image(raw).status == "active" and not Image(raw).publisher
    ]
    images.sort(key=lambda image: (image.created_at, image.id), reverse=True)
    for rank, image in enumerate(images):
        marked = image.latest == "True"
        if rank == 0 and not marked:
            glance.update(image.id, **Image.wire(latest="True"))
        elif rank > 0 and marked:
            glance.update(image.id, remove=[g.LATEST])
    if not hide_older:
        return []
    published = next((image for image in images if image.id == image_id), None)
    if published is None:
        return []
    hidden = []
    for image in images:
        if image.created_at < published.created_at and not image.hidden:
            glance.update(image.id, **Image.wire(hidden=True))
            hidden.append(image.id)
    return hidden


def _upload(
    glance: g.Glance,
    upload: Upload,
    name: str,
    options: PublishOptions,
    on_read: Callable[[int], Any] | None,
    removed: tuple[str, ...],
) -> PublishResult:
    image_id, size, recorded = upload.image_id, upload.size, upload.recorded
    started = time.monotonic()
    shown = progress_for(size, name, options.progress, options.progress_interval)
    with shown as bar, open(upload.path, "rb") as handle:

        def report(count: int) -> None:
            bar.update(count)
            if on_read is not None:
                on_read(reader.bytes)

        reader = HashingReader(
            handle,
            size,
            report,
            upload.expect_sha256,
            label=str(upload.path),
            glance_digests=recorded is None,
        )
        try:
            glance.upload(image_id, reader, size)
        finally:
            reader.close()
    seconds = time.monotonic() - started
    expected = recorded or reader.digests()
    uploaded = glance.get(image_id)
    verify_upload(uploaded, expected, reader.bytes, size)
    glance.update(image_id, remove=[g.PUBLISHER])
    return PublishResult(
        image_id,
        name,
        uploaded=True,
        bytes_sent=reader.bytes,
        seconds=seconds,
        sha512=expected.sha512,
        md5=expected.md5,
        removed_leftovers=removed,
    )


def _cleanup(glance: g.Glance, image_id: str, cause: BaseException) -> BaseException:
    """Delete the half-made image; return the exception to raise (PublishError, or the
    KeyboardInterrupt itself) with a one-line message saying what happened to the image."""
    if isinstance(cause, PublishError):
        reason = str(cause)
    elif isinstance(cause, KeyboardInterrupt):
        reason = "interrupted"
    elif isinstance(cause, g.GlanceError):
        reason = str(cause)
    else:
        reason = f"upload failed: {g.describe(cause)}"
    try:
        deleted = delete_half_made(glance, image_id)
        outcome = f"image {image_id} deleted" if deleted else f"image {image_id} already gone"
    except KeyboardInterrupt:
        outcome = f"image {image_id} NOT deleted (interrupted again): delete it by hand"
    except Exception as exc:
        outcome = f"image {image_id} NOT deleted ({exc}): delete it by hand"
    message = f"{reason}; {outcome}"
    if isinstance(cause, KeyboardInterrupt):
        return Interrupted(message)
    return PublishError(message)


def delete_half_made(glance: g.Glance, image_id: str, settle: float = SETTLE_SECONDS) -> bool:
    """Delete an image whose upload failed; False if Glance no longer had it.

    Glance, still handling an aborted upload, sets the image back to ``queued`` when it notices
    the broken stream, and for an admin that can bring back an image deleted a moment before.
    So: wait (up to ``settle`` seconds) for the image to leave ``saving``, delete it, and
    watch it for ``RESURRECTION_WATCH`` seconds more, deleting it again should it come back.
    """
    deadline = time.monotonic() + settle
    while (status := _status(glance, image_id)) == "saving" and time.monotonic() < deadline:
        time.sleep(0.2)
    if status is None:
        return False
    deleted = glance.delete(image_id, seconds=glance.retry.cleanup_seconds)
    watch_until = time.monotonic() + RESURRECTION_WATCH
    while time.monotonic() < watch_until:
        time.sleep(0.5)
        if _status(glance, image_id) not in (None, "deleted", "unknown"):
            glance.delete(image_id, seconds=glance.retry.cleanup_seconds)
            watch_until = time.monotonic() + RESURRECTION_WATCH
    return deleted


def _status(glance: g.Glance, image_id: str) -> str | None:
    """The image's status; "unknown" when Glance cannot say (so deleting is tried anyway)."""
    try:
        return glance.status(image_id)
    except g.GlanceError:
        return "unknown"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a publish, after the half-made image was dealt with (message says how)."""


__all__ = [
    "AuthError",
    "Digests",
    "HashingReader",
    "Interrupted",
    "PublishError",
    "PublishOptions",
    "PublishResult",
    "find_published",
    "publish",
    "recorded_digests",
    "verify_upload",
]
