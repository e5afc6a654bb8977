#!/bin/bash
# Health of a host's units and of its health URL: bash functions, sent ahead of the scripts
# that call them (status.sh, switch.sh; see bake.fleet.scripts.NEEDS), after timing.sh's.

# why_unhealthy URL UNIT...: why the units or the URL are not healthy; nothing when healthy.
why_unhealthy() {
    local url=$1 bad="" i=0 unit code
    shift
    local states=()
    if [ $# -gt 0 ]; then
        mapfile -t states < <(systemctl is-active "$@" 2>/dev/null)
    fi
    for unit in "$@"; do
        [ "${states[$i]:-unknown}" = active ] || bad+="${bad:+, }$unit=${states[$i]:-unknown}"
        i=$((i + 1))
    done
    if [ -n "$bad" ]; then
        echo "unit not active: $bad"
    elif [ -n "$url" ]; then
        code=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' "$url" 2>&1) || true
        case $code in
            2??) ;;
            *) echo "$url answered ${code//$'\n'/ }" ;;
        esac
    fi
}

main_pids() {
    if [ $# -gt 0 ]; then
        systemctl show -P MainPID "$@" | tr '\n' ' '
    fi
}

# wait_healthy TIMEOUT SETTLE URL UNIT...: polls until healthy (0 when so), or prints why not
# once TIMEOUT seconds passed. Healthy: the units active, the URL answering 2xx, and the
# units' processes the same ones for SETTLE seconds at least, counted from the call (made
# right after the restart) or from systemd's restart of one since: a unit that crashes right
# after starting is not healthy, and a unit slower than SETTLE to answer is not kept waiting.
# No poll before SETTLE has passed: none could end the wait sooner, and each one (systemctl,
# curl) takes CPU from the units starting, on this host and on any sharing its cores.
wait_healthy() {
    local timeout=$1 settle=$2 url=$3 why pids now since left end
    shift 3
    end=$(($(date +%s) + ${timeout%.*}))
    pids=$(main_pids "$@") since=$(usec "$EPOCHREALTIME")
    sleep "$settle"
    while :; do
        why=$(why_unhealthy "$url" "$@")
        if [ -z "$why" ]; then
            left=$((since + $(usec "$settle") - $(usec "$EPOCHREALTIME")))
            if [ "$left" -gt 0 ]; then
                sleep "$(seconds "$left")"
            fi
            why=$(why_unhealthy "" "$@")
            now=$(main_pids "$@")
            if [ -z "$why" ] && [ "$now" = "$pids" ]; then
                return 0
            fi
            why=${why:-"unit restarted right after starting"}
            pids=$now since=$(usec "$EPOCHREALTIME")
        fi
        if [ "$(date +%s)" -ge "$end" ]; then
            echo "$why"
            return 1
        fi
        sleep 0.2
    done
}
