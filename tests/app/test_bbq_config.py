"""The options table, the sample config and its generator."""

import json
import subprocess
import sys

import pytest
from bbq import config

from tests.support.paths import APP


def test_sample_config_is_in_sync(tmp_path):
    out = tmp_path / "bbq.conf.sample"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "oslo_config.generator",
            "--config-file",
            str(APP / "etc" / "bbq-config-generator.conf"),
            "--output-file",
            str(out),
        ],
        check=True,
        cwd=APP,
    )
    checked_in = (APP / "etc" / "bbq.conf.sample").read_text()
    assert out.read_text() == checked_in, (
        "app/etc/bbq.conf.sample is stale: run "
        "'cd app && oslo-config-generator --config-file etc/bbq-config-generator.conf'"
    )


def test_every_option_in_the_table_is_in_the_sample():
    sample = (APP / "etc" / "bbq.conf.sample").read_text()
    for group, opts in config.OPTIONS.items():
        assert f"[{group}]" in sample
        for opt in opts:
            assert f"\n#{opt.name} =" in sample, f"{group}.{opt.name} missing from the sample"
    assert f"[{config.ZAQAR_AUTH_GROUP}]" in sample
    assert "\n#auth_type =" in sample


def test_config_file_and_command_line(tmp_path):
    conf_file = tmp_path / "bbq.conf"
    conf_file.write_text(
        "[stream]\nsource = socket\nbatch_interval = 0.5\n[mongodb]\nurl = mongodb://127.0.0.1:1\n"
    )
    conf = config.load(["--config-file", str(conf_file), "--stream-spark_master", "local[3]"])
    assert conf.stream.source == "socket"
    assert conf.stream.batch_interval == 0.5
    assert conf.stream.spark_master == "local[3]"
    assert conf.mongodb.url == "mongodb://127.0.0.1:1"
    assert conf.zaqar.queue == "bbq"
    assert config.keystone_session(conf) is None  # no auth_type: noauth


def test_bad_value_is_rejected_with_the_option_name(tmp_path, capsys):
    conf_file = tmp_path / "bbq.conf"
    conf_file.write_text("[stream]\nsource = kafka\n")
    with pytest.raises(SystemExit) as exc:
        config.load(["--config-file", str(conf_file)])
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert "source" in err and "kafka" in err


def test_keystone_session_from_the_auth_group(tmp_path):
    conf_file = tmp_path / "bbq.conf"
    conf_file.write_text(
        "[zaqar_auth]\nauth_type = password\nauth_url = http://127.0.0.1:5000/v3\n"
        "username = bbq\npassword = secret\nproject_name = bbq\n"
        "user_domain_id = default\nproject_domain_id = default\ntimeout = 7\n"
    )
    conf = config.load(["--config-file", str(conf_file)])
    session = config.keystone_session(conf)
    assert session is not None
    assert session.auth.auth_url == "http://127.0.0.1:5000/v3"
    assert session.timeout == 7


def test_zaqar_source_options_carry_the_keystone_auth(tmp_path):
    from bbq import sources, zaqar

    conf_file = tmp_path / "bbq.conf"
    conf_file.write_text(
        "[zaqar]\nurl = http://127.0.0.1:8888\nqueue = q1\n"
        "[zaqar_auth]\nauth_type = password\nauth_url = http://127.0.0.1:5000/v3\n"
        "username = bbq\npassword = secret\nproject_name = bbq\n"
        "user_domain_id = default\nproject_domain_id = default\n"
    )
    conf = config.load(["--config-file", str(conf_file)])
    options = sources.zaqar_options(conf)
    assert (options["url"], options["queue"]) == ("http://127.0.0.1:8888", "q1")
    auth = json.loads(options["auth"])
    assert auth["auth_type"] == "password" and auth["username"] == "bbq"
    # The source's reader builds its keystoneauth1 session from these plain options.
    session = zaqar.keystone_session_from_options(auth)
    assert session.auth.auth_url == "http://127.0.0.1:5000/v3"
    assert session.auth._username == "bbq"
    # Without auth_type the source uses Zaqar's noauth with the configured project.
    conf = config.load(["--config-file", "/dev/null"])
    assert json.loads(sources.zaqar_options(conf)["auth"]) == {}
