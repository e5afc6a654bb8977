"""Published images per spec, and pruning of the older ones.

Only images of the caller's project that carry ``bake_fingerprint`` are considered. Pruning a
spec keeps its newest ``keep`` images (by Glance ``created_at``) and every image that Nova
reports a server booted from; the rest are deleted, or deactivated with ``deactivate=True``.
Nova is asked when the catalog has a ``compute`` service; if it is listed but cannot be asked,
nothing is pruned (an image in use is never removed on a guess). A cloud whose catalog (for
the region and interface used) has no compute service has no Nova that could boot these
images: pruning goes ahead by age alone, ``PruneResult.nova_checked`` is False, and
``bake prune`` says on stderr that the in-use checks were skipped.

Example::

    result = prune(Glance(cloud), "bbq-base", keep=2, dry_run=True)
    [row.id for row in result.pruned]
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from bake import glance as g
from bake.errors import EXIT_BAD_INPUT, OperationFailed

STATUSES = ("active", "deactivated")


class PruneError(OperationFailed):
    """Pruning was refused or failed (one line); what was done before is in the message."""


@dataclasses.dataclass(frozen=True)
class ImageRow:
    """One published image as ``bake images`` shows it."""

    id: str
    name: str
    spec: str
    version: str
    fingerprint: str
    size: int | None
    status: str
    created_at: str
    protected: bool = False

    @classmethod
    def from_image(cls, image: Any) -> ImageRow:
        return cls(
            id=image["id"],
            name=image.get("name") or "",
            spec=image.get(g.SPEC, ""),
            version=image.get(g.SPEC_VERSION, ""),
            fingerprint=image.get(g.FINGERPRINT, ""),
            size=image.get("size"),
            status=image.get("status", ""),
            created_at=image.get("created_at", ""),
            protected=bool(image.get("protected")),
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


def list_images(glance: g.Glance, spec: str | None = None) -> list[ImageRow]:
    """Our project's bake images (of one spec if given), newest first within each spec."""
    filters: dict[str, Any] = {}
    if spec:
        filters[g.SPEC] = spec
    owner = glance.cloud.project_id()
    if owner:
        filters["owner"] = owner
    rows = [ImageRow.from_image(i) for i in glance.list(filters) if i.get(g.FINGERPRINT)]
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


def servers_using(cloud, image_ids: list[str]) -> dict[str, list[str]] | None:
    """{image id: [server names]} from Nova, or None when the catalog has no compute service.

    Asks with ``all_tenants`` first (admins see every project's servers) and falls back to
    the caller's own project when Nova forbids it. Raises PruneError if Nova cannot be asked.
    """
    if not cloud.has_service("compute"):
        return None
    from novaclient import client as nova_client
    from novaclient import exceptions as nova_exc

    nova = nova_client.Client(
        "2.1",
        session=cloud.session,
        region_name=cloud.region_name,
        endpoint_type=cloud.interface or "public",
        endpoint_override=cloud.endpoint_overrides.get("compute"),
    )
    result: dict[str, list[str]] = {}
    for image_id in image_ids:
        try:
            try:
                servers = nova.servers.list(search_opts={"image": image_id, "all_tenants": True})
            except nova_exc.Forbidden:
                servers = nova.servers.list(search_opts={"image": image_id})
        except Exception as exc:
            raise PruneError(
                f"cannot ask Nova whether image {image_id} is in use ({g.describe(exc)}); "
                "nothing pruned"
            ) from None
        if servers:
            result[image_id] = [getattr(s, "name", s.id) for s in servers]
    return result


def prune(
    glance: g.Glance,
    spec: str,
    keep: int,
    *,
    dry_run: bool = False,
    deactivate: bool = False,
) -> PruneResult:
    """Delete (or deactivate) a spec's images older than its newest ``keep``, unless in use."""
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
    in_use = servers_using(glance.cloud, [r.id for r in candidates]) if candidates else {}
    result.nova_checked = in_use is not None
    result.in_use = in_use or {}
    for row in candidates:
        if row.id in result.in_use:
            result.kept.append(row)
        elif row.protected:
            result.skipped.append((row, "protected"))
        else:
            result.pruned.append(row)
    if dry_run:
        return result
    done = []
    for row in result.pruned:
        try:
            if deactivate:
                glance.deactivate(row.id)
            else:
                glance.delete(row.id)
        except g.GlanceError as exc:
            already = ", ".join(r.id for r in done) or "none"
            raise PruneError(f"{exc} (already {result.action}d: {already})") from None
        done.append(row)
    return result
