"""Mirror resolution: environment over spec, `auto` from this host's apt sources."""

from __future__ import annotations

import pytest

from bake.distros import DISTROS
from bake.mirrors import MirrorError, apt_sources, host_mirror, resolve

DEB822 = """\
Types: deb
URIs: http://main.invalid/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb-src
URIs: http://src.invalid/debian
Suites: bookworm

Types: deb
URIs: http://sec.invalid/debian-security/
Suites: bookworm-security
Components: main
"""
ONE_LINE = """\
# a comment
deb [arch=amd64 signed-by=/k.gpg] http://one.invalid/ubuntu jammy main
deb http://one.invalid/ubuntu jammy-security main
"""


@pytest.fixture
def sources(tmp_path):
    (tmp_path / "debian.sources").write_text(DEB822)
    (tmp_path / "ubuntu.list").write_text(ONE_LINE)
    (tmp_path / "ignored.txt").write_text("deb http://nope.invalid/ x main\n")
    return apt_sources([tmp_path])


def test_reads_deb822_and_one_line_sources(sources):
    assert sources == [
        ("http://main.invalid/debian", ["bookworm", "bookworm-updates"]),
        ("http://sec.invalid/debian-security/", ["bookworm-security"]),
        ("http://one.invalid/ubuntu", ["jammy"]),
        ("http://one.invalid/ubuntu", ["jammy-security"]),
    ]


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


def test_spec_url_and_left_out_kinds(sources):
    got = resolve(DISTROS["debian"], {"main": "http://spec.invalid/debian"}, {}, sources)
    assert got == {"DIB_DISTRIBUTION_MIRROR": "http://spec.invalid/debian"}


def test_auto_without_a_source_is_a_clear_error():
    with pytest.raises(MirrorError, match="mirrors.security: 'auto' but this host's apt"):
        resolve(DISTROS["debian"], {"security": "auto"}, {}, [("http://x.invalid/d", ["sid"])])
    with pytest.raises(MirrorError, match="do not serve centos; give a URL"):
        resolve(DISTROS["centos"], {"main": "auto"}, {}, [])
