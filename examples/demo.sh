#!/usr/bin/env bash
# demo.sh: labplane's main job on the embedded defaults, on a fresh Debian 12 machine with Go (as root).
#
# It builds labplane, starts a real local OpenStack (Keystone + Heat from Debian's packages,
# installed if missing, 127.0.0.1 only), launches four labs with SQLite as the registry, keeps one
# learner active with heartbeats while the others go idle, shows the reaper's plan (--dry-run),
# runs the reaper, and shows what it did: idle labs suspended, an old lab deleted, the active
# lab kept, every action in the audit trail. The local cloud is left running for you to explore
# (`bin/labplane localcloud down` stops it).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "build"
go build -o bin/labplane ./cmd/labplane
lp=$PWD/bin/labplane

step "start the local cloud (first run installs Debian packages: about 2 minutes)"
$lp localcloud up --name local-a

work=$(mktemp -d /tmp/labplane-demo.XXXXXX)
eval "$($lp localcloud env --name local-a)"   # exports OS_CLIENT_CONFIG_FILE
cat >"$work/labplane.yaml" <<EOF
store:
  driver: sqlite
  dsn: $work/labplane.db
clouds:
  - name: local-a
    cloud: local-a
    max_in_flight: 4
templates:
  lab: $PWD/examples/templates/lab.yaml
policy:
  idle_suspend_after: 20s   # short, so the demo does not take all day (the default is 90s)
  delete_after: 336h
  courses:
    bootcamp:               # a short course whose labs are deleted after 30 seconds
      delete_after: 30s
      idle_suspend_after: 10m
hooks:
  before_suspend: 'echo "before_suspend lab=\$LABPLANE_LAB_ID learner=\$LABPLANE_LEARNER" >> $work/hooks.log'
  after_resume: 'echo "after_resume lab=\$LABPLANE_LAB_ID learner=\$LABPLANE_LEARNER" >> $work/hooks.log'
  before_delete: 'echo "before_delete lab=\$LABPLANE_LAB_ID learner=\$LABPLANE_LEARNER" >> $work/hooks.log'
EOF
export LABPLANE_CONFIG=$work/labplane.yaml LABPLANE_LOG_LEVEL=warn
echo "config and registry in $work"
$lp config validate

step "launch four labs (ann, bob and cat in os101; dan in the bootcamp)"
for who in ann:os101 bob:os101 cat:os101 dan:bootcamp; do
  $lp labs launch --learner "${who%%:*}" --course "${who##*:}" --output json >"$work/${who%%:*}.json" &
done
wait
id() { jq -r .id "$work/$1.json"; }
$lp labs list

step "ann keeps working (a heartbeat every 5 s); bob, cat and dan go idle for 35 s"
for _ in 1 2 3 4 5 6 7; do $lp labs heartbeat "$(id ann)" >/dev/null; sleep 5; done

step "what the reaper would do (--dry-run changes nothing)"
$lp reap --once --dry-run

step "reap"
$lp reap --once --yes
$lp labs list --all

step "bob comes back: resume his lab (it prints the lab and its audit trail)"
$lp labs resume "$(id bob)"

step "the hooks that ran"
cat "$work/hooks.log"

step "a last dry run: nothing left to do"
$lp reap --once --dry-run
echo
echo "Explore: export LABPLANE_CONFIG=$work/labplane.yaml OS_CLIENT_CONFIG_FILE=$OS_CLIENT_CONFIG_FILE; $lp --help"
