"""Published images per spec, and pruning of the older ones.

Only images of the caller's project that carry ``bake_fingerprint`` are considered. Pruning a
spec keeps its newest ``keep`` images (by Glance ``created_at``) and every image that Nova
reports a server booted from; the rest are deleted, or deactivated with ``deactivate=True``.
Nova is asked when the catalog has a ``compute`` service; if it is listed but cannot be asked,
nothing is pruned (an image in use is never removed on a guess). A cloud whose catalog (for
the region and interface used) has no compute service has no Nova that could boot these
images: pruning by age alone is refused (:class:`PruneError`, exit 2) unless
``allow_age_only`` (``bake prune --allow-age-only``); a dry run shows what it would choose,
and ``PruneResult.nova_checked`` is False. Images hidden by ``--hide-older`` count like the
others (they are the older builds).

:func:`plan` decides without changing anything; :func:`apply` carries a plan out (so that
``bake prune`` can show the plan and ask before it acts); :func:`prune` does both.

Example::

    result = prune(Glance(cloud), "bbq-base", keep=2, dry_run=True)
    [row.id for row in result.pruned]
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from bake.cloud import glance as g
from bake.cloud.glance import Image
from bake.cloud.nova import NovaError, servers_using
from bake.errors import EXIT_BAD_INPUT, OperationFailed

STATUSES = ("active", "deactivated")


class PruneError(OperationFailed):
    """Pruning was refused or failed (one line); what was done before is in the message."""


@dataclasses.dataclass(frozen=True)
class ImageRow:
    """One published image as ``bake images`` shows it (read through :class:`Image`)."""

    id: str
    name: str
    spec: str
    version: str
    fingerprint: str
    size: int | None
    status: str
    created_at: str
    protected: bool = False
    hidden: bool = False
    latest: bool = False
    visibility: str | None = None
    tags: tuple[str, ...] = ()

    @classmethod
    def from_image(cls, raw: Any) -> ImageRow:
        image = Image(raw)
        return cls(
            id=image.id,
            name=image.name,
            spec=image.spec,
            version=image.spec_version,
            fingerprint=image.fingerprint,
            size=image.size,
            status=image.status,
            created_at=image.created_at,
            protected=image.protected,
            hidden=image.hidden,
            latest=image.latest == "True",
            visibility=image.visibility,
            tags=tuple(image.tags or ()),
        )

    def age(self, now: datetime.datetime | None = None) -> str:
        """Age as '3d', '5h', '12m' or '40s'."""
        try:
            created = datetime.datetime.fromisoformat(self.created_at.replace("Z", "+00:00"))
        except ValueError:
            return "?"
        seconds = ((now or datetime.datetime.now(datetime.UTC)) - created).total_seconds()
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= size:
                return f"{int(seconds // size)}{unit}"
        return f"{max(int(seconds), 0)}s"


def list_images(glance: g.Glance, spec: str | None = None, hidden: bool = True) -> list[ImageRow]:
    """Our project's bake images (of one spec if given), newest first within each spec;
    ``hidden``: also those hidden from listings (os_hidden)."""
    filters = Image.wire(spec=spec or None, owner=glance.cloud.project_id() or None)
    found = glance.list(filters, hidden=hidden)
    rows = [r for r in map(ImageRow.from_image, found) if r.fingerprint]
    rows.sort(key=lambda r: r.created_at, reverse=True)
    rows.sort(key=lambda r: r.spec)
    return rows


@dataclasses.dataclass
class PruneResult:
    """What prune kept (newest, in use, protected) and pruned (or would, with dry_run)."""

    kept: list[ImageRow] = dataclasses.field(default_factory=list)
    in_use: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # id -> servers
    pruned: list[ImageRow] = dataclasses.field(default_factory=list)
    skipped: list[tuple[ImageRow, str]] = dataclasses.field(default_factory=list)
    nova_checked: bool = False
    action: str = "delete"
    dry_run: bool = False


def plan(
    glance: g.Glance,
    spec: str,
    keep: int,
    *,
    deactivate: bool = False,
    allow_age_only: bool = False,
    dry_run: bool = True,
) -> PruneResult:
    """What pruning a spec would do (nothing is changed): its newest ``keep`` images and
    those in use are kept, protected ones skipped, the rest to be pruned. PruneError (exit 2)
    for ``keep`` < 1, and when the cloud has no Nova to ask and neither ``allow_age_only`` nor
    ``dry_run`` is given."""
    if keep < 1:
        raise PruneError(
            f"--keep must be at least 1 (got {keep}): prune never removes them all",
            EXIT_BAD_INPUT,
        )
    rows = [r for r in list_images(glance, spec) if r.status in STATUSES]
    result = PruneResult(action="deactivate" if deactivate else "delete", dry_run=dry_run)
    result.kept = rows[:keep]
    candidates = rows[keep:]
    if deactivate:
        candidates = [r for r in candidates if r.status != "deactivated"]
    try:
        in_use = servers_using(glance.cloud, [r.id for r in candidates]) if candidates else {}
    except NovaError as exc:
        raise PruneError(f"{exc}; nothing pruned") from None
    if in_use is None and not (allow_age_only or dry_run):
        raise PruneError(
            f"{spec}: the catalog has no compute service (Nova), so whether its images are "
            "in use cannot be checked; nothing pruned (pass --allow-age-only to prune by "
            "age alone)",
            EXIT_BAD_INPUT,
        )
    result.nova_checked = in_use is not None
    result.in_use = in_use or {}
    for row in candidates:
        if row.id in result.in_use:
            result.kept.append(row)
        elif row.protected:
            result.skipped.append((row, "protected"))
        else:
            result.pruned.append(row)
    return result


def apply(glance: g.Glance, result: PruneResult) -> PruneResult:
    """Delete (or deactivate) the plan's ``pruned`` images; PruneError naming what was done
    already if Glance fails."""
    done: list[ImageRow] = []
    for row in result.pruned:
        try:
            if result.action == "deactivate":
                glance.deactivate(row.id)
            else:
                glance.delete(row.id)
        except g.GlanceError as exc:
            already = ", ".join(r.id for r in done) or "none"
            raise PruneError(f"{exc} (already {result.action}d: {already})") from None
        done.append(row)
    result.dry_run = False
    return result


def prune(
    glance: g.Glance,
    spec: str,
    keep: int,
    *,
    dry_run: bool = False,
    deactivate: bool = False,
    allow_age_only: bool = False,
) -> PruneResult:
    """Delete (or deactivate) a spec's images older than its newest ``keep``, unless in use
    (:func:`plan`, then :func:`apply` unless ``dry_run``)."""
    result = plan(
        glance,
        spec,
        keep,
        deactivate=deactivate,
        allow_age_only=allow_age_only,
        dry_run=dry_run,
    )
    return result if dry_run else apply(glance, result)
