#!/usr/bin/env bash
# compute-up.sh - add a REAL OpenStack Nova (26, Zed) with the *fake* virt driver (no VMs),
# Placement (8) and Glance (25) from Debian 12 packages to one labplane local cloud instance whose
# Keystone + Heat up.sh has just brought up. Embedded in the labplane binary
# (internal/dev/localcloud) and run by it with bash after up.sh, for the instances with compute
# only (local-servers); adapted from the team's shared recipe (openstack/nova-up.sh).
#
#   placement-api (uwsgi)                 -> http://127.0.0.1:$LC_PLACEMENT_PORT
#   glance-api (eventlet, file store)     -> http://127.0.0.1:$LC_GLANCE_PORT
#   nova-api (eventlet, osapi_compute)    -> http://127.0.0.1:$LC_NOVA_PORT/v2.1
#   nova-conductor, nova-scheduler, nova-compute (compute_driver = fake.FakeDriver; nova-compute
#   runs from python3-nova, so no libvirt or qemu)
#   a Neutron stub (not in the catalog: Nova alone reaches it through [neutron]
#   endpoint_override; it answers every list with an empty one) -> http://127.0.0.1:$LC_NEUTRON_PORT
#
# The databases live in the instance's PostgreSQL, RPC goes through its RabbitMQ, the services
# are registered in its Keystone. Heat needs no change: OS::Nova::Server appears once compute is
# in the catalog. There is no Neutron, so servers use  networks: [{allocate_network: none}].
# A flavor lab.tiny (1 vCPU, 64 MiB, 1 GB disk: Zed lets only admins boot a 0 GB disk from an
# image) and a public 1 KiB image lab-fake-image are created.
#
# Environment (set by internal/dev/localcloud): the LC_* of up.sh, and LC_NOVA_PORT,
# LC_PLACEMENT_PORT, LC_GLANCE_PORT, LC_NEUTRON_PORT, LC_COMPUTE_PACKAGES (installed by the Go
# side first). Idempotent: about 2 s when everything is up. Processes are recorded in
# $LC_DIR/state/run/*.pid beside up.sh's; down.sh stops them (never by name).
set -Eeuo pipefail

T0=$(date +%s%N)
NAME=${LC_NAME:?LC_NAME is required}
LAB_DIR=${LC_DIR:?LC_DIR is required}
STATE=$LAB_DIR/state

HOST=127.0.0.1
KEYSTONE_PORT=${LC_KEYSTONE_PORT:?}
PG_PORT=${LC_PG_PORT:?}
RABBIT_PORT=${LC_RABBIT_PORT:?}
REGION=${LC_REGION:?}
NOVA_PORT=${LC_NOVA_PORT:?}
PLACEMENT_PORT=${LC_PLACEMENT_PORT:?}
GLANCE_PORT=${LC_GLANCE_PORT:?}
NEUTRON_PORT=${LC_NEUTRON_PORT:?}
PACKAGES=(${LC_COMPUTE_PACKAGES:?LC_COMPUTE_PACKAGES is required})   # localcloud.ComputePackages

ADMIN_USER=admin; ADMIN_PASSWORD=heatlab-admin; ADMIN_PROJECT=admin   # as up.sh
DB_PASSWORD=heatlab-db                                                 # as up.sh
NOVA_SVC_PASSWORD=labplane-nova; PLACEMENT_SVC_PASSWORD=labplane-placement; GLANCE_SVC_PASSWORD=labplane-glance
COMPUTE_HOST=labplane-$NAME
FLAVOR=lab.tiny
IMAGE=lab-fake-image

KS_URL=http://$HOST:$KEYSTONE_PORT
NOVA_URL=http://$HOST:$NOVA_PORT
PLACEMENT_URL=http://$HOST:$PLACEMENT_PORT
GLANCE_URL=http://$HOST:$GLANCE_PORT
NEUTRON_URL=http://$HOST:$NEUTRON_PORT
PY=/usr/bin/python3            # Debian's python: the OpenStack libs live in its dist-packages
PGURL=postgresql+psycopg2

STEP=compute
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # log, die, alive, wait_for, ...
trap 'die "failed at line $LINENO: $BASH_COMMAND (logs: $STATE/log)"' ERR

psql_pg() { as_pg "$(pg_bin)/psql" -h "$STATE/pg" -p "$PG_PORT" -U postgres -qtAX -v ON_ERROR_STOP=1 "$@"; }

NOVA_CONF=$STATE/etc/nova.conf
# the services, in start order, with the marker their command line must hold (down.sh and
# localcloud.go use the same markers)
SERVICES=(fake-neutron placement glance-api nova-conductor nova-scheduler nova-api nova-compute)
marker() {
  case $1 in
    fake-neutron)   echo "$STATE/etc/fake-neutron.py" ;;
    placement)      echo "$STATE/etc/placement-uwsgi.ini" ;;
    glance-api)     echo "$STATE/etc/glance-api.conf" ;;
    nova-compute)   echo "$STATE/etc/nova-compute.conf" ;;
    nova-*)         echo "$1 --config-file $NOVA_CONF" ;;
  esac
}
all_alive() { local s; for s in "${SERVICES[@]}"; do alive "$s" "$(marker "$s")" || return 1; done; }
apis_ok() {
  [[ $(http_code "$PLACEMENT_URL/") == 200 && $(http_code "$GLANCE_URL/versions") == 200 &&
     $(http_code "$NOVA_URL/v2.1/") == 200 && $(http_code "$NEUTRON_URL/") == 200 ]]
}

[[ -S $STATE/pg/.s.PGSQL.$PG_PORT && $(http_code "$KS_URL/v3") == 200 ]] ||
  die "the instance's Keystone and PostgreSQL are not up (up.sh runs first)"

# ---------- 0. fast path ----------
if [[ -e $STATE/compute-ready ]] && all_alive && apis_ok; then
  log "already up (nova $NOVA_URL/v2.1, placement $PLACEMENT_URL, glance $GLANCE_URL)"
  log "total $(elapsed)s"; exit 0
fi
rm -f "$STATE/compute-ready"

# ---------- 1. packages (installed by the Go side, internal/apt, before this script runs) ----------
need_packages "${PACKAGES[@]}"

# ---------- 2. state dirs + config (always rewritten; cheap) ----------
mkdir -p "$STATE"/{etc/placement,log,run,lock,nova/instances,glance/images,glance/staging,glance/tasks}

authtoken() { # authtoken USER PASSWORD
  cat <<EOF
www_authenticate_uri = $KS_URL/v3
auth_url = $KS_URL/v3
auth_type = password
username = $1
password = $2
user_domain_name = Default
project_name = service
project_domain_name = Default
region_name = $REGION
interface = public
EOF
}
svc_auth() { # svc_auth USER PASSWORD  (keystoneauth password plugin for service-to-service calls)
  cat <<EOF
auth_type = password
auth_url = $KS_URL/v3
username = $1
password = $2
user_domain_name = Default
project_name = service
project_domain_name = Default
region_name = $REGION
EOF
}
cat >"$STATE/etc/placement/placement.conf" <<EOF
[DEFAULT]
log_dir = $STATE/log
log_file = placement.log
[api]
auth_strategy = keystone
[placement_database]
connection = $PGURL://placement:$DB_PASSWORD@$HOST:$PG_PORT/placement
[keystone_authtoken]
$(authtoken placement "$PLACEMENT_SVC_PASSWORD")
[oslo_concurrency]
lock_path = $STATE/lock
EOF

uwsgi_ini "$STATE/etc/placement-uwsgi.ini" "$PLACEMENT_PORT" /usr/bin/placement-api "OS_PLACEMENT_CONFIG_DIR=$STATE/etc/placement" 4

cat >"$STATE/etc/glance-api.conf" <<EOF
[DEFAULT]
log_dir = $STATE/log
log_file = glance-api.log
bind_host = $HOST
bind_port = $GLANCE_PORT
workers = 1
enabled_backends = fs:file
image_cache_dir = $STATE/glance/cache
[database]
connection = $PGURL://glance:$DB_PASSWORD@$HOST:$PG_PORT/glance
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $STATE/glance/images/
[os_glance_staging_store]
filesystem_store_datadir = $STATE/glance/staging/
[os_glance_tasks_store]
filesystem_store_datadir = $STATE/glance/tasks/
[keystone_authtoken]
$(authtoken glance "$GLANCE_SVC_PASSWORD")
[paste_deploy]
flavor = keystone
config_file = /etc/glance/glance-api-paste.ini
[oslo_concurrency]
lock_path = $STATE/lock
[oslo_messaging_notifications]
driver = noop
EOF

# nova.conf (api, conductor, scheduler, nova-manage) = common + the database sections;
# nova-compute.conf = common + the fake driver and NO database section (nova-compute must not
# touch the database: it logs "No DB access allowed in nova-compute" if it sees a connection).
nova_common() {
  cat <<EOF
[DEFAULT]
log_dir = $STATE/log
state_path = $STATE/nova
instances_path = $STATE/nova/instances
transport_url = rabbit://guest:guest@$HOST:$RABBIT_PORT/
my_ip = $HOST
host = $COMPUTE_HOST
EOF
  if [[ $1 == compute ]]; then
    printf 'compute_driver = fake.FakeDriver\nlog_file = nova-compute.log\n'
  else
    cat <<EOF
enabled_apis = osapi_compute
osapi_compute_listen = $HOST
osapi_compute_listen_port = $NOVA_PORT
osapi_compute_workers = 1
[api_database]
connection = $PGURL://nova:$DB_PASSWORD@$HOST:$PG_PORT/nova_api
[database]
connection = $PGURL://nova:$DB_PASSWORD@$HOST:$PG_PORT/nova
EOF
  fi
  cat <<EOF
[api]
auth_strategy = keystone
[wsgi]
api_paste_config = /etc/nova/api-paste.ini
[keystone_authtoken]
$(authtoken nova "$NOVA_SVC_PASSWORD")
[placement]
$(svc_auth nova "$NOVA_SVC_PASSWORD")
valid_interfaces = public
[glance]
region_name = $REGION
valid_interfaces = public
[neutron]
# no Neutron: a stub that answers every list with [] (Nova lists a server's ports on
# GET /servers/{id}/os-interface, which Heat calls after a create, and on delete)
$(svc_auth nova "$NOVA_SVC_PASSWORD")
endpoint_override = $NEUTRON_URL
[cinder]
os_region_name = $REGION
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = -1
[quota]
# the tests and benchmarks run many 2-server labs in one learner project (Nova's default: 10)
instances = 1000
cores = 1000
ram = 1024000
key_pairs = 1000
[vnc]
enabled = false
[oslo_concurrency]
lock_path = $STATE/lock
[oslo_messaging_rabbit]
heartbeat_timeout_threshold = 0
[oslo_messaging_notifications]
driver = noop
EOF
}
nova_common control >"$NOVA_CONF"
nova_common compute >"$STATE/etc/nova-compute.conf"

cat >"$STATE/etc/fake-neutron.py" <<'EOF'
# A stand-in for the Neutron API (loopback only). Nova (not Heat: it is not in the catalog)
# lists the ports of servers created with networks=none; every collection is empty.
import json, sys, http.server, urllib.parse
PORT = int(sys.argv[1])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def _send(self, code, body):
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)
    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path.rstrip("/")
        parts = [p for p in path.split("/") if p]
        if not parts:
            return self._send(200, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [
                {"rel": "self", "href": "http://127.0.0.1:%d/v2.0/" % PORT}]}]})
        if parts[0] == "v2.0" and len(parts) == 2:
            coll = parts[1][:-5] if parts[1].endswith(".json") else parts[1]
            return self._send(200, {coll.replace("-", "_"): []})
        self._send(404, {"NeutronError": {"type": "NotFound", "message": "fake-neutron: %s not found" % path, "detail": ""}})
    def _unsupported(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n: self.rfile.read(n)
        self._send(404, {"NeutronError": {"type": "NotFound", "message": "fake-neutron: %s %s unsupported" % (self.command, self.path), "detail": ""}})
    do_POST = do_PUT = do_DELETE = _unsupported
    def log_message(self, fmt, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", PORT), H).serve_forever()
EOF

# ---------- 3. databases in the instance's PostgreSQL ----------
for spec in placement:placement glance:glance nova:nova_api nova:nova nova:nova_cell0; do
  role=${spec%%:*} db=${spec#*:}
  if [[ -z $(psql_pg -d postgres -c "select 1 from pg_roles where rolname='$role'") ]]; then
    psql_pg -d postgres -c "create role $role login password '$DB_PASSWORD'"
  fi
  if [[ -z $(psql_pg -d postgres -c "select 1 from pg_database where datname='$db'") ]]; then
    psql_pg -d postgres -c "create database $db owner $role"
  fi
done
ver() { dpkg-query -W -f='${Version}' "$1"; }

# ---------- 4. schemas (placement, glance and nova at once) ----------
SYNC_PIDS=()
if [[ $(cat "$STATE/placement-db-synced" 2>/dev/null) != "$(ver python3-placement)" ]]; then
  log "placement-manage db sync (background)"
  ( OS_PLACEMENT_CONFIG_DIR=$STATE/etc/placement /usr/bin/placement-manage --config-file "$STATE/etc/placement/placement.conf" db sync &&
    ver python3-placement >"$STATE/placement-db-synced" ) >>"$STATE/log/placement-manage.log" 2>&1 &
  SYNC_PIDS+=($!)
fi
if [[ $(cat "$STATE/glance-db-synced" 2>/dev/null) != "$(ver python3-glance)" ]]; then
  log "glance-manage db_sync (background)"
  ( /usr/bin/glance-manage --config-file "$STATE/etc/glance-api.conf" db_sync &&
    ver python3-glance >"$STATE/glance-db-synced" ) >>"$STATE/log/glance-manage.log" 2>&1 &
  SYNC_PIDS+=($!)
fi
if [[ $(cat "$STATE/nova-db-synced" 2>/dev/null) != "$(ver python3-nova)" ]]; then
  log "nova-manage api_db sync, cell_v2 map_cell0/create_cell, db sync (background)"
  NM=(/usr/bin/nova-manage --config-file "$NOVA_CONF")
  (
    set -e
    "${NM[@]}" api_db sync
    "${NM[@]}" cell_v2 map_cell0 --database_connection "$PGURL://nova:$DB_PASSWORD@$HOST:$PG_PORT/nova_cell0"
    if ! "${NM[@]}" cell_v2 list_cells | grep -q ' cell1 '; then "${NM[@]}" cell_v2 create_cell --name cell1 --verbose; fi
    "${NM[@]}" db sync
    ver python3-nova >"$STATE/nova-db-synced"
  ) >>"$STATE/log/nova-manage.log" 2>&1 &
  SYNC_PIDS+=($!)
fi

# ---------- 5. Keystone users, services, endpoints (idempotent, via REST) ----------
if [[ ! -e $STATE/keystone/compute-objects-done ]]; then
  log "creating keystone users/services/endpoints for nova, placement, glance"
  KS_URL=$KS_URL REGION=$REGION ADMIN_USER=$ADMIN_USER ADMIN_PASSWORD=$ADMIN_PASSWORD ADMIN_PROJECT=$ADMIN_PROJECT \
  SVCS="nova:$NOVA_SVC_PASSWORD:compute:$NOVA_URL/v2.1 placement:$PLACEMENT_SVC_PASSWORD:placement:$PLACEMENT_URL glance:$GLANCE_SVC_PASSWORD:image:$GLANCE_URL" \
  PYTHONPATH=$LIB_DIR "$PY" - <<'PYEOF'
from rest import E, admin_token, ensure, find, req
T = admin_token()
admin_role = find(T, "roles", name="admin")["id"]
service = find(T, "projects", name="service", domain_id="default")
for spec in E["SVCS"].split():
    name, pw, stype, url = spec.split(":", 3)
    u = ensure(T, "users", "user", {"name": name, "domain_id": "default", "password": pw}, name=name, domain_id="default")
    req("PUT", f"/projects/{service['id']}/users/{u['id']}/roles/{admin_role}", token=T)
    svc = ensure(T, "services", "service", {"name": name, "type": stype}, type=stype)
    have = {e["interface"] for e in req("GET", f"/endpoints?service_id={svc['id']}", token=T)[1]["endpoints"]}
    for iface in ("public", "internal", "admin"):
        if iface not in have:
            req("POST", "/endpoints", {"endpoint": {"service_id": svc["id"], "interface": iface,
                "region_id": E["REGION"], "url": url}}, token=T)
print("keystone objects ok")
PYEOF
  touch "$STATE/keystone/compute-objects-done"
fi

for p in "${SYNC_PIDS[@]}"; do
  wait "$p" || die "a db sync failed (see $STATE/log/{placement,glance,nova}-manage.log)"
done

# ---------- 6. start the services ----------
start() { # start NAME PORT(or -) CMD...
  local name=$1 port=$2; shift 2
  alive "$name" "$(marker "$name")" && return 0
  if [[ $port != - ]] && port_open "$port"; then die "port $port ($name) is in use by something compute-up.sh did not start"; fi
  log "starting $name$([[ $port != - ]] && echo " on $HOST:$port")"
  setsid "$@" </dev/null >>"$STATE/log/$name.stdout.log" 2>&1 &
  echo $! >"$STATE/run/$name.pid"
}
start fake-neutron "$NEUTRON_PORT" "$PY" "$STATE/etc/fake-neutron.py" "$NEUTRON_PORT"
start placement "$PLACEMENT_PORT" /usr/bin/uwsgi --ini "$STATE/etc/placement-uwsgi.ini"
start glance-api "$GLANCE_PORT" /usr/bin/glance-api --config-file "$STATE/etc/glance-api.conf"
start nova-conductor - /usr/bin/nova-conductor --config-file "$NOVA_CONF"
start nova-scheduler - /usr/bin/nova-scheduler --config-file "$NOVA_CONF"
start nova-api "$NOVA_PORT" /usr/bin/nova-api --config-file "$NOVA_CONF"
COMPUTE_T0=$(( $(date +%s) - 1 ))
alive nova-compute "$(marker nova-compute)" && COMPUTE_T0=0
# nova-compute without the nova-compute package (which pulls libvirt and qemu): nova.cmd.compute.main
start nova-compute - "$PY" -c 'import sys; from nova.cmd.compute import main; sys.argv[0] = "nova-compute"; sys.exit(main())' \
  --config-file "$STATE/etc/nova-compute.conf"

svc_check() {
  local s; for s in "${SERVICES[@]}"; do
    alive "$s" "$(marker "$s")" || { tail -5 "$STATE/log/$s.log" "$STATE/log/$s.stdout.log" 2>/dev/null >&2; die "$s died"; }
  done
}
wait_http() { svc_check; [[ $(http_code "$1") == "$2" ]]; }
wait_for 60 "placement $PLACEMENT_URL" wait_http "$PLACEMENT_URL/" 200
wait_for 90 "glance $GLANCE_URL" wait_http "$GLANCE_URL/versions" 200
wait_for 90 "nova-api $NOVA_URL" wait_http "$NOVA_URL/v2.1/" 200
log "placement, glance, nova-api answer"

# ---------- 7. compute host in cell1, resource provider, flavor, image ----------
compute_registered() { # its compute node exists and nova-compute reported since it was (re)started
  svc_check
  [[ $(psql_pg -d nova -c "select count(*) from compute_nodes where host='$COMPUTE_HOST' and deleted=0") -ge 1 ]] &&
  [[ $(psql_pg -d nova -c "select count(*) from services where host='$COMPUTE_HOST' and \"binary\"='nova-compute'
       and deleted=0 and coalesce(last_seen_up, updated_at, created_at) >= to_timestamp($COMPUTE_T0) at time zone 'utc'") -ge 1 ]]
}
wait_for 120 "nova-compute to register its compute node" compute_registered
mapped() { [[ $(psql_pg -d nova_api -c "select count(*) from host_mappings where host='$COMPUTE_HOST'") -ge 1 ]]; }
if ! mapped; then
  /usr/bin/nova-manage --config-file "$NOVA_CONF" cell_v2 discover_hosts --verbose >>"$STATE/log/nova-manage.log" 2>&1
  mapped || die "discover_hosts did not map $COMPUTE_HOST (see $STATE/log/nova-manage.log)"
  log "compute host $COMPUTE_HOST mapped to cell1"
fi
rp_ready() { svc_check; [[ $(psql_pg -d placement -c "select count(*) from resource_providers where name='$COMPUTE_HOST'") -ge 1 ]]; }
wait_for 60 "placement resource provider $COMPUTE_HOST" rp_ready

if [[ ! -e $STATE/compute-flavor-image-done ]]; then
KS_URL=$KS_URL REGION=$REGION ADMIN_USER=$ADMIN_USER ADMIN_PASSWORD=$ADMIN_PASSWORD ADMIN_PROJECT=$ADMIN_PROJECT \
NOVA_URL=$NOVA_URL GLANCE_URL=$GLANCE_URL FLAVOR=$FLAVOR IMAGE=$IMAGE PYTHONPATH=$LIB_DIR "$PY" - <<'PYEOF' || die "flavor/image setup failed"
import time
from rest import E, admin_token, req
T = admin_token()
N = E["NOVA_URL"] + "/v2.1"
flavors = req("GET", N + "/flavors", token=T)[1]["flavors"]
if not any(f["name"] == E["FLAVOR"] for f in flavors):
    req("POST", N + "/flavors", {"flavor": {"name": E["FLAVOR"], "ram": 64, "vcpus": 1, "disk": 1,
        "os-flavor-access:is_public": True}}, token=T)
    print("flavor", E["FLAVOR"], "created")
G = E["GLANCE_URL"] + "/v2"
imgs = req("GET", G + "/images?name=" + E["IMAGE"], token=T)[1]["images"]
if imgs and imgs[0]["status"] != "active":
    for i in imgs: req("DELETE", G + "/images/" + i["id"], token=T)
    imgs = []
if not imgs:
    _, img = req("POST", G + "/images", {"name": E["IMAGE"], "disk_format": "raw", "container_format": "bare",
        "visibility": "public", "min_disk": 0, "min_ram": 0}, token=T)
    req("PUT", G + "/images/%s/file" % img["id"], raw=b"\0" * 1024, token=T, ctype="application/octet-stream")
    for _ in range(50):
        if req("GET", G + "/images/" + img["id"], token=T)[1]["status"] == "active": break
        time.sleep(0.2)
    else:
        raise SystemExit("image did not become active")
    print("image", E["IMAGE"], "uploaded:", img["id"])
PYEOF
  touch "$STATE/compute-flavor-image-done"
fi

svc_check
touch "$STATE/compute-ready"
rss=$(for n in "${SERVICES[@]}"; do cat "$STATE/run/$n.pid"; done |
      xargs -I{} sh -c 'ps -o rss= --pid {} --ppid {}' 2>/dev/null | awk '{s+=$1} END {printf "%d", s/1024}')
log "UP: nova $NOVA_URL/v2.1 (fake driver, host $COMPUTE_HOST)  placement $PLACEMENT_URL  glance $GLANCE_URL  (~${rss} MiB RSS incl. children)"
log "flavor $FLAVOR, image $IMAGE; servers need  networks: [{allocate_network: none}]"
log "total $(elapsed)s"
