"""Where ``bake`` finds our elements, image specs and stack templates.

In a checkout they are the top-level ``elements/``, ``image-specs/`` and ``stacks/``. An
installed wheel carries copies of them inside the package, as ``bake/_data/<name>`` (see
``setup.py``), laid out like a checkout, so the same rules find them:

1. ``--elements-dir`` when given;
2. ``elements/`` of the first directory at or above the spec's own directory that has one
   (the checkout holding the spec, or ``bake/_data`` for a shipped spec);
3. ``elements/`` of the current directory, when it has one (today's default);
4. the elements that came with this ``bake`` (:func:`shipped`): ``bake/_data/elements`` of
   an installed wheel, the checkout's own for a checkout's ``bake`` (editable install).

Inside a checkout its own directories win; outside one, ``bake validate`` checks the
shipped specs and ``bake build base --dry-run`` finds ``base.yaml`` among them.

Example::

    elements_dir(Path("image-specs/base.yaml"))   # elements/ beside image-specs/
    specs_dir()                                  # ./image-specs, else the shipped specs
    spec_path("base")                            # a shipped spec by name, when no such file
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

PACKAGE = "bake"
DATA = "_data"  # bake/_data/<name> in a wheel (setup.py copies the checkout's directories)
ELEMENTS = "elements"
SPECS = "image-specs"
STACKS = "stacks"


def project_root(start: Path) -> Path | None:
    """The first directory at or above ``start`` that has an ``elements/`` directory."""
    start = start.resolve()
    for directory in (start, *start.parents):
        if (directory / ELEMENTS).is_dir():
            return directory
    return None


def shipped_root() -> Path | None:
    """The directory holding the elements, specs and stacks that came with this ``bake``.

    ``bake/_data`` of an installed wheel; for ``bake`` imported from a checkout (an editable
    install, or the checkout on ``sys.path``), the checkout itself; None when neither exists
    (e.g. ``bake`` imported from a zip file).
    """
    package = importlib.resources.files(PACKAGE)
    if not isinstance(package, Path):
        return None
    for root in (package / DATA, package.parent):
        if (root / ELEMENTS).is_dir() and (root / SPECS).is_dir():
            return root
    return None


def shipped(name: str) -> Path | None:
    """``elements``, ``image-specs`` or ``stacks`` as shipped with this ``bake`` (or None)."""
    root = shipped_root()
    if root is None or not (root / name).is_dir():
        return None
    return root / name


def elements_dir(spec_path: Path, cwd: Path | None = None) -> Path:
    """Our elements for a spec: its checkout's (or shipped tree's), the current directory's,
    else the shipped ones; when none exists, ``./elements`` (validation then names it)."""
    cwd = cwd or Path.cwd()
    root = project_root(spec_path.parent)
    if root is not None:
        return root / ELEMENTS
    if (cwd / ELEMENTS).is_dir():
        return cwd / ELEMENTS
    return shipped(ELEMENTS) or cwd / ELEMENTS


def specs_dir(cwd: Path | None = None) -> Path:
    """``image-specs/`` of the current directory when it has one (relative, as users and
    messages name it), else the shipped specs."""
    if cwd is None and Path(SPECS).is_dir():
        return Path(SPECS)
    cwd = cwd or Path.cwd()
    if (cwd / SPECS).is_dir():
        return cwd / SPECS
    return shipped(SPECS) or cwd / SPECS


def spec_path(given: str | Path, cwd: Path | None = None) -> Path:
    """A spec named on the command line: the path as given when it exists; else, for a bare
    name (``base`` or ``base.yaml``), that spec of :func:`specs_dir`; else the path as given
    (the loader then says it is not found)."""
    path = Path(given)
    if path.exists() or path.parent != Path(".") or not path.name:
        return path
    directory = specs_dir(cwd)
    for candidate in (directory / path.name, directory / f"{path.name}.yaml"):
        if candidate.is_file():
            return candidate
    return path


def version() -> str:
    """This ``bake``'s version (from git tags when it was built: setuptools-scm), as
    installed; ``unknown`` when ``bake`` runs from a checkout that was never installed."""
    from importlib import metadata

    try:
        return metadata.version("bbq-bake")
    except metadata.PackageNotFoundError:
        return "unknown"
