"""``bake stack delete --local``: stop every instance and host server a local stack started,
release its overlays, and check that nothing is left (no instance process, no mount under
its work directory, no process rooted there, no host server).

Example::

    left = delete(state.load(store, "dev"))   # [] when nothing is left
"""

from __future__ import annotations

import concurrent.futures
import shutil
from pathlib import Path

from bake import hostsys
from bake.cloud.local import hostservers, images
from bake.cloud.local import state as st


def stop_instance(server: st.Server) -> list[str]:
    from bake.instances.nspawn import stop_detached

    forced = stop_detached(server.pid, Path(server.workdir))
    return [f"{server.name}: {what} killed" for what in forced]


def leftovers(stack: st.LocalStack) -> list[str]:
    """What of the stack still runs or is mounted."""
    from bake.instances.nspawn import is_instance_process

    work = stack.workdir
    left = [f"mount {point}" for point in hostsys.mounts_under(work)] if work.exists() else []
    left += [f"process {pid}" for pid in hostsys.processes_under(work)] if work.exists() else []
    for server in stack.servers:
        if server.pid and is_instance_process(server.pid, Path(server.workdir)):
            left.append(f"instance {server.name} (pid {server.pid})")
    left += [f"{h.name} (pid {h.pid})" for h in stack.host_servers if hostservers.is_ours(h)]
    return left


def delete(stack: st.LocalStack, keep_rootfs: bool = False) -> list[str]:
    """Stop everything of ``stack``, remove its state and work directory; what is left
    (empty when nothing) and, before that, what had to be forced is not an error."""
    stack.status = "DELETE_IN_PROGRESS"
    if stack.path.exists():
        stack.save()
    servers = stack.servers
    if servers:
        with concurrent.futures.ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(stop_instance, servers))
    for server in reversed(stack.host_servers):  # the queue's API before its Redis
        hostservers.stop(server)
    left = leftovers(stack)
    if left:
        stack.status, stack.reason = "DELETE_FAILED", f"left: {', '.join(left)}"
        stack.save()
        return left
    shutil.rmtree(stack.workdir, ignore_errors=True)
    stack.path.unlink(missing_ok=True)
    if not keep_rootfs:
        keep = {
            Path(s.rootfs).resolve()
            for other in st.all_stacks(Path(stack.store))
            for s in other.servers
        }
        images.prune_rootfs(Path(stack.store), keep)
    return []
