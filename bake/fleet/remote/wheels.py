"""Reinstall pure-Python wheels into a venv without pip: pip's own result, pip's start-up spared.

Run by install.sh with the new release's Python (``$target/bin/python -c "$(wheels_py)"``)
in a clone (hard links of the base release): ``wheels.py install SITE BIN WHEEL...`` replaces
each wheel's distribution (pip's ``install --force-reinstall --no-deps``). Stdlib only (it
runs on the host).

Only for universal pure-Python wheels (``py3-none-any``, ``Root-Is-Purelib: true``, no
``.data`` directory): given any other, it changes nothing and exits 3, and install.sh runs
pip instead. What it does is what pip does for them: the old distribution's files
(its RECORD) unlinked, empty directories removed; the new files written beside and renamed
into place (never written through a hard link shared with the base release); console and GUI
scripts made as pip makes them (this Python in their ``#!``); modules byte-compiled; INSTALLER,
(``bbq-fab``), REQUESTED and RECORD written (RECORD with every file's sha256 and size).
"""

import base64
import compileall
import configparser
import hashlib
import importlib.util
import os
import re
import sys
import zipfile

SCRIPT = """#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from {module} import {name}
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit({call}())
"""
# main's exit status when a wheel is not one for it (install.sh then runs pip instead).
NOT_SIMPLE = 3
UNIVERSAL = re.compile(r"^[^-]+-[^-]+(-\d[^-]*)?-(py3|py2\.py3)-none-any\.whl$")


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def dist_info(archive):
    """The wheel's .dist-info directory name (at its top level)."""
    names = {n.split("/", 1)[0] for n in archive.namelist() if "/" in n}
    found = [n for n in names if n.endswith(".dist-info")]
    if len(found) != 1:
        raise ValueError(f"{archive.filename}: {len(found)} .dist-info directories")
    return found[0]


def simple(path):
    """Whether the wheel at ``path`` is universal, pure and has no .data directory."""
    if not UNIVERSAL.match(os.path.basename(path)):
        return False
    with zipfile.ZipFile(path) as archive:
        info = dist_info(archive)
        tops = {n.split("/", 1)[0] for n in archive.namelist()}
        wheel = archive.read(f"{info}/WHEEL").decode()
    pure = re.search(r"^Root-Is-Purelib:\s*true\s*$", wheel, re.M | re.I)
    return bool(pure) and not any(t.endswith(".data") for t in tops)


def installed(site):
    """{canonical name: .dist-info path} of the venv's distributions."""
    found = {}
    for entry in os.listdir(site):
        if entry.endswith(".dist-info"):
            found[canonical(entry[: -len(".dist-info")].rsplit("-", 1)[0])] = entry
    return found


def record_digest(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def uninstall(site, info):
    """Remove the distribution whose .dist-info is ``info``: its RECORD's files, then the
    directories they leave empty (never anything outside the venv)."""
    venv = os.path.dirname(os.path.dirname(os.path.dirname(site)))
    record = os.path.join(site, info, "RECORD")
    paths = set()
    with open(record, encoding="utf-8") as f:
        for line in f:
            path = line.rsplit(",", 2)[0] if line.strip() else ""
            if path:
                paths.add(os.path.normpath(os.path.join(site, path)))
    paths.add(record)
    directories = set()
    for path in paths:
        if not path.startswith(venv + os.sep):
            raise ValueError(f"{record}: {path} is outside the venv")
        if path.endswith(".py"):
            cached = importlib_cache(path)
            if os.path.exists(cached):
                os.unlink(cached)
                directories.add(os.path.dirname(cached))
        if os.path.lexists(path):
            os.unlink(path)
        directories.add(os.path.dirname(path))
    for directory in sorted(directories, key=len, reverse=True):
        while (
            directory.startswith(site + os.sep)
            and os.path.isdir(directory)
            and not os.listdir(directory)
        ):
            os.rmdir(directory)
            directory = os.path.dirname(directory)
    info_dir = os.path.join(site, info)
    if os.path.isdir(info_dir):
        for rest in os.listdir(info_dir):
            os.unlink(os.path.join(info_dir, rest))
        os.rmdir(info_dir)


def importlib_cache(path):
    return importlib.util.cache_from_source(path)


def write(path, data, mode=0o644):
    """Write ``data`` to ``path`` through a new file renamed over it (a hard link's other
    names keep the old bytes)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.bbq-new"
    with open(partial, "wb") as f:
        f.write(data)
    os.chmod(partial, mode)
    os.replace(partial, path)


def scripts(bin_dir, entry_points):
    """Console and GUI scripts of an entry_points.txt text: {path: bytes}."""
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str
    parser.read_string(entry_points)
    made = {}
    for section in ("console_scripts", "gui_scripts"):
        if not parser.has_section(section):
            continue
        for name, target in parser.items(section):
            module, _, attrs = target.split("[")[0].strip().partition(":")
            call = attrs.strip() or module.rsplit(".", 1)[-1]
            text = SCRIPT.format(
                python=sys.executable, module=module.strip(), name=call.split(".")[0], call=call
            )
            made[os.path.join(bin_dir, name.strip())] = text.encode()
    return made


def install(site, bin_dir, wheel):
    """Replace the wheel's distribution in the venv with the wheel's files."""
    with zipfile.ZipFile(wheel) as archive:
        info = dist_info(archive)
        name = canonical(info[: -len(".dist-info")].rsplit("-", 1)[0])
        old = installed(site).get(name)
        if old:
            uninstall(site, old)
        written = {}
        for member in archive.infolist():
            if member.is_dir() or member.filename == f"{info}/RECORD":
                continue
            path = os.path.normpath(os.path.join(site, member.filename))
            if not path.startswith(site + os.sep):
                raise ValueError(f"{wheel}: {member.filename} is outside site-packages")
            data = archive.read(member)
            write(path, data, 0o755 if (member.external_attr >> 16) & 0o111 else 0o644)
            written[path] = data
        entry_points = written.get(os.path.join(site, info, "entry_points.txt"), b"")
    for path, data in scripts(bin_dir, entry_points.decode()).items():
        write(path, data, 0o755)
        written[path] = data
    for extra, data in (("INSTALLER", b"bbq-fab\n"), ("REQUESTED", b"")):
        path = os.path.join(site, info, extra)
        write(path, data)
        written[path] = data
    sources = [p for p in written if p.endswith(".py") and p.startswith(site + os.sep)]
    for source in sources:
        compileall.compile_file(source, quiet=2)
        cached = importlib_cache(source)
        if os.path.exists(cached):
            with open(cached, "rb") as f:
                written[cached] = f.read()
    lines = []
    for path, data in sorted(written.items()):
        lines.append(f"{os.path.relpath(path, site)},{record_digest(data)},{len(data)}")
    lines.append(f"{info}/RECORD,,")
    write(os.path.join(site, info, "RECORD"), ("\n".join(lines) + "\n").encode())


def main(argv):
    """``install SITE BIN WHEEL...``: exit 3 (nothing changed) unless every wheel is simple."""
    if argv[:1] != ["install"] or len(argv) < 3:
        raise SystemExit("usage: wheels.py install SITE BIN WHEEL...")
    site, bin_dir, wheels = os.path.abspath(argv[1]), os.path.abspath(argv[2]), argv[3:]
    if not all(simple(w) for w in wheels):
        return NOT_SIMPLE
    for wheel in wheels:
        install(site, bin_dir, wheel)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
