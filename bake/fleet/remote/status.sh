#!/bin/bash
# Why the units or the health URL are not healthy; nothing when healthy (changes nothing).
#   status.sh URL UNIT...        (after health.sh's functions)
url=$1
shift
why_unhealthy "$url" "$@"
