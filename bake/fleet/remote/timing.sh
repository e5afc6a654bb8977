#!/bin/bash
# Timing for host scripts: bash functions, sent ahead of the scripts that time their steps
# (install.sh, switch.sh; see bake.fleet.scripts.NEEDS). Each step's seconds go out on one
# line "BBQ-PHASES<tab>NAME=SECONDS ..." (bake.fleet.host.parse_phases), in the result.

# usec SECONDS: SECONDS (decimal, e.g. 2.0 or 0.25, or "$EPOCHREALTIME") in microseconds.
usec() {
    local value=$1 whole fraction
    value=${value/,/.}
    whole=${value%%.*} fraction=
    [ "$whole" = "$value" ] || fraction=${value#*.}
    fraction="${fraction}000000"
    echo $((10#${whole:-0} * 1000000 + 10#${fraction:0:6}))
}

# seconds MICROSECONDS: as decimal seconds (1.500000).
seconds() {
    echo "$(($1 / 1000000)).$(printf %06d $(($1 % 1000000)))"
}

BBQ_LAP=$(usec "$EPOCHREALTIME")
BBQ_PHASES=""
# lap NAME: the time since the last lap (or since this file was read) is step NAME's.
lap() {
    local now
    now=$(usec "$EPOCHREALTIME")
    BBQ_PHASES+="${BBQ_PHASES:+ }$1=$(seconds $((now - BBQ_LAP)))"
    BBQ_LAP=$now
}

# phases: print the BBQ-PHASES line.
phases() {
    printf 'BBQ-PHASES\t%s\n' "$BBQ_PHASES"
}
