"""bake.cloud.auth on the real Keystone: every credential source, and each way they go wrong."""

from __future__ import annotations

import pytest

from bake.cloud import auth
from tests.fixtures.openstack import ADMIN_PASSWORD, CLOUD_NAME, free_port


def test_clouds_yaml_session_finds_glance(cloud, openstack):
    cloud.check()
    assert cloud.endpoint("image").rstrip("/") == openstack.glance_url
    assert cloud.region_name == "RegionOne" and cloud.interface == "public"
    assert cloud.project_id()


def test_os_environment_session(openstack, monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("OS_"):
            monkeypatch.delenv(key)
    for key, value in openstack.env(OS_INTERFACE="internal").items():
        monkeypatch.setenv(key, value)

    cloud = auth.connect()

    cloud.check()
    assert cloud.source == "OS_* environment" and cloud.interface == "internal"
    assert cloud.endpoint("image").rstrip("/") == openstack.glance_url


def test_oslo_config_keystone_group(openstack, tmp_path):
    conf = tmp_path / "bake.conf"
    conf.write_text(
        "[keystone]\n"
        "auth_type = password\n"
        f"auth_url = {openstack.auth_url}\n"
        "username = admin\n"
        f"password = {ADMIN_PASSWORD}\n"
        "project_name = admin\n"
        "user_domain_name = Default\n"
        "project_domain_name = Default\n"
        "region_name = RegionOne\n"
        "valid_interfaces = internal\n"
    )

    cloud = auth.connect(config_file=str(conf))

    cloud.check()
    assert (cloud.region_name, cloud.interface) == ("RegionOne", "internal")
    assert cloud.endpoint("image").rstrip("/") == openstack.glance_url


def test_unknown_cloud_name(clouds_env):
    with pytest.raises(auth.AuthError, match=r"^cloud 'no-such-cloud': Cloud no-such-cloud was"):
        auth.connect(cloud="no-such-cloud")


def test_wrong_password(openstack, tmp_path, monkeypatch):
    monkeypatch.setenv(
        "OS_CLIENT_CONFIG_FILE", str(openstack.clouds_yaml(tmp_path / "c.yaml", password="nope"))
    )
    cloud = auth.connect(cloud=CLOUD_NAME)
    with pytest.raises(auth.AuthError, match="authentication refused by http://127.0.0.1"):
        cloud.check()


def test_unreachable_auth_url(openstack, tmp_path, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}/v3"
    monkeypatch.setenv(
        "OS_CLIENT_CONFIG_FILE", str(openstack.clouds_yaml(tmp_path / "c.yaml", auth_url=dead))
    )
    cloud = auth.connect(cloud=CLOUD_NAME)
    with pytest.raises(auth.AuthError, match=f"cannot connect to {dead}"):
        cloud.check()


def test_region_not_in_cloud(clouds_env):
    with pytest.raises(auth.AuthError, match="Region RegionTwo is not a valid region"):
        auth.connect(cloud=CLOUD_NAME, region="RegionTwo")


def test_region_without_image_endpoint(openstack, monkeypatch):
    for key, value in openstack.env(OS_REGION_NAME="RegionTwo").items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("OS_CLOUD", raising=False)
    cloud = auth.connect()
    with pytest.raises(auth.AuthError, match="RegionTwo"):
        cloud.endpoint("image")


def test_no_credentials_at_all(monkeypatch, tmp_path):
    for key in list(__import__("os").environ):
        if key.startswith("OS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(auth.AuthError, match="no credentials: pass --os-cloud"):
        auth.connect()


def test_missing_oslo_config_file(tmp_path):
    with pytest.raises(auth.AuthError, match="no such config file"):
        auth.connect(config_file=str(tmp_path / "absent.conf"))
