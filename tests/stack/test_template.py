"""The stack's files (stacks/), as Heat's own client processes them, without a cloud.

The role files are checked against cloud-init's own JSON schema (``schema-cloud-config-v1``)
from Debian's cloud-init package, the cloud-init our Debian images carry: fetched with
``apt-get download`` and unpacked (not installed) once per session, as the pip package
``cloud-init`` does not exist. cloud-init 22.4's schema does not reject unknown top-level
keys, so the tests also require every key to be one the schema declares.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from bake.cloud import stackfiles as sf  # noqa: E402

REPO = Path(_REPO)
BAKE = Path(sys.executable).parent / "bake"
# What Heat's WaitConditionHandle gives as curl_cli (heat/engine/resources/openstack/heat/
# wait_condition_handle.py): quotes and ": " included, so the filled file must stay YAML.
CURL_CLI = (
    "curl -i -X POST -H 'X-Auth-Token: gAAAAABn0abc' -H 'Content-Type: application/json' "
    "-H 'Accept: application/json' http://192.0.2.10:8004/v1/p1/stacks/bbq/s1/resources/"
    "master_handle/signal"
)
ROLES = ("datastore", "master", "worker", "rest", "streaming")


@pytest.fixture(scope="session")
def bundle() -> sf.Bundle:
    return sf.load()


def schema_problems(document: dict, schema: dict) -> list[str]:
    """cloud-init's schema errors, plus top-level keys the schema does not declare."""
    import jsonschema

    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    problems = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(document)]
    known: set[str] = set()
    for definition in schema["$defs"].values():
        known |= set((definition.get("properties") or {}).keys())
    problems += [f"unknown key {key!r}" for key in document if key not in known]
    return problems


def servers(template: dict) -> dict[str, dict]:
    """The OS::Nova::Server resources of a template: {resource name: properties}."""
    return {
        name: r["properties"]
        for name, r in template["resources"].items()
        if r["type"] == "OS::Nova::Server"
    }


def nested_worker(bundle: sf.Bundle) -> dict:
    url = bundle.environment["resource_registry"]["BBQ::Worker"]
    return yaml.safe_load(bundle.files[url])


def role_of(props: dict) -> str:
    return props["metadata"]["bbq_role"]


def user_data_parts(bundle: sf.Bundle) -> list[tuple[str, str, dict]]:
    """(role, role file text, str_replace params) of every server, nested worker included."""
    parts = []
    for template in (bundle.template, nested_worker(bundle)):
        for props in servers(template).values():
            replace = props["user_data"]["str_replace"]
            text = bundle.files[replace["template"]["get_file"]]
            parts.append((role_of(props), text, replace["params"]))
    return parts


def test_heatclient_reads_template_environment_and_every_file(bundle):
    assert bundle.template["heat_template_version"] == "2021-04-16"
    names = {Path(url).name for url in bundle.files}
    assert {"worker.yaml", *(f"{r}.yaml" for r in ROLES)} <= names
    worker_url = bundle.environment["resource_registry"]["BBQ::Worker"]
    assert worker_url in bundle.files and worker_url.endswith("/stacks/worker.yaml")
    assert bundle.environment_files and bundle.environment_files[0].endswith("/stacks/env.yaml")
    group = bundle.template["resources"]["workers"]
    assert group["type"] == "OS::Heat::ResourceGroup"
    assert group["properties"]["resource_def"]["type"] == "BBQ::Worker"


def test_one_server_per_role_with_metadata_and_a_wait_condition(bundle):
    found = sorted(role_of(p) for p in [*servers(bundle.template).values()])
    assert found == ["datastore", "master", "rest", "streaming"]
    worker = nested_worker(bundle)
    for template in (bundle.template, worker):
        resources = template["resources"]
        for props in servers(template).values():
            assert set(props["metadata"]) >= {"bbq_role", "bbq_stack"}
            assert props["user_data_format"] == "RAW"
            signal = props["user_data"]["str_replace"]["params"]["__SIGNAL__"]
            handle = signal["get_attr"][0]
            assert signal["get_attr"][1] == "curl_cli"
            waits = [
                r
                for r in resources.values()
                if r["type"] == "OS::Heat::WaitCondition"
                and r["properties"]["handle"] == {"get_resource": handle}
            ]
            assert len(waits) == 1, f"{role_of(props)}: one wait condition on {handle}"
    top = bundle.template["resources"]
    assert top["master"]["properties"]["metadata"]["bbq_stack"] == {"get_param": "OS::stack_name"}
    assert set(top["streaming"]["depends_on"]) == {
        "datastore_ready",
        "master_ready",
        "workers",
        "rest_ready",
    }


def test_every_placeholder_has_a_value_and_every_value_a_placeholder(bundle):
    roles = set()
    for role, text, params in user_data_parts(bundle):
        roles.add(role)
        assert sf.placeholders(text) == set(params), role
        assert all(sf.PLACEHOLDER.fullmatch(key) for key in params), role
    assert roles == set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_role_file_is_valid_cloud_config_as_written_and_filled(bundle, cloud_config_schema, role):
    (text, params) = next((t, p) for r, t, p in user_data_parts(bundle) if r == role)
    assert text.startswith("#cloud-config\n")
    values = {key: "10.20.0.7" for key in params}
    values["__SIGNAL__"] = CURL_CLI
    values["__KEYSTONE_PASSWORD__"] = "p@ss: 'word' #1"
    if "__DATA_VOLUME_ID__" in values:
        values["__DATA_VOLUME_ID__"] = ""
    filled = sf.fill(text, values)
    assert sf.placeholders(filled) == set()
    for candidate in (text, filled):
        document = yaml.safe_load(candidate)
        assert schema_problems(document, cloud_config_schema) == []
    document = yaml.safe_load(filled)
    ready = [f for f in document["write_files"] if f["path"] == "/usr/local/sbin/bbq-role-ready"]
    assert len(ready) == 1 and CURL_CLI in ready[0]["content"]
    assert '"status": "SUCCESS"' in ready[0]["content"]
    assert '"status": "FAILURE"' in ready[0]["content"]
    assert any("bbq-role-ready" in str(cmd) for cmd in document["runcmd"])


def test_schema_check_catches_a_bad_cloud_config(cloud_config_schema):
    """The check used above can fail: a wrong type and an unknown key are reported."""
    bad = {"runcmd": "not a list", "write_files": [{"content": "x"}], "bogus_key": 1}
    problems = schema_problems(bad, cloud_config_schema)
    assert any("runcmd" in p for p in problems)
    assert any("path" in p for p in problems)
    assert "unknown key 'bogus_key'" in problems


def test_fill_names_a_placeholder_left_without_value():
    with pytest.raises(ValueError, match="__B__"):
        sf.fill("x: __A__ __B__", {"__A__": 1})


def referenced_params(value) -> set[str]:
    """Every parameter a value refers to with get_param (at any depth)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "get_param":
                found.add(inner if isinstance(inner, str) else inner[0])
            else:
                found |= referenced_params(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= referenced_params(inner)
    return found


def test_no_hidden_parameter_in_outputs(bundle):
    hidden = bundle.hidden_parameters()
    assert hidden == {"keystone_password"}
    outputs = bundle.template["outputs"]
    assert {"spark_master_url", "spark_ui_url", "rest_url", "dashboard_url", "servers"} <= set(
        outputs
    )
    assert referenced_params(outputs) & hidden == set()
    # nor an attribute that would carry it (a server's user data or full 'show')
    text = json.dumps(outputs)
    assert "user_data" not in text and '"show"' not in text


def test_images_constrained_to_glance_and_flavors_to_nova(bundle):
    params = bundle.template["parameters"]
    for role in ROLES:
        constraints = params[sf.image_parameter(role)]["constraints"]
        assert {"custom_constraint": "glance.image"} in constraints
        assert {"custom_constraint": "nova.flavor"} in params[f"{role}_flavor"]["constraints"]


def test_internal_ports_open_only_between_members(bundle):
    resources = bundle.template["resources"]
    internal = resources["internal_sg"]["properties"]["rules"]
    assert all(rule["remote_mode"] == "remote_group_id" for rule in internal)
    opened = {(r.get("port_range_min"), r.get("port_range_max")) for r in internal}
    assert {(7077, 7078), (8080, 8081), (27017, 27017), (7100, 7116), (7200, 7216)} <= opened
    outside = [
        (r["port_range_min"], r["port_range_max"])
        for name in ("ssh_sg", "dashboard_sg")
        for r in resources[name]["properties"]["rules"]
    ]
    assert sorted(outside) == [(22, 22), (8780, 8780)]


# -- bake stack without a cloud ----------------------------------------------------------


def bake(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    return subprocess.run(
        [str(BAKE), *args],
        cwd=REPO,
        env={**base, "OS_CLIENT_CONFIG_FILE": "/nonexistent", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


ALL_IMAGES = [arg for role in ROLES for arg in ("--image", f"{role}=img-{role}")]


def test_dry_run_prints_processed_template_environment_and_masked_parameters():
    result = bake(
        "stack",
        "create",
        "s1",
        "--dry-run",
        *ALL_IMAGES,
        "--workers",
        "3",
        "-P",
        "network=private",
        "-P",
        "keystone_password=s3cret-value",
    )
    assert result.returncode == 0, result.stderr
    assert "s3cret-value" not in result.stdout + result.stderr
    document = yaml.safe_load(result.stdout)
    assert set(document) == {"template", "environment", "environment_files", "files", "parameters"}
    params = document["parameters"]
    assert params["keystone_password"] == sf.MASK
    assert params["worker_count"] == 3 and params["network"] == "private"
    assert params["rest_image"] == "img-rest"
    assert document["template"]["heat_template_version"] == "2021-04-16"
    assert "BBQ::Worker" in document["environment"]["resource_registry"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--image", "gateway=x"], "no role 'gateway'"),
        (["--image", "rest"], "--image 'rest': expected KEY=VALUE"),
        (["-P", "no_such=1"], "no parameter 'no_such'"),
        (["--workers", "0"], "--workers: at least 1"),
        (["--template", "/nonexistent/bbq.yaml"], "/nonexistent/bbq.yaml: no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = bake("stack", "create", "s1", "--dry-run", *ALL_IMAGES, *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_no_credentials_is_one_line_and_exit_2(tmp_path):
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds: {}\n")  # a clouds.yaml without this cloud, and no OS_* auth
    result = bake("stack", "list", env={"OS_CLIENT_CONFIG_FILE": str(clouds)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "credentials" in lines[0], lines


def test_missing_clouds_file_is_one_line_and_exit_2():
    result = bake("stack", "list")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: OS_CLIENT_CONFIG_FILE=/nonexistent: no such file"], lines
