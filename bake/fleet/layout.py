"""Where things are on a bbq host: one :class:`HostLayout`, the only place that names them.

The ``bbq-app`` element bakes this layout and every host script (``remote/``) reads it from
the environment :meth:`HostLayout.environment` gives (``BBQ_ROOT``, ``BBQ_RELEASES``, ...)::

    /opt/bbq/releases/<release>/   a venv with the app; RELEASE inside, written last
    /opt/bbq/current               -> releases/<release>
    /opt/bbq/wheels/               wheels sent so far (images may ship it empty)
    /opt/bbq/.incoming/            a deploy's staging directory
    /opt/bbq/.deploy.lock          held for a whole deploy (flock)
    /opt/bbq/.switch.lock          held while a switch runs (flock)
    /opt/bbq/.switching            "<from> <to>" of a switch not confirmed healthy yet
    /etc/bbq/app-extras            the app's extras on this host, comma-separated
    /etc/bbq/bbq.conf.d/*.conf     the app's configuration; [rest] port/url: the health URL
    bbq-*.service                  the units running from /opt/bbq/current

Example::

    layout = HostLayout()
    layout.current                          # '/opt/bbq/current'
    HostLayout.under("/tmp/t").extras_file  # '/tmp/t/etc/bbq/app-extras' (tests)
"""

from __future__ import annotations

import dataclasses
import posixpath


@dataclasses.dataclass(frozen=True)
class HostLayout:
    """The paths, port and names a bbq host uses (defaults: what the images bake)."""

    root: str = "/opt/bbq"
    extras_file: str = "/etc/bbq/app-extras"
    conf_dir: str = "/etc/bbq/bbq.conf.d"
    # bbq-rest's port when no conf file names one ([rest] port; app/bbq/config.py's default).
    rest_port: int = 8780
    health_path: str = "/healthz"
    app: str = "bbq"
    units: str = "bbq-*.service"

    @classmethod
    def under(cls, prefix: str) -> HostLayout:
        """The default layout moved below the directory ``prefix`` (to run scripts on a tree)."""
        default = cls()
        return cls(
            root=_below(prefix, default.root),
            extras_file=_below(prefix, default.extras_file),
            conf_dir=_below(prefix, default.conf_dir),
        )

    def _at(self, name: str) -> str:
        return posixpath.join(self.root, name)

    @property
    def releases(self) -> str:
        return self._at("releases")

    @property
    def current(self) -> str:
        return self._at("current")

    @property
    def pool(self) -> str:
        return self._at("wheels")

    @property
    def stage(self) -> str:
        return self._at(".incoming")

    @property
    def lock(self) -> str:
        return self._at(".deploy.lock")

    @property
    def switch_lock(self) -> str:
        return self._at(".switch.lock")

    @property
    def switching(self) -> str:
        return self._at(".switching")

    @property
    def switch_log(self) -> str:
        return self._at(".switch.log")

    def release(self, name: str) -> str:
        return posixpath.join(self.releases, name)

    def environment(self) -> dict[str, str]:
        """The layout as the host scripts read it (``BBQ_*`` variables)."""
        return {
            "BBQ_ROOT": self.root,
            "BBQ_RELEASES": self.releases,
            "BBQ_CURRENT": self.current,
            "BBQ_POOL": self.pool,
            "BBQ_STAGE": self.stage,
            "BBQ_LOCK": self.lock,
            "BBQ_SWITCH_LOCK": self.switch_lock,
            "BBQ_SWITCHING": self.switching,
            "BBQ_EXTRAS_FILE": self.extras_file,
            "BBQ_CONF_DIR": self.conf_dir,
            "BBQ_REST_PORT": str(self.rest_port),
            "BBQ_HEALTH_PATH": self.health_path,
            "BBQ_APP": self.app,
            "BBQ_UNITS": self.units,
        }


def _below(prefix: str, path: str) -> str:
    return posixpath.join(str(prefix), path.lstrip("/"))


DEFAULT = HostLayout()
