"""Build hook: ship the checkout's elements/, image-specs/ and stacks/ inside ``bake``.

Everything else is declared in setup.cfg (metadata, packages, dependencies) and pyproject.toml
(the build system, the version from git tags with setuptools-scm). The directories live at the
top of the checkout, beside ``bake/``, where diskimage-builder's and the specs' own
conventions put them; a wheel carries them as ``bake/_data/elements``,
``bake/_data/image-specs`` and ``bake/_data/stacks``, where :mod:`bake.resources` finds
them when ``bake`` runs outside a checkout. File modes are kept: an element script's exec bit
decides whether diskimage-builder runs it (and is part of the fingerprint).
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

TOP = Path(__file__).resolve().parent
SHIPPED = ("elements", "image-specs", "stacks")  # top-level directories -> bake/_data/<name>


def _shipped_files():
    """(source, path inside the package's _data/) for every file of the shipped directories."""
    for name in SHIPPED:
        for source in sorted((TOP / name).rglob("*")):
            if source.is_file() and "__pycache__" not in source.parts:
                yield source, Path(name) / source.relative_to(TOP / name)


class BuildPyWithData(build_py):
    """build_py, then the shipped directories copied (modes kept) into bake/_data/."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install runs from the checkout, which has them already
        for source, relative in _shipped_files():
            target = Path(self.build_lib, "bake", "_data", relative)
            self.mkpath(str(target.parent))
            self.copy_file(str(source), str(target), preserve_mode=True)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        data = Path(self.build_lib, "bake", "_data")
        return outputs + [str(data / relative) for _, relative in _shipped_files()]


setup(cmdclass={"build_py": BuildPyWithData})
