#!/usr/bin/env bash
# Developer and CI entry point.  Idempotent: safe to run again and again.
#
#   bash scripts/dev.sh serve [ARGS...]   install what is needed, then run the gateway with the demo inventory
#   bash scripts/dev.sh test  [ARGS...]   install what is needed (system packages too), then lint imports and run pytest
#   bash scripts/dev.sh install           only create/refresh the virtualenv (used by the Dockerfile)
#
# The virtualenv is .venv (created with python3.11 -m venv).  `pip install -e '.[test]'` runs only when
# pyproject.toml changed since the last install (its SHA-256 is kept in .venv/.pyproject.sha256).
# System packages are installed with apt-get only when missing; `apt-get update` runs only then.
set -euo pipefail

cd "$(dirname "$0")/.."

VENV=.venv
STAMP="$VENV/.pyproject.sha256"
PYTHON=${PYTHON:-python3.11}
CONFIG=sip-config/gateway.yaml
# command -> Debian package providing it, for the test suite (keepalived, ip/ss and curl: the HA failover
# test, tests/integration/test_ha_failover.py)
TEST_TOOLS=("sipp:sip-tester" "baresip:baresip" "promtool:prometheus" "tcpdump:tcpdump"
            "keepalived:keepalived" "ip:iproute2" "ss:iproute2" "curl:curl")

say() { printf 'dev.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

APT_UPDATED=0
apt_install() {
    # apt_install PACKAGE... : install the given Debian packages (the caller checked they are missing).
    command -v apt-get >/dev/null 2>&1 || die "missing system packages ($*) and no apt-get: install them by hand"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "missing system packages ($*): run as root or install them by hand"
        sudo=(sudo)
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update (needed for: $*)"
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    say "installing system packages: $*"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_python() {
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        apt_install python3.11 python3.11-venv
    fi
    # Debian strips ensurepip (and so `python3 -m venv`) out of python3.11 into python3.11-venv.
    if [ ! -x "$VENV/bin/python" ] && ! "$PYTHON" -c 'import ensurepip' >/dev/null 2>&1; then
        apt_install python3.11-venv
    fi
}

ensure_venv() {
    ensure_python
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating virtualenv $VENV with $PYTHON"
        "$PYTHON" -m venv "$VENV"
    fi
    local want have=""
    # The install also compiles the optional C relay (setup.py): its sources are part of the stamp.
    want=$(cat pyproject.toml setup.py gateway/media/_fastrtp.c | sha256sum | cut -d' ' -f1)
    [ -f "$STAMP" ] && have=$(cat "$STAMP")
    if [ "$want" != "$have" ] || [ ! -x "$VENV/bin/gateway" ]; then
        ensure_compiler
        say "installing the gateway and its test dependencies into $VENV (pyproject.toml or the C relay changed)"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
        printf '%s\n' "$want" >"$STAMP"
        if "$VENV/bin/python" -c 'import gateway.media._fastrtp' >/dev/null 2>&1; then
            say "RTP relay: C fast path built"
        else
            say "warning: the C fast path of the RTP relay did not build; the gateway relays in pure Python (slower)"
        fi
    else
        say "$VENV is up to date with pyproject.toml"
    fi
}

ensure_compiler() {
    # The optional C relay needs a C compiler and the Python headers; installed only when missing.
    local missing=()
    command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
    if ! "$PYTHON" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' >/dev/null 2>&1; then
        missing+=(python3.11-dev)
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
        # In a subshell: a machine where nothing can be installed still gets a working (pure-Python) relay.
        (apt_install "${missing[@]}") || say "warning: could not install ${missing[*]}; the RTP relay will run in pure Python"
    fi
}

ensure_test_tools() {
    local missing=() entry package
    for entry in "${TEST_TOOLS[@]}"; do
        # keepalived and ip live in /usr/sbin and /sbin, which a non-root PATH may not list.
        PATH="$PATH:/usr/sbin:/sbin" command -v "${entry%%:*}" >/dev/null 2>&1 && continue
        package=${entry#*:}
        [[ " ${missing[*]-} " == *" $package "* ]] || missing+=("$package")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
        if [[ " ${missing[*]} " == *" keepalived "* ]]; then
            quiet_keepalived_unit
        fi
    fi
}

quiet_keepalived_unit() {
    # The keepalived package enables keepalived.service.  Debian's unit only starts with a non-empty
    # /etc/keepalived/keepalived.conf (there is none on a fresh install), but a host-wide keepalived is never
    # wanted on a test machine: the HA test runs its own, in namespaces.  Only done right after dev.sh
    # installed the package, so an operator's own keepalived is never touched.
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        local sudo=()
        [ "$(id -u)" -ne 0 ] && sudo=(sudo)
        say "keepalived installed for the tests: disabling and stopping its systemd unit"
        "${sudo[@]}" systemctl disable --now keepalived.service >/dev/null 2>&1 || true
    fi
}

cmd_install() {
    ensure_venv
}

cmd_serve() {
    ensure_venv
    say "starting the gateway with $CONFIG (Ctrl-C or SIGTERM to stop)"
    exec "$VENV/bin/gateway" serve --config "$CONFIG" "$@"
}

cmd_test() {
    ensure_test_tools
    ensure_venv
    say "checking import layers (lint-imports)"
    "$VENV/bin/lint-imports"
    say "running the test suite"
    local rc=0
    "$VENV/bin/pytest" -q -p no:cacheprovider "$@" || rc=$?
    if [ "$rc" -eq 5 ]; then
        say "pytest collected no tests (exit 5): nothing to run, treating as success"
        return 0
    fi
    return "$rc"
}

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
}

case "${1:-}" in
    serve) shift; cmd_serve "$@" ;;
    test) shift; cmd_test "$@" ;;
    install) shift; cmd_install ;;
    -h | --help | help) usage ;;
    *) usage; die "unknown command '${1:-}' (expected serve, test or install)" ;;
esac
