"""The scripts that run on hosts, as files: package data read by :mod:`bake.fleet.scripts`
(with importlib.resources), never imported or run here (``state.py`` is a package module
only so that packaging ships it; it runs on the host under ``python3 -c``)."""
