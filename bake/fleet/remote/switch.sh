#!/bin/bash
# Switch current to a release, restart the units, wait until healthy; then remove releases
# (PRUNE) or, unhealthy, switch back to BACK (when given). Ends with one line
# "BBQ-RESULT<tab>healthy|unhealthy|rolled-back<tab>why<tab>removed or the old one's health",
# after one "BBQ-PHASES<tab>NAME=SECONDS ..." (switch-lock, restart,
# health, prune; back-restart and back-health when going back).
#   switch.sh TO FROM BACK TIMEOUT SETTLE URL PRUNE UNIT...     (after timing.sh's, health.sh's)
# Runs to its end even if the deployer's connection drops (bake.fleet.host.switch); the
# switching marker names a switch whose health is not confirmed yet (given FROM).
# Layout: BBQ_RELEASES, BBQ_CURRENT, BBQ_SWITCH_LOCK, BBQ_SWITCHING (HostLayout).
set -u -o pipefail
to=$1 from=$2 back=$3 timeout=$4 settle=$5 url=$6 prune=$7
shift 7
releases=$BBQ_RELEASES current=$BBQ_CURRENT switching=$BBQ_SWITCHING
exec 9>>"$BBQ_SWITCH_LOCK"
flock 9
lap switch-lock
point() { ln -sfn "releases/$1" "$current.new" && mv -T "$current.new" "$current"; }
restart() { if [ $# -gt 0 ]; then systemctl restart "$@" || true; fi; }
discard() {  # moved away at once (hidden names are no releases), deleted at low priority
    [ $# -gt 0 ] || return 0
    local trash release
    trash=$(mktemp -d "$releases/.gone.XXXXXX") || return 1
    for release in "$@"; do
        mv "$releases/$release" "$trash/"
    done
    (setsid nice -n 19 ionice -c 3 rm -rf "$trash" </dev/null >/dev/null 2>&1 9>&- &)
}
report() {
    [ -z "$from" ] || rm -f "$switching"
    phases
    printf 'BBQ-RESULT\t%s\t%s\t%s\n' "$1" "${2//$'\n'/ }" "${3//$'\n'/ }"
    exit 0
}
if [ -n "$from" ]; then
    echo "$from $to" > "$switching.new" && mv -f "$switching.new" "$switching"
fi
if ! point "$to"; then
    [ -z "$from" ] || rm -f "$switching"
    echo "cannot point $current at $to" >&2
    exit 1
fi
echo "switched to $to; restarting ${*:--}"
restart "$@"
lap restart
if why=$(wait_healthy "$timeout" "$settle" "$url" "$@"); then
    lap health
    removed=""
    # PRUNE is a space-separated list of release names (no blanks, no globs).
    # shellcheck disable=SC2086
    if [ -n "$prune" ] && discard $prune; then
        removed=$prune
    fi
    lap prune
    report healthy "" "$removed"
fi
lap health
[ -n "$back" ] || report unhealthy "$why" ""
echo "UNHEALTHY: $why; switching back to $back"
point "$back"
restart "$@"
lap back-restart
again=$(wait_healthy "$timeout" "$settle" "$url" "$@") || true
lap back-health
discard "$to" || true
report rolled-back "$why" "$again"
