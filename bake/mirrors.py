"""Package mirrors for a build: from the environment, the spec, or this host's apt sources.

``auto`` in a spec means "the mirror this host's apt already uses": its sources are read at
run time, so no mirror host name lives in the project. A ``DIB_*`` mirror variable set in the
caller's environment wins over the spec (an operator's local mirror).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from bake.distros import Distro
from bake.errors import InputError

APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


class MirrorError(InputError):
    """A mirror could not be resolved."""


def apt_sources(paths: Iterable[Path] = APT_SOURCES) -> list[tuple[str, list[str]]]:
    """(URI, suites) of every apt source on this host, one-line and deb822 formats."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".list", ".sources")))
        elif path.is_file():
            files.append(path)
    found = []
    for file in files:
        try:
            text = file.read_text()
        except OSError:
            continue
        if file.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = _deb822(stanza)
                if "deb" in fields.get("types", "").split():
                    for uri in fields.get("uris", "").split():
                        found.append((uri, fields.get("suites", "").split()))
        else:
            for line in text.splitlines():
                line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(line) >= 3 and line[0] == "deb":
                    found.append((line[1], [line[2]]))
    return found


def _deb822(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for line in stanza.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line[0].isspace() and key:
            fields[key] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            fields[key] = value.strip()
    return fields


def host_mirror(kind: str, sources: list[tuple[str, list[str]]]) -> str | None:
    """The host's apt URI serving the main (``main``) or the security suites (``security``)."""
    for uri, suites in sources:
        security = any(s.endswith("-security") or "/updates" in s for s in suites)
        main = any(not re.search(r"-(security|updates|backports)$", s) for s in suites)
        if (kind == "security" and security) or (kind == "main" and main and not security):
            return uri.rstrip("/")
    return None


def resolve(
    distro: Distro,
    spec_mirrors: Mapping[str, str],
    environ: Mapping[str, str],
    sources: list[tuple[str, list[str]]] | None = None,
) -> dict[str, str]:
    """The mirror variables to give diskimage-builder, e.g. {'DIB_DISTRIBUTION_MIRROR': URL}.

    Order: the caller's environment, then the spec (``auto`` reads this host's apt sources).
    A kind the spec leaves out is left to diskimage-builder's default.
    """
    variables = {"main": distro.mirror_env, "security": distro.security_mirror_env}
    result = {}
    for kind, variable in variables.items():
        if variable is None:
            continue
        value = environ.get(variable) or spec_mirrors.get(kind)
        if value == "auto":
            if not distro.apt:
                raise MirrorError(
                    f"mirrors.{kind}: 'auto' reads this host's apt sources, which do not "
                    f"serve {distro.os_distro}; give a URL"
                )
            if sources is None:
                sources = apt_sources()
            value = host_mirror(kind, sources)
            if value is None:
                raise MirrorError(
                    f"mirrors.{kind}: 'auto' but this host's apt sources have no "
                    f"{kind} suite; set a URL in the spec or {variable}"
                )
        if value:
            result[variable] = value
    return result
