"""The options table, the sample config and its generator."""

import importlib.metadata
import json
import re
import subprocess
import sys

import pytest
from bbq import config

from tests.fixtures.rest import bbq_command
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
            assert f"\n#{opt.dest} =" in sample, f"{group}.{opt.dest} missing from the sample"
            # The command line's old spelling is the file's key: not called deprecated there.
            assert f"Deprecated group/name - [{group}]/{opt.dest}\n" not in sample
    assert f"[{config.ZAQAR_AUTH_GROUP}]" in sample
    assert "\n#auth_type =" in sample


def test_config_file_and_command_line(tmp_path):
    conf_file = tmp_path / "bbq.conf"
    conf_file.write_text(
        "[stream]\nsource = socket\nbatch_interval = 0.5\n[mongodb]\nurl = mongodb://127.0.0.1:1\n"
    )
    conf = config.load(["--config-file", str(conf_file), "--stream-spark-master", "local[3]"])
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


def test_every_option_belongs_to_a_program_and_names_are_consistent():
    for group, opts in config.OPTIONS.items():
        for opt in opts:
            assert opt.bbq_programs and set(opt.bbq_programs) <= set(config.PROGRAMS)
            assert "_" not in opt.name, f"--{group}-{opt.name}: dashes on the command line"
    # Every program uses some options of its own.
    for program in config.PROGRAMS:
        assert config.program_options(program)


def test_old_command_line_spellings_still_work(tmp_path):
    conf_file = tmp_path / "bbq.conf"
    conf_file.write_text("[rest]\nretry_delay = 0.7\n[zaqar]\nproject_id = p1\n")
    conf = config.load(["--config-file", str(conf_file)])
    assert (conf.rest.retry_delay, conf.zaqar.project_id) == (0.7, "p1")
    old = ["--rest-retry_delay", "0.3", "--stream-spark_master", "local[1]"]
    conf = config.load(["--config-file", str(conf_file), *old])
    assert (conf.rest.retry_delay, conf.stream.spark_master) == (0.3, "local[1]")
    new = ["--rest-retry-delay", "0.4", "--zaqar-project-id", "p2"]
    conf = config.load(["--config-file", str(conf_file), *new])
    assert (conf.rest.retry_delay, conf.zaqar.project_id) == (0.4, "p2")


def run(program, *args, **kwargs):
    return subprocess.run(
        [bbq_command(program), *args], capture_output=True, text=True, timeout=60, **kwargs
    )


GROUP_OPTION = re.compile(r"--(?:stream|zaqar|mongodb|rest)-[a-z_-]+")


@pytest.mark.parametrize("program", list(config.PROGRAMS))
def test_each_program_help_lists_only_its_own_options(program):
    out = run(program, "--help")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert " ".join(config.PROGRAMS[program].split()) in text  # the program's description
    expected = {
        f"--{group}-{opt.name}"
        for group, opts in config.program_options(program).items()
        for opt in opts
    }
    assert set(GROUP_OPTION.findall(out.stdout)) == expected
    # oslo.log's options and --version, in every program; no old spellings shown.
    for common in ("--debug", "--log-file", "--use-journal", "--use-syslog", "--version"):
        assert common in out.stdout
    for old in ("--logfile", "_delay", "_master"):
        assert old not in out.stdout
    others = {o for p in config.PROGRAMS if p != program for o in run_expected(p)} - expected
    assert others, "the programs share every option?"
    # A program refuses another's option with one line.
    command = ["pop"] if program == config.SEND else []
    other = sorted(others)[0]
    refused = run(program, "--config-file", "/dev/null", f"{other}=1", *command)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"error: unrecognized arguments: {other}=1" in refused.stderr


def run_expected(program):
    return {
        f"--{group}-{opt.name}"
        for group, opts in config.program_options(program).items()
        for opt in opts
    }


def test_send_help_titles_its_operations():
    out = run("bbq-send", "--help")
    assert "\noperations:\n" in out.stdout
    assert "\n:\n" not in out.stdout
    for name in ("post", "pop", "claim"):
        assert f"    {name} " in out.stdout


@pytest.mark.parametrize("program", list(config.PROGRAMS))
def test_version(program):
    out = run(program, "--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == importlib.metadata.version("bbq")


COMPLETE = """
source "$1"
COMP_WORDS=({words})
COMP_CWORD={cword}
{func}
printf '%s\\n' "${{COMPREPLY[@]}}"
"""


@pytest.mark.parametrize("shell", ["bash", "zsh"])
@pytest.mark.parametrize("program", list(config.PROGRAMS))
def test_shell_completion_scripts_work(program, shell, tmp_path):
    out = run(program, "--shell_completion", shell)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    script = tmp_path / "complete.sh"
    script.write_text(out.stdout)
    if shell == "zsh":
        assert "bashcompinit" in out.stdout
        return  # no zsh here: the rest of the script is the bash one
    func = "_" + program.replace("-", "_")
    own = sorted(run_expected(program))[0]
    words = f"{program} {own[: len(own) - 2]}"
    complete = COMPLETE.format(words=words, cword=1, func=func)
    found = subprocess.run(
        ["bash", "-c", complete, "-", str(script)], capture_output=True, text=True, timeout=30
    )
    assert found.returncode == 0, found.stderr
    assert own in found.stdout.split()
    if program == "bbq-send":
        complete = COMPLETE.format(words="bbq-send post --li", cword=2, func=func)
        found = subprocess.run(
            ["bash", "-c", complete, "-", str(script)], capture_output=True, text=True, timeout=30
        )
        assert found.stdout.split() == ["--limit", "--linger"]
