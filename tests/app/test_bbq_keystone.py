"""Zaqar behind real Keystone auth: bbq-send and the streaming job authenticate through a
keystoneauth1 session built from the [zaqar_auth] group; without a token Zaqar refuses."""

import pytest
from bbq.store import Store

from tests.app.helpers import send, wait_stored
from tests.fixtures.openstack import ADMIN_PASSWORD, OpenStack
from tests.fixtures.spark import job_args, streaming_query
from tests.fixtures.zaqar import ZaqarServer


@pytest.fixture(scope="module")
def keystone_zaqar(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("keystone-zaqar")
    cloud = OpenStack(workdir / "openstack")
    zaqar = None
    try:
        cloud.start_keystone_only()
        auth = {
            "auth_url": cloud.auth_url,
            "username": "admin",
            "password": ADMIN_PASSWORD,
            "project_name": "admin",
        }
        zaqar = ZaqarServer(workdir / "zaqar", keystone=auth)
        yield cloud, zaqar
    finally:
        if zaqar is not None:
            zaqar.stop()
        cloud.stop()


@pytest.mark.slow
def test_send_and_stream_through_keystone_auth(
    keystone_zaqar, spark, mongo_server, rest_server, tmp_path
):
    cloud, zaqar = keystone_zaqar
    conf_file = tmp_path / "bbq.conf"
    conf_file.write_text(
        "[zaqar_auth]\n"
        "auth_type = password\n"
        f"auth_url = {cloud.auth_url}\n"
        "username = admin\n"
        f"password = {ADMIN_PASSWORD}\n"
        "project_name = admin\n"
        "user_domain_name = Default\n"
        "project_domain_name = Default\n"
    )
    db = mongo_server.new_database()
    args = job_args(mongo_server, rest_server, db, zaqar=zaqar, queue="secured")
    with_auth = args + ["--config-file", str(conf_file)]

    # Without a token Zaqar refuses, and bbq-send says so.
    refused = send(args, "post", "--generate", "5", check=False)
    assert refused.returncode == 2
    assert "Unauthorized" in refused.stderr or "401" in refused.stderr

    out = send(with_auth, "post", "--generate", "300", "--id-prefix", "ks")
    assert "sent 300 messages" in out.stderr

    with streaming_query(spark, with_auth) as (query, _):
        store = Store(mongo_server.url, db)
        assert wait_stored(store, 300) == 300
        assert store.counts() == {"web": 100, "db": 100, "cache": 100}
        assert query.exception() is None
    # Everything was deleted from the queue, as the authenticated user sees it.
    left = send(with_auth, "pop", "--count", "10")
    assert left.stdout == ""
