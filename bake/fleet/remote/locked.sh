#!/bin/bash
# Hold the host's deploy lock while stdin stays open; print the host's state first.
#   bash -c "$(cat locked.sh)" bbq-deploy-lock OWNER STATE_SCRIPT STATE_ARGS...
# OWNER (who deploys, since when) goes beside the lock; STATE_SCRIPT (state.py's text) runs
# under the lock with STATE_ARGS. The deployer closes stdin when done, and a dropped
# connection closes it too. Another deploy holding the lock: exit BBQ_LOCKED_EXIT at once.
# Layout: BBQ_LOCK (bake.fleet.layout.HostLayout.environment).
exec 8>>"$BBQ_LOCK"
if ! flock -n 8; then
    echo "another deploy holds this host's lock $BBQ_LOCK ($(cat "$BBQ_LOCK.owner" 2>/dev/null))" >&2
    exit "$BBQ_LOCKED_EXIT"
fi
echo "$1" > "$BBQ_LOCK.owner"
shift
python3 -c "$@" || exit
exec cat >/dev/null
