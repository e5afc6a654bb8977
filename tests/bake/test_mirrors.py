"""Mirror resolution: environment over spec, `auto` from this host's apt sources (read with
python-debian's deb822 parser, `Enabled: no` honoured, never another distribution's mirror).

Every sources file, distro-info table and os-release here is synthetic (tmp_path)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bake.distros import DISTROS
from bake.mirrors import (
    AptSource,
    MirrorError,
    apt_sources,
    base_suite,
    host_mirror,
    resolve,
    suite_distributions,
)

REPO = Path(__file__).resolve().parents[2]
SUITES = {"bookworm": "debian", "trixie": "debian", "jammy": "ubuntu", "noble": "ubuntu"}

DEB822 = """\
# deb822 sources, as Debian 12 writes them
Types: deb
# a comment inside the stanza
URIs: http://main.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGPL0BUBEADmW5NdOOHwPIJlgPu6JDcKw/NZJPR8lsD3K87ZM18gzyQZJD+w
 -----END PGP PUBLIC KEY BLOCK-----

Types: deb-src
URIs: http://src.invalid/debian
Suites: bookworm

Types: deb
URIs: http://sec.invalid/debian-security/
Suites: bookworm-security
Components: main
"""
DISABLED = """\
Types: deb
URIs: http://disabled.invalid/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb
URIs: http://disabled-too.invalid/debian-security
Suites: bookworm-security
Enabled: false
"""
UBUNTU_LIST = """\
# a comment
deb [arch=amd64 signed-by=/k.gpg] http://one.invalid/ubuntu jammy main
deb http://one.invalid/ubuntu jammy-security main
"""
UBUNTU_DEB822 = """\
Types: deb
URIs: http://archive.invalid/ubuntu/
Suites: noble noble-updates noble-backports
Components: main universe restricted multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg

Types: deb
URIs: http://security.invalid/ubuntu/
Suites: noble-security
Components: main universe restricted multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg
"""
THIRD_PARTY = """\
Types: deb
URIs: https://vendor.invalid/node_20.x
Suites: nodistro
Components: main
"""


@pytest.fixture
def sources(tmp_path):
    (tmp_path / "00-disabled.sources").write_text(DISABLED)
    (tmp_path / "debian.sources").write_text(DEB822)
    (tmp_path / "ubuntu.list").write_text(UBUNTU_LIST)
    (tmp_path / "ignored.txt").write_text("deb http://nope.invalid/ x main\n")
    return apt_sources([tmp_path], SUITES)


def test_reads_deb822_and_one_line_sources(sources, tmp_path):
    assert [(s.uri, s.suites, s.distribution) for s in sources] == [
        ("http://main.invalid/debian", ("bookworm", "bookworm-updates"), "debian"),
        ("http://sec.invalid/debian-security/", ("bookworm-security",), "debian"),
        ("http://one.invalid/ubuntu", ("jammy",), "ubuntu"),
        ("http://one.invalid/ubuntu", ("jammy-security",), "ubuntu"),
    ]
    assert sources[0].file == str(tmp_path / "debian.sources")


def test_enabled_no_stanzas_are_skipped(tmp_path):
    (tmp_path / "a.sources").write_text(DISABLED)
    assert apt_sources([tmp_path], SUITES) == []
    (tmp_path / "a.sources").write_text(DISABLED.replace("Enabled: no", "Enabled: yes"))
    assert [s.uri for s in apt_sources([tmp_path], SUITES)] == ["http://disabled.invalid/debian"]
    with pytest.raises(MirrorError, match="no debian main suite"):
        resolve(DISTROS["debian"], {"main": "auto"}, {}, apt_sources([tmp_path / "x"], SUITES))


def test_host_mirror_picks_main_and_security(sources):
    assert host_mirror("main", sources) == "http://main.invalid/debian"
    assert host_mirror("security", sources) == "http://sec.invalid/debian-security"


def test_auto_resolves_from_host_and_environment_wins(sources):
    debian = DISTROS["debian"]
    spec = {"main": "auto", "security": "auto"}
    assert resolve(debian, spec, {}, sources) == {
        "DIB_DISTRIBUTION_MIRROR": "http://main.invalid/debian",
        "DIB_DEBIAN_SECURITY_MIRROR": "http://sec.invalid/debian-security",
    }
    env = {"DIB_DISTRIBUTION_MIRROR": "http://local.invalid/debian"}
    assert resolve(debian, spec, env, sources)["DIB_DISTRIBUTION_MIRROR"] == (
        "http://local.invalid/debian"
    )


def test_each_distribution_takes_its_own_mirror(sources):
    ubuntu = resolve(DISTROS["ubuntu"], {"main": "auto"}, {}, sources)
    assert ubuntu == {"DIB_DISTRIBUTION_MIRROR": "http://one.invalid/ubuntu"}


def test_debian_spec_on_an_ubuntu_host_is_refused(tmp_path):
    (tmp_path / "ubuntu.sources").write_text(UBUNTU_DEB822)
    (tmp_path / "vendor.sources").write_text(THIRD_PARTY)
    host = apt_sources([tmp_path], SUITES)
    assert [s.distribution for s in host] == ["ubuntu", "ubuntu", None]

    with pytest.raises(MirrorError) as caught:
        resolve(DISTROS["debian"], {"main": "auto", "security": "auto"}, {}, host)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("mirrors.main: 'auto' takes this host's apt mirror")
    assert "serve ubuntu, not debian" in message
    assert "DIB_DISTRIBUTION_MIRROR and DIB_DEBIAN_SECURITY_MIRROR" in message
    assert "the spec's `mirrors` field" in message
    # the environment's own mirrors are taken without reading the host's
    env = {
        "DIB_DISTRIBUTION_MIRROR": "http://d.invalid/debian",
        "DIB_DEBIAN_SECURITY_MIRROR": "http://d.invalid/debian-security",
    }
    assert resolve(DISTROS["debian"], {"main": "auto", "security": "auto"}, env, host) == env
    assert resolve(DISTROS["ubuntu"], {"main": "auto"}, {}, host) == {
        "DIB_DISTRIBUTION_MIRROR": "http://archive.invalid/ubuntu"
    }


def test_third_party_repositories_are_never_taken(tmp_path):
    (tmp_path / "a-vendor.sources").write_text(THIRD_PARTY)
    (tmp_path / "debian.sources").write_text(DEB822)
    host = apt_sources([tmp_path], SUITES)
    assert resolve(DISTROS["debian"], {"main": "auto"}, {}, host) == {
        "DIB_DISTRIBUTION_MIRROR": "http://main.invalid/debian"
    }


def test_suite_table_from_distro_info_and_os_release(tmp_path):
    info = tmp_path / "distro-info"
    info.mkdir()
    (info / "debian.csv").write_text(
        "version,codename,series,created,release,eol\n12,Bookworm,bookworm,2021-08-14\n"
    )
    (info / "ubuntu.csv").write_text(
        "version,codename,series,created,release,eol\n24.04 LTS,Noble Numbat,noble,2023-10-12\n"
    )
    os_release = tmp_path / "os-release"
    os_release.write_text('ID=ubuntu\nVERSION_CODENAME="zesty2"\n')

    table = suite_distributions(info, os_release)

    assert table["bookworm"] == table["stable"] == table["unstable"] == "debian"
    assert table["noble"] == "ubuntu"
    assert table["zesty2"] == "ubuntu"  # this host's own release, newer than its tables
    assert suite_distributions(tmp_path / "none", tmp_path / "none") == {}


def test_base_suite():
    assert [base_suite(s) for s in ("bookworm-security", "noble-updates", "buster/updates")] == [
        "bookworm",
        "noble",
        "buster",
    ]


def test_spec_url_and_left_out_kinds(sources):
    got = resolve(DISTROS["debian"], {"main": "http://spec.invalid/debian"}, {}, sources)
    assert got == {"DIB_DISTRIBUTION_MIRROR": "http://spec.invalid/debian"}


def test_auto_without_a_source_is_a_clear_error():
    sid = [AptSource("http://x.invalid/d", ("sid",), "debian")]
    with pytest.raises(MirrorError, match="mirrors.security: 'auto' but this host's apt"):
        resolve(DISTROS["debian"], {"security": "auto"}, {}, sid)
    with pytest.raises(MirrorError, match="do not serve centos; give a URL"):
        resolve(DISTROS["centos"], {"main": "auto"}, {}, [])


def _unshare_works() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = ["unshare", "--mount", "--propagation", "private", "mount", "--bind", "/", "/mnt"]
    return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs root and unshare --mount")
def test_cli_on_an_ubuntu_host_names_the_spec_file_and_the_override_variables(tmp_path):
    """The real ``bake fingerprint`` of a Debian spec (mirrors: auto) on a host whose apt
    serves Ubuntu only: this host's /etc/apt sources and os-release replaced by synthetic ones
    in a private mount namespace (nothing changes outside it): one line, exit 2."""
    sources = tmp_path / "sources.list.d"
    sources.mkdir()
    (sources / "ubuntu.sources").write_text(UBUNTU_DEB822)
    (tmp_path / "sources.list").write_text("")
    (tmp_path / "os-release").write_text("ID=ubuntu\nVERSION_CODENAME=noble\n")
    spec = REPO / "image-specs" / "base.yaml"
    bake = Path(sys.executable).parent / "bake"
    script = (
        f"mount --bind {sources} /etc/apt/sources.list.d && "
        f"if [ -e /etc/apt/sources.list ]; then "
        f"mount --bind {tmp_path}/sources.list /etc/apt/sources.list; fi && "
        f"mount --bind {tmp_path}/os-release /etc/os-release && "
        f'exec {bake} fingerprint "$0"'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(spec)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {spec}: mirrors.main: 'auto' takes this host's apt mirror")
    assert "serve ubuntu, not debian" in line
    assert "DIB_DISTRIBUTION_MIRROR and DIB_DEBIAN_SECURITY_MIRROR" in line
