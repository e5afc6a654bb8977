"""In-place updates of running bbq instances: ``fab -l`` lists the tasks.

Thin: every task hands its options to :func:`bake.fleet.tasks.run_task`. Hosts come from
``-H host1,host2`` (``[user@]host[:port]``) or from Nova (``--stack``/``--role``/``--image``,
address on ``--network``, credentials from ``--os-cloud``/``OS_*``). ``fabric.yaml`` selects
``bake.fleet.tasks.RolloutExecutor`` so that each task sees all its hosts at once. Each option
is declared once below (default and help) and shared by the tasks that take it. A failure
exits with its error's exit code (2: bad input, nothing touched; 1: a host or step failed).

Example::

    fab -H 10.0.0.5,10.0.0.6 deploy --app app --batch 2 --max-fail 0
    fab deploy --role rest --network private --os-cloud mycloud
    fab status --stack prod --role rest --network private
    fab -H 10.0.0.5 status
"""

import inspect
from pathlib import Path

from fabric import task
from invoke.exceptions import Exit

from bake.fleet import DeployError, tasks

# name: (default, help). Every task takes the host options; deploy takes its own as well.
HOST_OPTIONS = {
    "hosts": (None, "hosts, comma-separated [user@]host[:port] (also fab -H)"),
    "stack": (None, "Nova: servers whose metadata bbq_stack is this (a Heat stack's name)"),
    "role": (None, "Nova: servers whose metadata bbq_role is this"),
    "image": (None, "Nova: servers running this image id"),
    "network": (None, "Nova: the network whose address to use"),
    "os_cloud": (None, "cloud in clouds.yaml (default: $OS_CLOUD or the OS_* variables)"),
    "user": ("root", "SSH user (root, or a user with passwordless sudo)"),
    "known_hosts": ("~/.ssh/known_hosts", "known_hosts file host keys are checked against"),
    "key": (None, "SSH private key file (repeatable)"),
    "accept_new_host_keys": (False, "trust and record host keys seen for the first time"),
    "batch": (1, "hosts at a time"),
    "max_fail": (0, "failed hosts tolerated before the rollout stops"),
}
DEPLOY_OPTIONS = {
    "app": (None, "the app source directory (default: app/ beside this fabfile)"),
    "keep": (tasks.DEFAULT_KEEP, "releases kept per host"),
    "mode": (
        "clone",
        "clone (hard-linked copy of the current venv, changed wheels reinstalled) or fresh",
    ),
    "health_timeout": (
        int(tasks.HEALTH_TIMEOUT),
        "seconds to wait for the units and the health endpoint",
    ),
}


def _task(action, doc, options):
    """A fab task running ``action`` over all its hosts with ``options`` (name: default, help)."""

    def body(c, **given):
        given["key"] = given["key"] or ()
        if "app" in given:
            given["app"] = given["app"] or str(Path(__file__).parent / "app")
        try:
            tasks.run_task(action, **given)
        except DeployError as exc:
            raise Exit(f"fab {action}: {exc}", code=exc.exit_code) from None

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter("c", kind)]
    params += [
        inspect.Parameter(name, kind, default=default) for name, (default, _) in options.items()
    ]
    body.__signature__ = inspect.Signature(params)
    body.__doc__, body.__name__, body.all_hosts = doc, action, True
    helps = {name.replace("_", "-"): text for name, (_, text) in options.items()}
    return task(name=action, help=helps, iterable=["key"], auto_shortflags=False)(body)


deploy = _task(
    "deploy",
    "Ship the app to every host: new wheels only, atomic switch, health check, rollback.",
    {**HOST_OPTIONS, **DEPLOY_OPTIONS},
)
rollback = _task("rollback", "Switch every host back to its previous release.", HOST_OPTIONS)
status = _task(
    "status", "Show each host's release, units and health (changes nothing).", HOST_OPTIONS
)
restart = _task("restart", "Restart the bbq units on every host and check health.", HOST_OPTIONS)
releases = _task("releases", "List the releases installed on every host.", HOST_OPTIONS)
