"""Zaqar clients (python-zaqarclient v2) for the producer and the job's source.

Kept apart from ``bbq.sources`` so that ``bbq-send`` needs no Spark: Keystone auth through a
keystoneauth1 session when configured, else Zaqar's noauth with a project id. Every request
has a timeout (python-zaqarclient sets none by itself: a server that accepts the connection
and never answers would hold the caller forever).

>>> queue = zaqar_client("http://127.0.0.1:8888", project_id="bbq", timeout=10).queue("bbq")
"""

from __future__ import annotations

import functools

from zaqarclient.queues.v2 import client as v2

DEFAULT_TIMEOUT = 30.0


class TimedClient(v2.Client):
    """python-zaqarclient's v2 client whose HTTP requests time out after ``timeout`` s."""

    def __init__(self, url, *, timeout: float = DEFAULT_TIMEOUT, **kwargs) -> None:
        super().__init__(url, version=2, **kwargs)
        self.timeout = timeout

    def _get_transport(self, request):
        transport = super()._get_transport(request)
        session = getattr(getattr(transport, "client", None), "session", None)
        if session is not None and not getattr(session, "bbq_timeout", None):
            # The transport's requests session is called without a timeout: give it one.
            session.request = functools.partial(session.request, timeout=self.timeout)
            session.bbq_timeout = self.timeout
        return transport


def zaqar_client(
    url: str,
    project_id: str = "",
    auth: dict | None = None,
    session=None,
    timeout: float = DEFAULT_TIMEOUT,
):
    """A python-zaqarclient v2 client: Keystone session when given, else noauth."""
    if session is None and auth and auth.get("auth_type"):
        session = keystone_session_from_options(auth, timeout)
    if session is not None:
        if getattr(session, "timeout", None) is None:
            session.timeout = timeout
        return TimedClient(url, session=session, timeout=timeout)
    conf = {"auth_opts": {"backend": "noauth", "options": {"os_project_id": project_id}}}
    return TimedClient(url, conf=conf, timeout=timeout)


def keystone_session_from_options(auth: dict, timeout: float | None = None):
    """A keystoneauth1 session from plain options ({'auth_type': 'password', 'auth_url': ...})."""
    from keystoneauth1 import loading, session

    options = dict(auth)
    plugin = options.pop("auth_type")
    timeout = options.pop("timeout", None) or timeout
    insecure = options.pop("insecure", False)
    cafile = options.pop("cafile", None)
    loader = loading.get_plugin_loader(plugin)
    names = {o.dest for o in loader.get_options()}
    auth_plugin = loader.load_from_options(
        **{k: v for k, v in options.items() if k in names and v is not None}
    )
    verify = False if insecure else (cafile or True)
    return session.Session(auth=auth_plugin, verify=verify, timeout=timeout)
