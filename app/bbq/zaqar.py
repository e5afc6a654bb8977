"""Zaqar clients (python-zaqarclient v2) for the producer and the job's source.

Kept apart from ``bbq.sources`` so that ``bbq-send`` needs no Spark: Keystone auth through a
keystoneauth1 session when configured, else Zaqar's noauth with a project id.

>>> queue = zaqar_client("http://127.0.0.1:8888", project_id="bbq").queue("bbq")
"""

from __future__ import annotations


def zaqar_client(url: str, project_id: str = "", auth: dict | None = None, session=None):
    """A python-zaqarclient v2 client: Keystone session when given, else noauth."""
    from zaqarclient.queues.v2 import client

    if session is None and auth and auth.get("auth_type"):
        session = keystone_session_from_options(auth)
    if session is not None:
        return client.Client(url, version=2, session=session)
    conf = {"auth_opts": {"backend": "noauth", "options": {"os_project_id": project_id}}}
    return client.Client(url, version=2, conf=conf)


def keystone_session_from_options(auth: dict):
    """A keystoneauth1 session from plain options ({'auth_type': 'password', 'auth_url': ...})."""
    from keystoneauth1 import loading, session

    options = dict(auth)
    plugin = options.pop("auth_type")
    timeout = options.pop("timeout", None)
    insecure = options.pop("insecure", False)
    cafile = options.pop("cafile", None)
    loader = loading.get_plugin_loader(plugin)
    names = {o.dest for o in loader.get_options()}
    auth_plugin = loader.load_from_options(
        **{k: v for k, v in options.items() if k in names and v is not None}
    )
    verify = False if insecure else (cafile or True)
    return session.Session(auth=auth_plugin, verify=verify, timeout=timeout)
