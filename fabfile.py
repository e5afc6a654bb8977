"""In-place updates of running bbq instances: ``fab -l`` lists the tasks.

Thin: every task hands its options to :func:`bake.fleet.tasks.run_task`. Hosts come from
``-H host1,host2`` (``[user@]host[:port]``) or from Nova (``--stack``/``--role``/``--image``,
address on ``--network``, credentials from ``--os-cloud``/``OS_*`` or ``--config-file``).
``fabric.yaml`` selects ``bake.fleet.tasks.RolloutExecutor`` so that each task sees all its
hosts at once. Every option is declared once, in :mod:`bake.fleet.options` (default, help,
how its value is read); a value of the wrong kind is one line, exit code 2. A failure exits
with its error's exit code (2: bad input, nothing touched; 1: a host or step failed).

Example::

    fab -H 10.0.0.5,10.0.0.6 deploy --app app --batch 1,50% --max-fail 0
    fab deploy --role rest --network private --os-cloud mycloud --check
    fab status --stack prod --role rest --network private --format json
    fab -H 10.0.0.5 status
    fab hosts --stack prod --os-cloud mycloud --format json
"""

import inspect
from pathlib import Path

from fabric import task
from invoke.exceptions import Exit

from bake.fleet import DeployError, options, tasks

DOCS = {
    "deploy": "Ship the app to every host: new wheels only, atomic switch, health check, rollback.",
    "rollback": "Switch every host back to its previous release.",
    "status": "Show each host's release, units and health (changes nothing).",
    "restart": "Restart the bbq units on every host and check health.",
    "releases": "List the releases installed on every host.",
    "hosts": "List the hosts the other tasks would reach (-H, a stack or Nova); connect to none.",
}


def _help(option):
    default = f" (default: {option.default})" if option.default is not None else ""
    return option.help + default


def _task(action):
    """A fab task running ``action`` over all its hosts, with its options' table."""
    table = options.TASK_OPTIONS[action]

    def body(c, **given):
        if "app" in given:
            given["app"] = given["app"] or str(Path(__file__).parent / "app")
        try:
            tasks.run_task(action, **given)
        except DeployError as exc:
            raise Exit(f"fab {action}: {exc}", code=exc.exit_code) from None

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    # Invoke gives every value as typed (None when not given): options.parse reads it.
    defaults = {"flag": False, "list": None, "value": None}
    params = [inspect.Parameter("c", kind)]
    params += [
        inspect.Parameter(name, kind, default=defaults[option.kind])
        for name, option in table.items()
    ]
    body.__signature__ = inspect.Signature(params)
    body.__doc__, body.__name__, body.all_hosts = DOCS[action], action, True
    helps = {name.replace("_", "-"): _help(option) for name, option in table.items()}
    lists = [name for name, option in table.items() if option.kind == "list"]
    return task(name=action, help=helps, iterable=lists, auto_shortflags=False)(body)


deploy = _task("deploy")
rollback = _task("rollback")
status = _task("status")
restart = _task("restart")
releases = _task("releases")
hosts = _task("hosts")
