#!/bin/sh
# keepalived track_script of the help-point gateway pair:  helppoint-check.sh ENV_FILE
#
# Exit 0 when this node may hold (or take) the VIP, 1 when it must not:
#
#   * this node does not hold the VIP (standby): its gateway is stopped by design, so the only question is
#     whether it could take over: yes, unless HA_STANDBY_CHECK (optional, e.g. pg_isready) fails;
#   * this node holds the VIP: its gateway must answer /health: 200 (serving) or 503 (draining: it refuses
#     new presses but is finishing the calls it carries, whose media is anchored here; moving the VIP now would
#     cut them).  No answer at all (crashed, hung, stopped) is a failure, except while it starts: within
#     HA_START_GRACE seconds after the notify script started it and before its first 200.
#
# keepalived runs it every `interval` seconds and moves the VIP after `fall` failures in a row.
set -u

. "${1:?usage: helppoint-check.sh ENV_FILE}"
: "${HA_VIP:?HA_VIP not set in $1}"
HA_HEALTH_URL=${HA_HEALTH_URL:-http://127.0.0.1:8080/health}
HA_HEALTH_TIMEOUT=${HA_HEALTH_TIMEOUT:-1}
HA_START_GRACE=${HA_START_GRACE:-30}
HA_RUN_DIR=${HA_RUN_DIR:-/run/helppoint-gateway-ha}
HA_STANDBY_CHECK=${HA_STANDBY_CHECK:-}

if [ -z "$(ip -o addr show to "$HA_VIP" 2>/dev/null)" ]; then
    # Standby.
    if [ -n "$HA_STANDBY_CHECK" ]; then
        sh -c "$HA_STANDBY_CHECK" >/dev/null 2>&1 || exit 1
    fi
    exit 0
fi

marker="$HA_RUN_DIR/starting"
code=$(curl -s -o /dev/null -m "$HA_HEALTH_TIMEOUT" -w '%{http_code}' "$HA_HEALTH_URL" 2>/dev/null)
case "$code" in
    200)
        # Up: the start grace is over (from now on a gateway that stops answering is a failure at once).
        rm -f "$marker"
        exit 0 ;;
    503) exit 0 ;;
esac

# No usable answer: still starting?
if [ -f "$marker" ]; then
    age=$(( $(date +%s) - $(stat -c %Y "$marker") ))
    [ "$age" -lt "$HA_START_GRACE" ] && exit 0
fi
exit 1
