"""``bake prune`` on a cloud whose catalog has no compute service: a Keystone + Glance of its
own (the session's servers get the fake Nova registered), never a compute endpoint. Pruning by
age alone there is refused unless ``--allow-age-only`` (a dry run shows what it would choose)."""

from __future__ import annotations

import time
import uuid

import pytest
from keystoneauth1 import exceptions as ksa_exc

from tests.fixtures.openstack import CLOUD_NAME, OpenStack
from tests.publish.helpers import bake
from tests.support.cli import table_rows


@pytest.fixture(scope="module")
def glance_only(tmp_path_factory):
    """Keystone + Glance whose catalog lists identity and image only."""
    with OpenStack(tmp_path_factory.mktemp("glance-only")) as servers:
        servers.clouds_yaml()
        yield servers


def test_prune_without_compute_says_in_use_checks_were_skipped(glance_only, make_artifact):
    with pytest.raises(ksa_exc.EndpointNotFound):
        glance_only.admin_session().get_endpoint(service_type="compute", interface="public")
    env = {"OS_CLIENT_CONFIG_FILE": str(glance_only.dir / "clouds.yaml")}
    cloud = ["--os-cloud", CLOUD_NAME]
    name = f"bbq-nc{uuid.uuid4().hex[:8]}"
    for version in ("1.0", "2.0", "3.0"):
        artifact = make_artifact(name=name, version=version, mib=1)
        published = bake("publish", str(artifact.path), *cloud, env=env)
        assert published.returncode == 0, published.stderr
        time.sleep(1.1)  # Glance's created_at has one-second resolution

    dry = bake("prune", "--spec", name, "--keep", "1", "--dry-run", *cloud, env=env)
    refused = bake("prune", "--spec", name, "--keep", "1", "--yes", *cloud, env=env)
    age_only = ("--yes", "--allow-age-only")
    pruned = bake("prune", "--spec", name, "--keep", "1", *age_only, *cloud, env=env)
    again = bake("prune", "--spec", name, "--keep", "1", *age_only, *cloud, env=env)
    listing = bake("images", "--spec", name, *cloud, env=env)

    warning = "the catalog has no compute service (Nova), so in-use checks were skipped"
    assert dry.returncode == 0, dry.stderr
    assert warning in dry.stderr and "images chosen by age alone" in dry.stderr
    assert [line.split()[1:3] for line in dry.stdout.splitlines() if "would delete" in line] == [
        ["would", "delete"]
    ] * 2
    # pruning by age alone needs --allow-age-only (issue 14): refused in one line, exit 2
    assert refused.returncode == 2 and refused.stdout == ""
    [line] = refused.stderr.splitlines()
    assert line.startswith(f"error: {name}: the catalog has no compute service (Nova)")
    assert line.endswith("nothing pruned (pass --allow-age-only to prune by age alone)")
    assert pruned.returncode == 0, pruned.stderr
    assert warning in pruned.stderr and "images pruned by age alone" in pruned.stderr
    assert sum(" deleted " in line for line in pruned.stdout.splitlines()) == 2
    assert again.returncode == 0 and warning not in again.stderr  # nothing left to prune
    assert [line[1] for line in table_rows(listing.stdout)[1:]] == ["3.0"]
