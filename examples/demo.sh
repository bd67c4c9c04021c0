#!/usr/bin/env bash
# demo.sh: labplane's main job on the embedded defaults, on a fresh Debian 12 machine with Go (as root).
#
# It builds labplane, installs what this machine lacks (`labplane doctor --install`: Debian's
# packages, through the same installer the tests use), starts a real local OpenStack (Keystone +
# Heat, 127.0.0.1 only) and, with SQLite as the registry:
#  1. by hand, as an operator: launches four labs, keeps one learner active with heartbeats while
#     the others go idle, shows the reaper's plan (--dry-run), runs the reaper, and shows what it
#     did: idle labs suspended, an old lab deleted, the active lab kept, every action audited;
#  2. as the LMS: starts `labplane serve` and drives a lab through the HTTP API: launch,
#     heartbeats, the learner leaves and the scheduler suspends the lab, the learner comes back
#     and it is resumed; then SIGTERM, and serve exits 0;
#  (with LABPLANE_DEMO_SERVERS=1, also a lab of two real servers on the local cloud with Nova,
#     local-servers, about 45 s and 1 GiB more: launched, suspended and resumed, with Nova's own
#     view of its servers after each)
#  3. deploys the platform: three SSH test hosts made on this machine (lms1, cms1, guacd1, each
#     in its own network namespace), the inventory rendered from an environment spec, the
#     playbooks run over SSH with live progress, the recap per host, the run's record; then a
#     second deploy that changes nothing, and the hosts are taken down.
# The local cloud is left running for you to explore (`bin/labplane dev cloud down` stops it;
# `--purge` also forgets every stack the demo made).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "build"
go build -o bin/labplane ./cmd/labplane
lp=$PWD/bin/labplane

step "what this machine needs: labplane doctor installs the Debian packages (the first run: a few minutes)"
$lp doctor --install localcloud testhosts

step "start the local cloud"
$lp dev cloud up --name local-a

work=$(mktemp -d /tmp/labplane-demo.XXXXXX)
eval "$($lp dev cloud env --name local-a)"   # exports OS_CLIENT_CONFIG_FILE
servers_cloud=
if [[ ${LABPLANE_DEMO_SERVERS:-} == 1 ]]; then
  step "start the local cloud with Nova (local-servers: servers on Nova's fake driver, no VMs)"
  $lp dev cloud up --name local-servers
  # one clouds.yaml with both clouds' entries
  servers_yaml=$($lp dev cloud env --name local-servers | sed 's/^export OS_CLIENT_CONFIG_FILE=//')
  { cat "$OS_CLIENT_CONFIG_FILE"; sed '/^#/d; /^clouds:/d' "$servers_yaml"; } >"$work/clouds.yaml"
  export OS_CLIENT_CONFIG_FILE=$work/clouds.yaml
  servers_cloud="
  - name: local-servers
    cloud: local-servers
    max_in_flight: 4"
fi
cat >"$work/labplane.yaml" <<EOF
site: demo-$(date +%s)       # this run's own: stacks of earlier runs are not its to touch
store:
  driver: sqlite
  dsn: $work/labplane.db
clouds:
  - name: local-a
    cloud: local-a
    max_in_flight: 4$servers_cloud
templates:
  lab: $PWD/examples/templates/lab.yaml
  servers: $PWD/examples/templates/servers.yaml
default_template: lab
policy:
  idle_suspend_after: 20s   # short, so the demo does not take all day (the default is 90s)
  delete_after: 336h
  courses:
    bootcamp:               # a short course whose labs are deleted after 30 seconds
      delete_after: 30s
      idle_suspend_after: 10m
scheduler:
  suspend_every: 5s         # the default is 15s
serve:
  listen: 127.0.0.1:18080
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

if [[ -n $servers_cloud ]]; then
  step "a lab of two real servers (examples/templates/servers.yaml) for fay, on local-servers"
  $lp labs launch --learner fay --course os101 --template servers --cloud local-servers --output json >"$work/fay.json"
  $lp labs show "$(id fay)" | head -20      # the outputs: what Guacamole needs (the password and key hidden)
  nova() { openstack --os-cloud local-servers server list -c Name -c Status -f value; }
  nova
  step "suspend fay's lab: Heat suspends the stack, Nova each server"
  $lp labs suspend --force "$(id fay)" >/dev/null
  nova
  step "resume it"
  $lp labs resume "$(id fay)" >/dev/null
  nova
fi

step "labplane serve: the HTTP API for the LMS and the scheduler (log in $work/serve.log)"
TOKEN=$($lp token create --name lms)
$lp serve >"$work/serve.log" 2>&1 &
serve_pid=$!
trap 'kill "$serve_pid" 2>/dev/null || true' EXIT
api() { curl -sS -H "Authorization: Bearer $TOKEN" "$@"; }   # the API's answers end with a newline
status() { curl -sS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:18080/v1/labs/$1" | jq -r .status; }
wait_status() { # wait_status ID STATUS SECONDS
  for _ in $(seq "$3"); do [[ $(status "$1") == "$2" ]] && return 0; sleep 1; done
  echo "lab $1 never became $2"; tail -20 "$work/serve.log"; exit 1
}
for _ in $(seq 30); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.5; done

step "the LMS launches a lab for eve (202: launching), then reads it once it is active"
launched=$(api -X POST http://127.0.0.1:18080/v1/labs -d '{"learner":"eve","course":"os101"}')
echo "$launched"
eve=$(jq -r .id <<<"$launched")
wait_status "$eve" active 120
api "http://127.0.0.1:18080/v1/labs/$eve"

step "eve works: the LMS sends heartbeats"
for _ in 1 2 3; do api -X POST "http://127.0.0.1:18080/v1/labs/$eve/heartbeat"; sleep 3; done

step "eve leaves: after idle_suspend_after (20 s) the scheduler suspends her lab"
wait_status "$eve" suspended 90
api "http://127.0.0.1:18080/v1/labs/$eve"

step "eve comes back: the LMS asks for her lab again (202: it is being resumed)"
api -X POST http://127.0.0.1:18080/v1/labs -d '{"learner":"eve","course":"os101"}'
wait_status "$eve" active 90
api "http://127.0.0.1:18080/v1/labs/$eve" | jq -c '{id, status, stack_status, last_resumed_at}'

step "what the scheduler and the API did (GET /metrics, GET /readyz)"
curl -sS http://127.0.0.1:18080/metrics | grep -E '^labplane_(labs|actions_total|scheduler_job_runs_total)'
curl -sS http://127.0.0.1:18080/readyz

step "SIGTERM: serve lets actions in flight finish, records them and exits"
kill -TERM "$serve_pid"
wait "$serve_pid" && echo "labplane serve exited 0"
trap - EXIT

step "what the labs cost so far: hours running, suspended, used; the waste (chart: $work/cost.svg)"
$lp cost report --chart "$work/cost.svg"

step "deploy the platform: make three SSH test hosts and an environment for them"
export LABPLANE_INVENTORIES=$work/inventories LABPLANE_STATE_DIR=$work/state
export LABPLANE_TESTHOSTS_SECRET_KEY="demo-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"   # read by the inventory, never written
hostsdir=/var/lib/labplane-demo-hosts/$(basename "$work")   # not under /tmp: the hosts do not see the machine's /tmp
$lp dev hosts up --dir "$hostsdir" --env local
trap '$lp dev hosts down --dir "$hostsdir" >/dev/null' EXIT
cat "$work/inventories/local/environment.yml"

step "labplane deploy local: the inventory, then ansible-playbook over SSH (a line per task and host)"
$lp inventory render local --stdout | head -20
$lp deploy local --yes

step "deploy again: every host reports changed=0"
$lp deploy local --yes | tail -8
$lp runs list

step "the platform answers: edx-platform's /heartbeat and the release served, on lms1 and cms1"
lms=$(awk '/lms:/ {print}' "$work/inventories/local/environment.yml" | grep -oE '10\.251\.[0-9]+\.[0-9]+')
cms=$(awk '/cms:/ {print}' "$work/inventories/local/environment.yml" | grep -oE '10\.251\.[0-9]+\.[0-9]+')
curl -sS "http://$lms/heartbeat"; echo; curl -sS "http://$lms/labplane/release"
curl -sS "http://$cms:18010/heartbeat"; echo; curl -sS "http://$cms:18010/labplane/release"

step "take the test hosts down"
$lp dev hosts down --dir "$hostsdir" && rm -rf "$hostsdir"
trap - EXIT
echo
echo "Explore: export LABPLANE_CONFIG=$work/labplane.yaml OS_CLIENT_CONFIG_FILE=$OS_CLIENT_CONFIG_FILE; $lp --help"
