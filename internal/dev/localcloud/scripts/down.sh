#!/usr/bin/env bash
# down.sh - stop exactly the processes up.sh (and, on an instance with compute, compute-up.sh)
# started for one labplane local cloud instance (by the PIDs in their pid files; a PID is only
# signalled if its command line or environment still matches what was started: never by name).
# Packages stay installed. Embedded in labplane (internal/localcloud); adapted from the team's
# shared recipe (openstack/down.sh, nova-down.sh).
#   down.sh          stop services, keep state (databases, fernet keys): next up takes ~12 s
#   down.sh --purge  also delete $LC_DIR/state and $LC_CLOUDS_YAML: next up starts clean
# Environment (set by internal/localcloud): LC_NAME, LC_DIR, LC_CLOUDS_YAML, LC_EPMD_PORT.
set -Euo pipefail
NAME=${LC_NAME:?LC_NAME is required}
LAB_DIR=${LC_DIR:?LC_DIR is required}
STATE=$LAB_DIR/state
EPMD_PORT=${LC_EPMD_PORT:?LC_EPMD_PORT is required}
PURGE=0; [[ ${1:-} == --purge ]] && PURGE=1
T0=$(date +%s%N)
log() { printf '[localcloud %s down %5ss] %s\n' "$NAME" "$(awk -v a="$T0" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f", (b-a)/1e9}')" "$*"; }

running() { # PID alive and not a zombie
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $st && $st != Z ]]
}
ours() { # PID MARKER: running and its command line or environment contains MARKER
  running "$1" && cat "/proc/$1/cmdline" "/proc/$1/environ" 2>/dev/null | tr '\0' ' ' | grep -qF -- "$2"
}
# stop NAME MARKER [TIMEOUT]: SIGTERM the pid from $STATE/run/NAME.pid if it is ours, wait,
# SIGKILL it (and the direct children it had) if still running after TIMEOUT seconds.
stop() {
  local name=$1 marker=$2 timeout=${3:-20} f=$STATE/run/$1.pid pid kids i
  [[ -s $f ]] || return 0
  pid=$(<"$f")
  if ours "$pid" "$marker"; then
    kids=$(ps -o pid= --ppid "$pid" 2>/dev/null | tr -d ' ' | tr '\n' ' ')
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do running "$pid" || break; sleep 0.1; done
    if running "$pid"; then
      log "$name ($pid) did not stop in ${timeout}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    for k in $kids; do running "$k" && kill -KILL "$k" 2>/dev/null; done
    log "stopped $name (pid $pid)"
  else
    log "$name: not running (stale pid file, pid $pid)"
  fi
  rm -f "$f"
}

if [[ -d $STATE/run ]]; then
  # compute (compute-up.sh's, on the instances that have it; no pid file: nothing to do): the
  # APIs and nova-compute first (they call the others), then the rest, each group in parallel
  NOVA_CONF=$STATE/etc/nova.conf
  stop nova-api "nova-api --config-file $NOVA_CONF" & stop nova-compute "$STATE/etc/nova-compute.conf" 30 &
  stop glance-api "$STATE/etc/glance-api.conf" & stop placement "$STATE/etc/placement-uwsgi.ini" & wait
  stop nova-conductor "nova-conductor --config-file $NOVA_CONF" & stop nova-scheduler "nova-scheduler --config-file $NOVA_CONF" &
  stop fake-neutron "$STATE/etc/fake-neutron.py" 5 & wait
  rm -f "$STATE/compute-ready"
  # API/engine/keystone in parallel (each is independent)
  stop heat-api "$STATE/etc/heat.conf" & stop heat-engine "$STATE/etc/heat.conf" 30 &
  stop keystone "$STATE/etc/keystone-uwsgi.ini" & wait
  # rabbitmq: the wrapper shell forwards TERM to the Erlang VM and waits for it
  beam=$(cat "$STATE/run/rabbitmq-beam.pid" 2>/dev/null || true)
  stop rabbitmq "$STATE/rabbit" 40
  if [[ -n $beam ]] && ours "$beam" "$STATE/rabbit"; then
    kill -TERM "$beam" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do running "$beam" || break; sleep 0.1; done
    running "$beam" && kill -KILL "$beam" 2>/dev/null
    log "stopped rabbitmq beam (pid $beam)"
  fi
  rm -f "$STATE/run/rabbitmq-beam.pid"
  # the marker includes the port: a stale pid file can never match another instance's epmd
  stop epmd "-port $EPMD_PORT " 5
  # postgres: fast shutdown through pg_ctl (as the postgres user), falling back to signals
  pgpid=$(cat "$STATE/run/postgres.pid" 2>/dev/null || true)
  if [[ -n $pgpid ]] && ours "$pgpid" "$STATE/pg/data"; then
    pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$pgbin/pg_ctl" -D "$STATE/pg/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
    running "$pgpid" || { log "stopped postgres (pid $pgpid)"; rm -f "$STATE/run/postgres.pid"; }
  fi
  stop postgres "$STATE/pg/data" 15
fi

# report (never kill) anything else still referring to the state dir
left=$(ps -eo pid=,args= | grep -F -- "$STATE" | grep -v -e grep -e down.sh || true)
[[ -n $left ]] && log "WARNING: processes still referring to $STATE (not started by up.sh's pid files?):" && echo "$left"

if ((PURGE)); then
  rm -rf "$STATE" "${LC_CLOUDS_YAML:-$LAB_DIR/clouds.yaml}"
  log "purged $STATE"
fi
log "down"
