"""Package mirrors for a build: from the environment, the spec, or this host's apt sources.

``auto`` in a spec means "the mirror this host's apt already uses": its sources are read at
run time, so no mirror host name lives in the project. A ``DIB_*`` mirror variable set in the
caller's environment wins over the spec (an operator's local mirror).

This host's sources are read as apt reads them: one-line ``.list`` files, and deb822
``.sources`` files through python-debian's parser (:mod:`debian.deb822`), where a stanza with
``Enabled: no`` is skipped. Each source is assigned the distribution its suite belongs to
(the codename tables of distro-info-data, ``/usr/share/distro-info/*.csv``, else this host's
``/etc/os-release``), so a Debian spec is never given an Ubuntu host's mirror (the generated
CI workflow runs on Ubuntu): that is a one-line error naming the variables and the spec's
``mirrors`` field that set a mirror instead. Sources of no known distribution (third-party
repositories) are never taken.

Example::

    sources = apt_sources()                    # [AptSource(uri, suites, distribution, file)]
    resolve(DISTROS["debian"], {"main": "auto"}, os.environ, sources)
    # {'DIB_DISTRIBUTION_MIRROR': 'http://.../debian'}
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from bake.distros import Distro
from bake.errors import InputError

APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
DISTRO_INFO = Path("/usr/share/distro-info")  # distro-info-data: <distribution>.csv
OS_RELEASE = Path("/etc/os-release")
# Debian's suite aliases (distro-info-data lists codenames only, sid and experimental aside)
DEBIAN_ALIASES = {"stable", "oldstable", "oldoldstable", "testing", "unstable"}
# Suffixes of a release's other suites (updates, security, ...): the base names the release
SUITE_SUFFIX = re.compile(r"(-(security|updates|backports|proposed|backports-sloppy)|/updates)$")
# apt's false values for a boolean field (apt-pkg's StringToBool)
APT_FALSE = {"no", "false", "without", "off", "disable", "0"}


class MirrorError(InputError):
    """A mirror could not be resolved."""


@dataclasses.dataclass(frozen=True)
class AptSource:
    """One ``deb`` URI of this host's apt, its suites, and the distribution they belong to
    (``debian``, ``ubuntu``, ..., or None for a repository of no known distribution)."""

    uri: str
    suites: tuple[str, ...]
    distribution: str | None = None
    file: str = ""


def base_suite(suite: str) -> str:
    """The release a suite belongs to: ``bookworm-security`` -> ``bookworm``."""
    return SUITE_SUFFIX.sub("", suite)


def suite_distributions(
    distro_info: Path = DISTRO_INFO, os_release: Path = OS_RELEASE
) -> dict[str, str]:
    """{suite codename: distribution} from distro-info-data's tables (the file's stem is the
    distribution: debian.csv, ubuntu.csv), plus this host's own codename from os-release."""
    table: dict[str, str] = {}
    for path in sorted(distro_info.glob("*.csv")) if distro_info.is_dir() else ():
        try:
            with open(path, newline="") as handle:
                for row in csv.DictReader(handle):
                    if row.get("series"):
                        table[row["series"]] = path.stem
        except (OSError, csv.Error):
            continue
    if "debian" in table.values():
        table.update(dict.fromkeys(DEBIAN_ALIASES, "debian"))
    release = read_os_release(os_release)
    if release.get("ID") and release.get("VERSION_CODENAME"):
        table.setdefault(release["VERSION_CODENAME"], release["ID"])
    return table


def read_os_release(path: Path = OS_RELEASE) -> dict[str, str]:
    """os-release's ``KEY=value`` lines (quotes removed); empty if the file cannot be read."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            fields[key.strip()] = value.strip().strip("\"'")
    return fields


def _source_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".list", ".sources")))
        elif path.is_file():
            files.append(path)
    return files


def _deb822_sources(text: str) -> list[tuple[str, list[str]]]:
    """(URI, suites) of each enabled ``deb`` stanza of a deb822 ``.sources`` file."""
    from debian import deb822

    found = []
    for stanza in deb822.Deb822.iter_paragraphs(text.splitlines(keepends=True)):
        if stanza.get("Enabled", "yes").strip().lower() in APT_FALSE:
            continue
        if "deb" not in stanza.get("Types", "").split():
            continue
        for uri in stanza.get("URIs", "").split():
            found.append((uri, stanza.get("Suites", "").split()))
    return found


def _one_line_sources(text: str) -> list[tuple[str, list[str]]]:
    """(URI, [suite]) of each ``deb`` line of a one-line ``.list`` file (options dropped)."""
    found = []
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            found.append((words[1], [words[2]]))
    return found


def apt_sources(
    paths: Iterable[Path] = APT_SOURCES, suites: Mapping[str, str] | None = None
) -> list[AptSource]:
    """Every enabled ``deb`` source on this host, in apt's file order, each with the
    distribution of its first suite (``suites``: {codename: distribution}, default
    :func:`suite_distributions`)."""
    table = suite_distributions() if suites is None else suites
    found = []
    for file in _source_files(paths):
        try:
            text = file.read_text()
        except (OSError, UnicodeDecodeError):
            continue
        parse = _deb822_sources if file.suffix == ".sources" else _one_line_sources
        for uri, names in parse(text):
            distribution = next((table[s] for s in map(base_suite, names) if s in table), None)
            found.append(AptSource(uri, tuple(names), distribution, str(file)))
    return found


def host_mirror(kind: str, sources: Iterable[AptSource]) -> str | None:
    """The first apt URI serving the main (``main``) or the security suites (``security``)."""
    for source in sources:
        security = any(s.endswith("-security") or "/updates" in s for s in source.suites)
        main = any(not SUITE_SUFFIX.search(s) for s in source.suites)
        if (kind == "security" and security) or (kind == "main" and main and not security):
            return source.uri.rstrip("/")
    return None


def _auto(kind: str, distro: Distro, variable: str, sources: list[AptSource]) -> str:
    """The host's mirror of ``kind`` for ``distro``; MirrorError naming what to set if this
    host's apt has none (or only another distribution's)."""
    if not distro.apt:
        raise MirrorError(
            f"mirrors.{kind}: 'auto' reads this host's apt sources, which do not "
            f"serve {distro.os_distro}; give a URL"
        )
    ours = [s for s in sources if s.distribution == distro.os_distro]
    value = host_mirror(kind, ours)
    if value is not None:
        return value
    others = sorted({s.distribution for s in sources if s.distribution} - {distro.os_distro})
    if others and host_mirror(kind, [s for s in sources if s.distribution in others]):
        names = " and ".join(v for v in (distro.mirror_env, distro.security_mirror_env) if v)
        raise MirrorError(
            f"mirrors.{kind}: 'auto' takes this host's apt mirror, but this host's sources "
            f"serve {', '.join(others)}, not {distro.os_distro}: set {names}, or the spec's "
            f"`mirrors` field, to the URL of a {distro.os_distro} mirror"
        )
    raise MirrorError(
        f"mirrors.{kind}: 'auto' but this host's apt sources have no {distro.os_distro} "
        f"{kind} suite; set a URL in the spec or {variable}"
    )


def resolve(
    distro: Distro,
    spec_mirrors: Mapping[str, str],
    environ: Mapping[str, str],
    sources: list[AptSource] | None = None,
) -> dict[str, str]:
    """The mirror variables to give diskimage-builder, e.g. {'DIB_DISTRIBUTION_MIRROR': URL}.

    Order: the caller's environment, then the spec (``auto`` reads this host's apt sources,
    taking only a source of the spec's own distribution). A kind the spec leaves out is left
    to diskimage-builder's default.
    """
    variables = {"main": distro.mirror_env, "security": distro.security_mirror_env}
    result = {}
    for kind, variable in variables.items():
        if variable is None:
            continue
        value = environ.get(variable) or spec_mirrors.get(kind)
        if value == "auto":
            if sources is None and distro.apt:
                sources = apt_sources()
            value = _auto(kind, distro, variable, sources or [])
        if value:
            result[variable] = value
    return result
