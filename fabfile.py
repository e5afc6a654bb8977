"""In-place updates of running bbq instances: ``fab -l`` lists the tasks.

Thin: every task hands its options to :func:`bake.deploy.run_task`. Hosts come from
``-H host1,host2`` (``[user@]host[:port]``) or from Nova (``--role``/``--image``, address on
``--network``, credentials from ``--os-cloud``/``OS_*``). ``fabric.yaml`` selects
``bake.deploy.RolloutExecutor`` so that each task sees all its hosts at once.

Example::

    fab -H 10.0.0.5,10.0.0.6 deploy --app app --batch 2 --max-fail 0
    fab deploy --role rest --network private --os-cloud mycloud
    fab -H 10.0.0.5 status
"""

from pathlib import Path

from fabric import task
from invoke.exceptions import Exit

from bake import deploy as bake_deploy

HOSTS = {
    "hosts": "hosts, comma-separated [user@]host[:port] (also fab -H)",
    "role": "Nova: servers whose metadata bbq_role is this",
    "image": "Nova: servers running this image id",
    "network": "Nova: the network whose address to use",
    "os-cloud": "cloud in clouds.yaml (default: $OS_CLOUD or the OS_* variables)",
    "user": "SSH user (root, or a sudoer)",
    "known-hosts": "known_hosts file host keys are checked against",
    "key": "SSH private key file (repeatable)",
    "accept-new-host-keys": "trust and record host keys seen for the first time",
    "batch": "hosts at a time",
    "max-fail": "failed hosts tolerated before the rollout stops",
}
DEPLOY = {
    "app": "the app source directory (default: app/ beside this fabfile)",
    "keep": "releases kept per host",
    "mode": "clone (hard-linked copy of the current venv, changed wheels reinstalled) or fresh",
    "health-timeout": "seconds to wait for the units and the health endpoint",
}


def _run(action, options):
    options = {k: v for k, v in options.items() if k not in ("c", "action")}
    options["key"] = options["key"] or ()
    try:
        bake_deploy.run_task(action, **options)
    except bake_deploy.DeployError as exc:
        raise Exit(f"fab {action}: {exc}", code=1) from None


def _task(action, doc):
    """A task running ``action`` with the host options only."""

    def body(
        c,
        hosts=None,
        role=None,
        image=None,
        network=None,
        os_cloud=None,
        user="root",
        known_hosts="~/.ssh/known_hosts",
        key=None,
        accept_new_host_keys=False,
        batch=1,
        max_fail=0,
    ):
        _run(action, locals())

    body.__doc__, body.__name__, body.all_hosts = doc, action, True
    return task(name=action, help=HOSTS, iterable=["key"], auto_shortflags=False)(body)


@task(help={**HOSTS, **DEPLOY}, iterable=["key"], auto_shortflags=False)
def deploy(
    c,
    hosts=None,
    role=None,
    image=None,
    network=None,
    os_cloud=None,
    user="root",
    known_hosts="~/.ssh/known_hosts",
    key=None,
    accept_new_host_keys=False,
    batch=1,
    max_fail=0,
    app=None,
    keep=3,
    mode="clone",
    health_timeout=60,
):
    """Ship the app to every host: new wheels only, atomic switch, health check, rollback."""
    _run("deploy", {**locals(), "app": app or str(Path(__file__).parent / "app")})


deploy.body.all_hosts = True
rollback = _task("rollback", "Switch every host back to its previous release.")
status = _task("status", "Show each host's release, units and health (changes nothing).")
restart = _task("restart", "Restart the bbq units on every host and check health.")
releases = _task("releases", "List the releases installed on every host.")
