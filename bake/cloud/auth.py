"""One authenticated keystoneauth1 session, found the way every OpenStack CLI finds it.

Sources, first match wins:

1. ``config_file`` given: an oslo.config file whose ``[keystone]`` group holds keystoneauth1's
   auth, session and adapter options (``auth_type``, ``auth_url``, ``username``, ...,
   ``region_name``, ``interface``), loaded with keystoneauth1.loading like OpenStack services do;
2. otherwise openstacksdk's loader: ``cloud`` (``--os-cloud``/``$OS_CLOUD``) from clouds.yaml
   (``$OS_CLIENT_CONFIG_FILE``, ``./clouds.yaml``, ``~/.config/openstack``, ``/etc/openstack``),
   or the ``OS_*`` environment variables when no cloud is named.

Example::

    cloud = connect(cloud="mycloud", region="RegionOne", interface="public")
    cloud.check()                       # authenticates now; AuthError with one line if not
    cloud.endpoint("image")             # catalog URL of Glance

Every request of the session (Keystone, Glance, Nova, Heat, uploads) has a timeout: the one
given to :func:`connect` (``--api-timeout``), else the cloud's own (clouds.yaml
``api_timeout``, the oslo.config group's ``timeout``), else :data:`DEFAULT_TIMEOUT` seconds.
It bounds each wait for the server (connecting, then each read), not a whole upload.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1 import session as ksa_session

from bake.errors import InputError
from bake.validation import ValidationError, read_yaml

OSLO_GROUP = "keystone"
DEFAULT_TIMEOUT = 60.0  # seconds per request (see the module docstring)
URL = re.compile(r"https?://[^\s'\"]+")


class AuthError(InputError):
    """No usable credentials, the cloud refused them, or it could not be reached."""


@dataclasses.dataclass
class Cloud:
    """An authenticated session plus where to find services in the catalog."""

    session: ksa_session.Session
    region_name: str | None
    interface: str | None
    source: str  # for messages: "cloud 'x'", "OS_* environment", "bake.conf [keystone]"
    # clouds.yaml's <service>_endpoint_override, by service type (the catalog is bypassed)
    endpoint_overrides: dict[str, str] = dataclasses.field(default_factory=dict)

    def adapter_kwargs(self, service_type: str | None = None) -> dict[str, Any]:
        """Keyword arguments that clients (glanceclient, novaclient) take for endpoint lookup."""
        kwargs: dict[str, Any] = {}
        if self.region_name:
            kwargs["region_name"] = self.region_name
        if self.interface:
            kwargs["interface"] = self.interface
        if service_type in self.endpoint_overrides:
            kwargs["endpoint_override"] = self.endpoint_overrides[service_type]
        return kwargs

    @property
    def auth_url(self) -> str:
        return getattr(self.session.auth, "auth_url", None) or "?"

    def check(self) -> None:
        """Authenticate now; raise AuthError naming what is wrong in one line."""
        try:
            self.session.get_token()
        except Exception as exc:  # keystoneauth1 raises many kinds: map them all
            raise AuthError(describe(exc, self)) from None

    def endpoint(self, service_type: str) -> str:
        """The catalog URL of a service; AuthError if the catalog has none for us."""
        if service_type in self.endpoint_overrides:
            return self.endpoint_overrides[service_type]
        try:
            url = self.session.get_endpoint(service_type=service_type, **self.adapter_kwargs())
        except Exception as exc:
            raise AuthError(describe(exc, self)) from None
        if not url:
            raise AuthError(f"{self.source}: no {service_type!r} endpoint in {self._where()}")
        return url

    def has_service(self, service_type: str) -> bool:
        """Whether the catalog lists the service for our region and interface."""
        if service_type in self.endpoint_overrides:
            return True
        try:
            return bool(
                self.session.get_endpoint(service_type=service_type, **self.adapter_kwargs())
            )
        except ksa_exc.EndpointNotFound:
            return False

    def project_id(self) -> str | None:
        return self.session.get_project_id()

    def _where(self) -> str:
        region = self.region_name or "any region"
        return f"the catalog ({region}, interface {self.interface or 'public'})"


def describe(exc: BaseException, cloud: Cloud | None = None) -> str:
    """One line for a keystoneauth1/openstacksdk error, naming the source and what failed."""
    source = cloud.source if cloud else "auth"
    url = cloud.auth_url if cloud else "?"
    if isinstance(exc, ksa_exc.Unauthorized):
        return f"{source}: authentication refused by {url} (wrong user name, password or project)"
    if isinstance(exc, ksa_exc.ConnectTimeout):
        timeout = cloud.session.timeout if cloud else None
        within = f" within {timeout:g}s" if timeout else ""
        return f"{source}: {url_in(exc) or url} did not answer{within} (--api-timeout)"
    if isinstance(exc, ksa_exc.ConnectFailure):
        return f"{source}: cannot connect to {url} (unreachable or not listening)"
    if isinstance(exc, ksa_exc.EndpointNotFound):
        where = cloud._where() if cloud else "the catalog"
        return f"{source}: {first_line(exc)} in {where}"
    if isinstance(exc, ksa_exc.MissingRequiredOptions):
        names = ", ".join(o.dest for o in exc.options)
        return f"{source}: incomplete credentials, missing {names}"
    if isinstance(exc, (ksa_exc.MissingAuthPlugin, ksa_exc.NoMatchingPlugin)):
        return f"{source}: no credentials: {first_line(exc)}"
    if isinstance(exc, ksa_exc.HttpError):
        return f"{source}: {url} answered HTTP {exc.http_status}: {first_line(exc)}"
    return f"{source}: {type(exc).__name__}: {first_line(exc)}"


def url_in(exc: BaseException) -> str | None:
    """The first URL in an exception's message (keystoneauth1 names the one it called)."""
    found = URL.search(str(exc))
    return found.group(0).split("?")[0].rstrip(":.,)") if found else None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe_call(
    exc: BaseException,
    service: str,
    unreachable: tuple[type[BaseException], ...] = (),
    timed_out: tuple[type[BaseException], ...] = (),
) -> str:
    """One line for a failed call to ``service`` (Glance, Nova), naming the URL called:
    no answer in time (keystoneauth1's ConnectTimeout, or a client library's ``timed_out``
    exception saying "timed out"), unreachable (ConnectFailure, or one of ``unreachable``), the
    HTTP status and text, or the exception's type and text."""
    code = getattr(exc, "code", None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    at = f" at {url_in(exc)}" if url_in(exc) else ""
    wrapped_timeout = isinstance(exc, timed_out) and "timed out" in text
    if isinstance(exc, ksa_exc.ConnectTimeout) or wrapped_timeout:
        return f"{service}{at} did not answer in time (--api-timeout)"
    if isinstance(exc, (ksa_exc.ConnectFailure, *unreachable)):
        return f"{service} unreachable{at} (connection failed)"
    if code:
        name = type(exc).__name__
        return f"HTTP {code} {name}: {text[:200]}" if text else f"HTTP {code} {name}"
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _set_timeout(session: ksa_session.Session, timeout: float | None) -> None:
    """``timeout`` if given, else the session's own, else DEFAULT_TIMEOUT."""
    if timeout is not None:
        session.timeout = float(timeout)
    elif session.timeout is None:
        session.timeout = DEFAULT_TIMEOUT


def quiet_libraries() -> None:
    """Show bake's own warnings (retries) as ``bake: ...``; keep the client libraries' log
    chatter (keystoneauth's discovery fallbacks, ...) off stderr: errors arrive as exceptions."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())
    ours = logging.getLogger("bake")
    if not ours.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("bake: %(message)s"))
        ours.addHandler(handler)
        ours.setLevel(logging.WARNING)


# clouds.yaml files may share blocks with a few YAML anchors; more is an alias bomb.
CLOUDS_ALIASES = 16


def checked_clouds_file() -> str | None:
    """The clouds.yaml openstacksdk will read (``OS_CLIENT_CONFIG_FILE``, else the first of
    its search path that exists), read here first as hostile input: AuthError naming the file
    when it is missing (given by the variable), not a regular file, too large, not UTF-8, not
    YAML, or of the wrong shape; openstacksdk itself would skip it or fail with bare Python
    errors."""
    from openstack.config import loader

    given = os.environ.get("OS_CLIENT_CONFIG_FILE")
    if given and not os.path.exists(given):
        raise AuthError(f"OS_CLIENT_CONFIG_FILE={given}: no such file")
    path = next(
        (p for p in ([given] if given else []) + loader.CONFIG_FILES if os.path.exists(p)), None
    )
    if path is None:
        return None
    try:
        data = read_yaml(Path(path), path, aliases=CLOUDS_ALIASES)
    except ValidationError as exc:
        raise AuthError(exc.lines()[0]) from None
    problem = _clouds_shape(data)
    if problem:
        raise AuthError(f"{path}: {problem}")
    return path


def _clouds_shape(data: Any) -> str | None:
    """What is wrong with the shape of a clouds.yaml document, or None."""
    if data is None:
        return None
    if not isinstance(data, dict):
        return f"must be a mapping with a `clouds` key, not {type(data).__name__}"
    clouds = data.get("clouds", {})
    if not isinstance(clouds, dict):
        return "clouds: must be a mapping of cloud names"
    for name, entry in clouds.items():
        if not isinstance(entry, dict):
            return f"clouds.{name}: must be a mapping (auth, region_name, ...)"
        if not isinstance(entry.get("auth", {}), dict):
            return f"clouds.{name}.auth: must be a mapping"
    return None


def from_clouds(
    cloud: str | None = None,
    region: str | None = None,
    interface: str | None = None,
    timeout: float | None = None,
) -> Cloud:
    """A session from clouds.yaml (``cloud``) or ``OS_*`` variables, via openstacksdk's loader."""
    import openstack.config
    from openstack import exceptions as sdk_exc

    source = f"cloud {cloud!r}" if cloud else "OS_* environment"
    if cloud is None and not any(k.startswith("OS_") for k in os.environ):
        raise AuthError(
            "no credentials: pass --os-cloud NAME (clouds.yaml), set OS_CLOUD or the OS_* "
            "variables of an openrc file, or pass --config-file with a [keystone] group"
        )
    clouds_file = checked_clouds_file()
    kwargs: dict[str, Any] = {}
    if region:
        kwargs["region_name"] = region
    if interface:
        kwargs["interface"] = interface
    try:
        with warnings.catch_warnings():  # openstacksdk warns about its optional metrics
            warnings.filterwarnings("ignore", message=".*InfluxDB")
            config = openstack.config.OpenStackConfig()
            region_config = config.get_one(cloud=cloud, **kwargs)
            session = region_config.get_session()
            _set_timeout(session, timeout)
    except sdk_exc.ConfigException as exc:
        where = f" (in {clouds_file})" if clouds_file else " (no clouds.yaml found)"
        raise AuthError(f"{source}: {first_line(exc)}{where if cloud else ''}") from None
    except Exception as exc:
        raise AuthError(describe(exc, None).replace("auth:", f"{source}:", 1)) from None
    if region_config.name and not cloud:
        source = f"cloud {region_config.name!r}" if region_config.name != "envvars" else source
    overrides = {}
    for service_type in ("image", "compute"):
        override = region_config.get_endpoint(service_type)
        if override:
            overrides[service_type] = override
    return Cloud(
        session=session,
        region_name=region_config.get_region_name("image") or None,
        interface=region_config.get_interface("image") or None,
        source=source,
        endpoint_overrides=overrides,
    )


def register_oslo_options(conf, group: str = OSLO_GROUP) -> None:
    """Register keystoneauth1's auth, session and adapter options in ``[group]``."""
    from keystoneauth1 import loading

    loading.register_auth_conf_options(conf, group)
    loading.register_session_conf_options(conf, group)
    loading.register_adapter_conf_options(conf, group)


def from_oslo_config(
    config_files: list[str],
    group: str = OSLO_GROUP,
    region: str | None = None,
    interface: str | None = None,
    timeout: float | None = None,
) -> Cloud:
    """A session from the ``[group]`` of oslo.config files, as OpenStack services load theirs."""
    from keystoneauth1 import loading
    from oslo_config import cfg

    source = f"{', '.join(config_files)} [{group}]"
    conf = cfg.ConfigOpts()
    try:
        register_oslo_options(conf, group)
        conf(args=[], project="bake", default_config_files=config_files)
        auth = loading.load_auth_from_conf_options(conf, group)
        if auth is None:
            raise AuthError(f"{source}: no auth_type set")
        session = loading.load_session_from_conf_options(conf, group, auth=auth)
        _set_timeout(session, timeout)
    except AuthError:
        raise
    except cfg.Error as exc:
        raise AuthError(f"{source}: {first_line(exc)}") from None
    except Exception as exc:
        raise AuthError(describe(exc, None).replace("auth:", f"{source}:", 1)) from None
    options = conf[group]
    valid = options.valid_interfaces
    default_interface = valid[0] if valid else None
    return Cloud(
        session=session,
        region_name=region or options.region_name,
        interface=interface or default_interface,
        source=source,
    )


def connect(
    cloud: str | None = None,
    config_file: str | None = None,
    region: str | None = None,
    interface: str | None = None,
    timeout: float | None = None,
) -> Cloud:
    """The session for a command line's ``--os-cloud``/``--config-file``/region/interface
    and ``--api-timeout`` (seconds per request; None: the cloud's, else DEFAULT_TIMEOUT)."""
    if config_file:
        if not os.path.isfile(config_file):
            raise AuthError(f"{config_file}: no such config file")
        return from_oslo_config([config_file], region=region, interface=interface, timeout=timeout)
    return from_clouds(cloud, region=region, interface=interface, timeout=timeout)
