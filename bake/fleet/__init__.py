"""The fleet: updating running bbq instances in place over SSH (``fab``), one module a job.

=================  ==========================================================================
module             what
=================  ==========================================================================
``targets``        :class:`~bake.fleet.targets.Target` and ``-H`` host lists
``layout``         :class:`~bake.fleet.layout.HostLayout`: every path and port on a host
``ssh``            connections (one host-key policy, :class:`bake.hostsys.HostKeyPolicy`)
``scripts``        the host scripts of ``remote/`` (package data) and how they are run
``hoststate``      a host's release state, read under its deploy lock or without
``shipment``       the local side: wheelhouses, and the plan of what a host gets
``results``        :class:`~bake.fleet.results.Result` and :class:`~bake.fleet.results.HostResult`
``host``           per-host actions: deploy, rollback, restart, status, releases
``plans``          ``--check``: what deploy, rollback or restart would do on a host
``options``        every option of the tasks, declared once and read (``--batch 1,25%``)
``rollout``        many hosts in batches, ``--max-fail``, the results as a table or JSON
``inventory``      which hosts: ``-H``, or Nova servers by role, image or stack
``tasks``          behind ``fabfile.py``: ``run_task`` and the executor ``fabric.yaml`` names
=================  ==========================================================================

Every error meant for the user is a :class:`DeployError` (one line); bad input, found
before any host is touched, carries exit code 2.
"""

from __future__ import annotations

from bake.errors import OperationFailed


class DeployError(OperationFailed):
    """A deploy cannot go on (bad input, or a host step failed); the message says which."""
