"""Reinstall wheels into a hard-linked clone of a venv with pypa/installer: pip's result for
the app's own wheels, pip's start-up spared; then import the app and print its version.

Run by install.sh with the new release's Python in a clone (hard links of the base release)::

    $target/bin/python -c "$(reinstall_py)" INSTALLER_WHEEL APP WHEEL...

INSTALLER_WHEEL is the pinned ``installer`` wheel from the host's pool (bake.fleet.shipment.
INSTALLER), never installed into the venv: its modules are unpacked once beside it (a
hidden directory, byte-compiled: a zip's modules would be compiled at every import) and
imported from there. Each WHEEL replaces its distribution, as pip's ``install
--force-reinstall --no-deps`` does: the old distribution's files (its RECORD, and their
byte-code) unlinked, then the wheel installed by ``installer.install`` into the venv's
scheme (scripts naming this Python, modules byte-compiled, RECORD, INSTALLER ``bbq-fab``
and REQUESTED written). installer never overwrites a file (``overwrite_existing`` off):
every file it writes is a new one, never one written through a hard link shared with the
base release. Last, APP is imported and its installed version printed (install.sh's check,
in this Python rather than another one started for it).

Only for universal wheels (``py3-none-any``): given any other, it changes nothing and exits
3, and install.sh runs pip instead (pip checks a wheel's tags against the host).
"""

import compileall
import importlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import sys
import sysconfig
import tempfile
import zipfile

# main's exit status when a wheel is not one for it (install.sh then runs pip instead).
NOT_SIMPLE = 3
UNIVERSAL = re.compile(r"^[^-]+-[^-]+(-\d[^-]*)?-(py3|py2\.py3)-none-any\.whl$")
METADATA = {"INSTALLER": b"bbq-fab\n", "REQUESTED": b""}


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(site):
    """{canonical name: .dist-info directory name} of the venv's distributions."""
    found = {}
    for entry in os.listdir(site):
        if entry.endswith(".dist-info"):
            found[canonical(entry[: -len(".dist-info")].rsplit("-", 1)[0])] = entry
    return found


def recorded(site, info):
    """The files of the distribution whose .dist-info is ``info``: its RECORD's (with their
    byte-code), and RECORD itself; ValueError for one outside the venv."""
    venv = os.path.dirname(os.path.dirname(os.path.dirname(site)))
    record = os.path.join(site, info, "RECORD")
    paths = {record}
    with open(record, encoding="utf-8") as f:
        for line in f:
            path = line.rsplit(",", 2)[0] if line.strip() else ""
            if path:
                paths.add(os.path.normpath(os.path.join(site, path)))
    for path in list(paths):
        if not path.startswith(venv + os.sep):
            raise ValueError(f"{record}: {path} is outside the venv")
        if path.endswith(".py"):
            paths.add(importlib.util.cache_from_source(path))
    return paths


def uninstall(site, info):
    """Unlink the distribution's files, then the directories they leave empty (its
    .dist-info's other files too): installer installs, it does not uninstall."""
    directories = {os.path.join(site, info)}
    for path in recorded(site, info):
        if os.path.lexists(path):
            os.unlink(path)
        directories.add(os.path.dirname(path))
    rest = os.path.join(site, info)
    for name in os.listdir(rest) if os.path.isdir(rest) else ():
        os.unlink(os.path.join(rest, name))
    for directory in sorted(directories, key=len, reverse=True):
        while (
            directory.startswith(site + os.sep)
            and os.path.isdir(directory)
            and not os.listdir(directory)
        ):
            os.rmdir(directory)
            directory = os.path.dirname(directory)


def scheme():
    """This venv's installation scheme, as installer names its parts."""
    paths = sysconfig.get_paths()
    names = {"purelib": "purelib", "platlib": "platlib", "scripts": "scripts", "data": "data"}
    found = {key: paths[value] for key, value in names.items()}
    found["headers"] = paths["include"]
    return found


def reinstall(wheel):
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

    site = sysconfig.get_paths()["purelib"]
    destination = SchemeDictionaryDestination(
        scheme(),
        interpreter=sys.executable,
        script_kind="posix",
        bytecode_optimization_levels=(0,),
    )
    with WheelFile.open(wheel) as source:
        old = installed(site).get(canonical(source.distribution))
        if old:
            uninstall(site, old)
        install(source, destination, additional_metadata=METADATA)


def unpacked(helper):
    """The directory of the installer wheel's modules, unpacked beside it once."""
    directory, name = os.path.split(os.path.abspath(helper))
    target = os.path.join(directory, f".{name[: -len('.whl')]}")
    if not os.path.isdir(target):
        partial = tempfile.mkdtemp(prefix=".unpacking-", dir=directory)
        with zipfile.ZipFile(helper) as archive:
            archive.extractall(partial, [n for n in archive.namelist() if n.endswith(".py")])
        compileall.compile_dir(partial, quiet=2, ddir=target)
        try:
            os.rename(partial, target)
        except OSError:  # made meanwhile
            shutil.rmtree(partial)
    return target


def main(argv):
    """``INSTALLER_WHEEL APP WHEEL...``: exit 3 (nothing changed) unless every wheel is
    universal; else print APP's installed version."""
    if len(argv) < 3:
        raise SystemExit("usage: reinstall.py INSTALLER_WHEEL APP WHEEL...")
    helper, app, wheels = argv[0], argv[1], argv[2:]
    if not all(UNIVERSAL.match(os.path.basename(w)) for w in wheels):
        return NOT_SIMPLE
    sys.path.insert(0, unpacked(helper))
    for wheel in wheels:
        reinstall(wheel)
    importlib.invalidate_caches()
    importlib.import_module(app)
    print(importlib.metadata.version(app))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
