"""The Big Data BBQ stack on this machine, for development (``bake stack ACTION --local``):
the same roles as the Heat stack of ``stacks/``, each server an instance of its role's image
from the local artifact store (systemd-nspawn, copy-on-write), configured by the SAME role
file (``stacks/cloud-config/<role>.yaml``) filled with local values and handed to cloud-init
as a NoCloud seed; a local endpoint receives the wait-condition signals the role files send.

Modules: :mod:`.state` (the stack's JSON state file), :mod:`.images` (each role's newest good
artifact of its spec's current fingerprint, unpacked once), :mod:`.roles` (addresses, ports,
the filled role files), :mod:`.signals` (the wait-condition endpoint), :mod:`.hostservers`
(the data store and the queue, served on the host), :mod:`.create`, :mod:`.remove`
(delete), :mod:`.commands` (the command line).

Example::

    bake stack create --local dev --workers 2      # boots 5 instances, waits for every role
    bake stack outputs --local dev dashboard_url   # http://127.77.1.3:8780/
    fab status --stack dev                          # hosts, key and known_hosts of the stack
    bake stack delete --local dev                   # nothing left
"""
