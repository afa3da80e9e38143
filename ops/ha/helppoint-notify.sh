#!/bin/sh
# keepalived notify script of the help-point gateway pair:
#
#   helppoint-notify.sh ENV_FILE TYPE NAME STATE PRIORITY      (keepalived appends the last four)
#
# Cold standby: the gateway runs only on the node that holds the VIP.  A second gateway running on the same
# database would be wrong, not merely idle: at start a gateway marks every activation still in progress as
# interrupted (they were the calls of a gateway that died) and loads the registrar bindings once, so a hot
# standby would mark the active node's live calls interrupted and never see the REGISTERs the active node
# takes.  And the gateway binds SIP and RTP to the VIP itself, which only exists on the node that holds it.
#
# What to do is decided by whether this node holds the VIP *now*, not by STATE: keepalived adds the VIP
# before it calls us for MASTER and removes it before BACKUP/FAULT/STOP, but it runs notify scripts
# concurrently, so two quick transitions may reach here out of order.  Under a lock, "VIP here -> started,
# else -> stopped" is right whatever the order.
set -u

ENV_FILE=${1:?usage: helppoint-notify.sh ENV_FILE TYPE NAME STATE PRIORITY}
STATE=${4:-UNKNOWN}
. "$ENV_FILE"
: "${HA_VIP:?HA_VIP not set in $ENV_FILE}"
: "${HA_START:?HA_START not set in $ENV_FILE}"
: "${HA_STOP:?HA_STOP not set in $ENV_FILE}"
HA_RUN_DIR=${HA_RUN_DIR:-/run/helppoint-gateway-ha}
HA_LOG=${HA_LOG:-}
HA_TEXTFILE_DIR=${HA_TEXTFILE_DIR:-}

mkdir -p "$HA_RUN_DIR"

say() {
    if [ -n "$HA_LOG" ]; then
        printf '%s helppoint-ha[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" "$$" "$*" >>"$HA_LOG"
    else
        logger -t helppoint-ha -- "$*" 2>/dev/null || true
    fi
}

holds_vip() { [ -n "$(ip -o addr show to "$HA_VIP" 2>/dev/null)" ]; }

# The start grace begins now (before waiting for the lock): the check script must not count the seconds the
# gateway needs to start as a failure.
[ "$STATE" = MASTER ] && touch "$HA_RUN_DIR/starting"

exec 9>"$HA_RUN_DIR/notify.lock"
flock 9

say "keepalived: $STATE (priority ${5:-?})"
if holds_vip; then
    touch "$HA_RUN_DIR/starting"
    say "VIP $HA_VIP is here: starting the gateway"
    sh -c "$HA_START" || say "start command failed (exit $?): $HA_START"
    master=1
else
    rm -f "$HA_RUN_DIR/starting"
    say "VIP $HA_VIP is not here: stopping the gateway"
    sh -c "$HA_STOP" || say "stop command failed (exit $?): $HA_STOP"
    master=0
fi
printf '%s %s\n' "$STATE" "$(date +%s)" >"$HA_RUN_DIR/state"
if [ -n "$HA_TEXTFILE_DIR" ]; then
    tmp="$HA_TEXTFILE_DIR/helppoint_ha.prom.$$"
    {
        echo "# HELP helppoint_ha_master 1 when this node holds the gateway VIP and runs the gateway."
        echo "# TYPE helppoint_ha_master gauge"
        echo "helppoint_ha_master $master"
    } >"$tmp" && mv "$tmp" "$HA_TEXTFILE_DIR/helppoint_ha.prom"
fi
say "done: $STATE"
