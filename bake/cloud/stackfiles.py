"""The stack's files (``stacks/``), processed the way Heat's own client sends them.

``stacks/bbq.yaml`` (the stack), ``stacks/worker.yaml`` (one Spark worker, type ``BBQ::Worker``
in ``stacks/env.yaml``) and one cloud-config per role in ``stacks/cloud-config/``, read by the
templates with ``get_file`` and filled with ``str_replace``. python-heatclient's
``template_utils`` reads the template and every file it names, and the environments with the
templates their registry maps, into the ``files`` of the request.

Example::

    bundle = load()                               # stacks/bbq.yaml + stacks/env.yaml
    bundle.parameter_names()                      # {'worker_count', 'rest_image', ...}
    bundle.fields("bbq", {"worker_count": 3})     # keyword arguments of stacks.create
    print(bundle.dump({"keystone_password": "x"}))  # what --dry-run prints (secrets masked)
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import yaml

from bake import resources
from bake.errors import InputError

# The checkout's stacks/ when bake runs from one, else those shipped in the wheel.
STACKS_DIR = resources.shipped("stacks") or Path(__file__).resolve().parents[2] / "stacks"
TEMPLATE = "bbq.yaml"
ENVIRONMENT = "env.yaml"
CLOUD_CONFIG_DIR = "cloud-config"
# Placeholders in the role files: __NAME__ (upper case, digits, underscores).
PLACEHOLDER = re.compile(r"__[A-Z][A-Z0-9_]*__")
# The roles, the image spec each boots from, and the template parameter naming its image.
ROLES = {
    "datastore": "bbq-datastore",
    "master": "bbq-spark",
    "worker": "bbq-spark",
    "rest": "bbq-rest",
    "streaming": "bbq-streaming",
}
MASK = "******"


class StackFileError(InputError):
    """A template, environment or role file cannot be read or processed (one line)."""


def image_parameter(role: str) -> str:
    return f"{role}_image"


@dataclasses.dataclass
class Bundle:
    """A processed template: what ``stacks.create``/``update`` are given."""

    template_path: Path
    template: dict[str, Any]
    files: dict[str, str]
    environment: dict[str, Any]
    environment_files: list[str]

    def parameter_names(self) -> set[str]:
        return set((self.template.get("parameters") or {}).keys())

    def hidden_parameters(self) -> set[str]:
        params = self.template.get("parameters") or {}
        return {name for name, p in params.items() if (p or {}).get("hidden")}

    def check_parameters(self, parameters: dict[str, Any]) -> None:
        """StackFileError naming a parameter the template does not declare."""
        unknown = sorted(set(parameters) - self.parameter_names())
        if unknown:
            known = ", ".join(sorted(self.parameter_names()))
            raise StackFileError(
                f"{self.template_path}: no parameter {unknown[0]!r} (parameters: {known})"
            )

    def fields(self, name: str | None, parameters: dict[str, Any], **extra: Any) -> dict:
        """Keyword arguments of heatclient's ``stacks.create``/``update``."""
        fields: dict[str, Any] = {
            "template": self.template,
            "files": dict(self.files),
            "environment": self.environment,
            "parameters": parameters,
            **extra,
        }
        if name is not None:
            fields["stack_name"] = name
        if self.environment_files:
            fields["environment_files"] = list(self.environment_files)
        return fields

    def masked(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """The parameters with every hidden one's value masked."""
        hidden = self.hidden_parameters()
        return {
            k: (MASK if k in hidden and v not in ("", None) else v) for k, v in parameters.items()
        }

    def dump(self, parameters: dict[str, Any]) -> str:
        """The processed template, environment, files and parameters as YAML (for --dry-run)."""
        document = {
            "template": self.template,
            "environment": self.environment,
            "environment_files": self.environment_files,
            "files": {key: self.files[key] for key in sorted(self.files)},
            "parameters": self.masked(parameters),
        }
        return yaml.safe_dump(document, sort_keys=False, width=100, default_flow_style=False)


def load(
    template: str | Path | None = None, environments: list[str | Path] | None = None
) -> Bundle:
    """Read a template and its environments (default: ``stacks/bbq.yaml``, ``stacks/env.yaml``)
    with heatclient's template utilities; StackFileError (one line) if that fails."""
    from heatclient import exc as heat_exc
    from heatclient.common import template_utils

    template_path = Path(template) if template else STACKS_DIR / TEMPLATE
    if environments is None:
        environments = [template_path.parent / ENVIRONMENT] if not template else []
    for path in [template_path, *map(Path, environments)]:
        if not path.is_file():
            raise StackFileError(f"{path}: no such file")
    try:
        tpl_files, tpl = template_utils.get_template_contents(
            template_file=str(template_path.resolve())
        )
        env_files_list: list[str] = []
        env_files, env = template_utils.process_multiple_environments_and_files(
            env_paths=[str(Path(p).resolve()) for p in environments],
            env_list_tracker=env_files_list,
        )
    except heat_exc.CommandError as exc:
        raise StackFileError(_one_line(exc)) from None
    except (OSError, ValueError, yaml.YAMLError) as exc:  # unreadable nested file, bad YAML
        raise StackFileError(f"{template_path}: {_one_line(exc)}") from None
    if not isinstance(tpl, dict) or "heat_template_version" not in tpl:
        raise StackFileError(f"{template_path}: not a Heat template (no heat_template_version)")
    return Bundle(
        template_path=template_path,
        template=tpl,
        files={k: _text(v) for k, v in {**tpl_files, **env_files}.items()},
        environment=env,
        environment_files=env_files_list,
    )


def _text(content: str | bytes) -> str:
    """A file's content as text (heatclient reads ``get_file`` files as bytes)."""
    return content.decode("utf-8") if isinstance(content, bytes) else content


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def role_files(directory: Path | None = None) -> dict[str, Path]:
    """The role files: ``{role: stacks/cloud-config/<role>.yaml}``."""
    directory = directory or STACKS_DIR / CLOUD_CONFIG_DIR
    return {path.stem: path for path in sorted(directory.glob("*.yaml"))}


def placeholders(text: str) -> set[str]:
    """The ``__NAME__`` placeholders left in a text."""
    return set(PLACEHOLDER.findall(text))


def fill(text: str, values: dict[str, Any]) -> str:
    """``str_replace`` as Heat does it (longest key first), for files filled outside Heat
    (the local stack); ValueError naming a placeholder left without a value."""
    for key in sorted(values, key=len, reverse=True):
        text = text.replace(key, str(values[key]))
    left = placeholders(text)
    if left:
        raise ValueError(f"placeholders without a value: {', '.join(sorted(left))}")
    return text


def pretty(value: Any) -> str:
    """An output value for a terminal: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True)
