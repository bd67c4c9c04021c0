#!/usr/bin/env bash
# up.sh - bring up a REAL OpenStack Keystone + Heat on 127.0.0.1 (Debian 12 packages) for one
# labplane local cloud instance. Embedded in the labplane binary (internal/dev/localcloud) and run by
# it with bash; adapted from the team's shared recipe (openstack/up.sh), with every setting passed
# in by the Go side so that several named instances (local-a, local-b) can run side by side.
#
#   Keystone 22 (Zed) under uWSGI, fernet tokens      -> http://127.0.0.1:$LC_KEYSTONE_PORT/v3
#   Heat 19 (Zed) heat-api (eventlet) + heat-engine    -> http://127.0.0.1:$LC_HEAT_PORT/v1/<project_id>
#   PostgreSQL 15 (private cluster), RabbitMQ 3.10 (private node, private epmd)
#
# Environment (all required, set by internal/localcloud): LC_NAME, LC_DIR, LC_CLOUDS_YAML,
#   LC_KEYSTONE_PORT, LC_HEAT_PORT, LC_PG_PORT, LC_RABBIT_PORT, LC_RABBIT_DIST_PORT, LC_EPMD_PORT,
#   LC_REGION, LC_PACKAGES (the Debian packages it needs, installed by the Go side first);
#   LC_MAX_STACKS_PER_TENANT (Heat's max_stacks_per_tenant; 0: Heat's default, 512).
# Idempotent: if everything is already up it only rewrites clouds.yaml and exits 0.
# Everything except the Debian packages lives under $LC_DIR/state. Every listener binds to
# 127.0.0.1 only. Processes are recorded in $LC_DIR/state/run/*.pid; nothing is ever killed by name.
set -Eeuo pipefail

T0=$(date +%s%N)
NAME=${LC_NAME:?LC_NAME is required}
LAB_DIR=${LC_DIR:?LC_DIR is required}
STATE=$LAB_DIR/state
CLOUDS_YAML=${LC_CLOUDS_YAML:?LC_CLOUDS_YAML is required}

HOST=127.0.0.1
KEYSTONE_PORT=${LC_KEYSTONE_PORT:?}
HEAT_PORT=${LC_HEAT_PORT:?}
PG_PORT=${LC_PG_PORT:?}
RABBIT_PORT=${LC_RABBIT_PORT:?}
RABBIT_DIST_PORT=${LC_RABBIT_DIST_PORT:?}
EPMD_PORT=${LC_EPMD_PORT:?}
REGION=${LC_REGION:?}
ENGINE_WORKERS=${LC_ENGINE_WORKERS:-1}
MAX_STACKS=${LC_MAX_STACKS_PER_TENANT:-0}
NOVA_PORT=${LC_NOVA_PORT:-0}   # not 0: compute-up.sh adds Nova after this script (local-servers)

# Fixed, well-known lab credentials (loopback only, throw-away).
ADMIN_USER=admin;        ADMIN_PASSWORD=heatlab-admin; ADMIN_PROJECT=admin
LEARNER_USER=learner;    LEARNER_PASSWORD=heatlab-learner; LEARNER_PROJECT=learner-lab
HEAT_SVC_PASSWORD=heatlab-heat-service
HEAT_DOMAIN_ADMIN_PASSWORD=heatlab-heat-domain-admin
DB_PASSWORD=heatlab-db
AUTH_ENCRYPTION_KEY=heatlab-auth-encryption-key-0032  # must be exactly 32 chars

KS_URL=http://$HOST:$KEYSTONE_PORT
HEAT_URL=http://$HOST:$HEAT_PORT
PY=/usr/bin/python3            # Debian's python: the OpenStack libs live in its dist-packages
PACKAGES=(${LC_PACKAGES:?LC_PACKAGES is required})   # localcloud.Packages

log()  { printf '[localcloud %s up %6ss] %s\n' "$NAME" "$(elapsed)" "$*"; }
die()  { printf '[localcloud %s up %6ss] ERROR: %s\n' "$NAME" "$(elapsed)" "$*" >&2; exit 1; }
elapsed() { awk -v a="$T0" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f", (b-a)/1e9}'; }
trap 'die "failed at line $LINENO: $BASH_COMMAND (logs: $STATE/log)"' ERR

# ---------- process helpers (pid files + cmdline check, never by name) ----------
# alive NAME MARKER : pid file $STATE/run/NAME.pid exists, process alive (not zombie) and its
# command line or environment contains MARKER (guards against PID reuse)
alive() {
  local f=$STATE/run/$1.pid pid
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) =~ ^[RSDTtWIP]$ ]] || return 1
  cat "/proc/$pid/cmdline" "/proc/$pid/environ" 2>/dev/null | tr '\0' ' ' | grep -qF -- "$2"
}
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
wait_for() { # wait_for SECONDS DESCRIPTION CMD...
  local secs=$1 what=$2; shift 2
  local end=$(( $(date +%s) + secs ))
  until "$@"; do
    (( $(date +%s) < end )) || die "timeout after ${secs}s waiting for $what (logs: $STATE/log)"
    sleep 0.3
  done
}
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time "${2:-5}" "$1" || true; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
as_pg()  { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }

get_token() { # get_token USER PASSWORD PROJECT -> prints token id
  curl -s -D - -o /dev/null --max-time 10 -H 'Content-Type: application/json' "$KS_URL/v3/auth/tokens" -d "{
    \"auth\": {\"identity\": {\"methods\": [\"password\"], \"password\": {\"user\": {\"name\": \"$1\",
    \"domain\": {\"id\": \"default\"}, \"password\": \"$2\"}}},
    \"scope\": {\"project\": {\"name\": \"$3\", \"domain\": {\"id\": \"default\"}}}}}" |
    awk 'tolower($1)=="x-subject-token:" {print $2}' | tr -d '\r'
}
engine_ok() { # heat-api -> RPC -> heat-engine -> DB round trip
  local tok pid
  tok=$(get_token "$ADMIN_USER" "$ADMIN_PASSWORD" "$ADMIN_PROJECT") || return 1
  [[ -n $tok ]] || return 1
  pid=$(curl -s --max-time 5 -H "X-Auth-Token: $tok" "$KS_URL/v3/auth/tokens" -H "X-Subject-Token: $tok" | jq -r .token.project.id) || return 1
  [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 15 -H "X-Auth-Token: $tok" "$HEAT_URL/v1/$pid/stacks?limit=1") == 200 ]]
}

write_clouds_yaml() {
  mkdir -p "$(dirname "$CLOUDS_YAML")"
  cat >"$CLOUDS_YAML" <<EOF
# Generated by labplane dev cloud $NAME ($(date -u +%FT%TZ)) - Keystone+Heat on 127.0.0.1
# $NAME: the learner-lab project user (member role), the one labplane uses; $NAME-admin: cloud admin
clouds:
  $NAME-admin:
    auth:
      auth_url: $KS_URL/v3
      username: $ADMIN_USER
      password: $ADMIN_PASSWORD
      project_name: $ADMIN_PROJECT
      user_domain_name: Default
      project_domain_name: Default
    region_name: $REGION
    interface: public
    identity_api_version: 3
  $NAME:
    auth:
      auth_url: $KS_URL/v3
      username: $LEARNER_USER
      password: $LEARNER_PASSWORD
      project_name: $LEARNER_PROJECT
      user_domain_name: Default
      project_domain_name: Default
    region_name: $REGION
    interface: public
    identity_api_version: 3
EOF
  chmod 600 "$CLOUDS_YAML"
}

all_pids_alive() {
  alive postgres "$STATE/pg/data" && alive epmd "-port $EPMD_PORT " && alive rabbitmq "$STATE/rabbit" &&
  alive keystone "$STATE/etc/keystone-uwsgi.ini" && alive heat-engine "$STATE/etc/heat.conf" &&
  alive heat-api "$STATE/etc/heat.conf"
}

# ---------- 0. fast path ----------
if command -v jq >/dev/null && all_pids_alive &&
   [[ $(http_code "$KS_URL/v3") == 200 ]] && [[ $(http_code "$HEAT_URL/") == 300 ]] && engine_ok; then
  write_clouds_yaml
  log "already up (keystone $KS_URL/v3, heat $HEAT_URL); wrote $CLOUDS_YAML"
  log "total $(elapsed)s"
  exit 0
fi

# ---------- 1. packages (installed by the Go side, internal/apt, before this script runs) ----------
mkdir -p "$LAB_DIR"
for p in "${PACKAGES[@]}"; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) == "install ok installed" ]] ||
    die "Debian package $p is not installed (labplane dev cloud up installs it: run it through labplane)"
done
PGBIN=$(pg_bin); [[ -x $PGBIN/postgres ]] || die "PostgreSQL binaries not found"

# ---------- 2. layout + config files (always rewritten; cheap) ----------
mkdir -p "$STATE"/{etc,run,log,lock,keystone,rabbit,pg} "$LAB_DIR"
chmod 755 "$LAB_DIR" "$STATE"
chown postgres:postgres "$STATE/pg"

cat >"$STATE/etc/keystone.conf" <<EOF
[DEFAULT]
log_dir = $STATE/log
log_file = keystone.log
[database]
connection = postgresql+psycopg2://keystone:$DB_PASSWORD@$HOST:$PG_PORT/keystone
[token]
provider = fernet
expiration = 14400
[fernet_tokens]
key_repository = $STATE/keystone/fernet-keys
[fernet_receipts]
key_repository = $STATE/keystone/fernet-keys
[credential]
key_repository = $STATE/keystone/credential-keys
[identity]
# bcrypt cost: 4 (minimum) keeps password auth ~ms instead of ~0.3s per token
password_hash_rounds = 4
[cache]
# in-process cache: ~15 ms instead of ~700 ms per authenticated request. Safe because
# keystone runs as ONE uwsgi worker process (cache invalidation is per process).
enabled = true
backend = dogpile.cache.memory
expiration_time = 600
[oslo_concurrency]
lock_path = $STATE/lock
EOF

cat >"$STATE/etc/keystone-uwsgi.ini" <<EOF
[uwsgi]
plugins = python3
http-socket = $HOST:$KEYSTONE_PORT
# uwsgi's http-socket closes each connection without saying so: a client that reuses
# connections then fails about 4% of its requests (connection reset); say it
add-header = Connection: close
wsgi-file = /usr/bin/keystone-wsgi-public
env = OS_KEYSTONE_CONFIG_FILES=$STATE/etc/keystone.conf
master = true
processes = 1
threads = 8
enable-threads = true
lazy-apps = true
die-on-term = true
no-orphans = true
buffer-size = 65535
need-app = true
chdir = $STATE
disable-logging = true
EOF

# Heat refuses a create (HTTP 400, RequestLimitExceeded) in a project that holds this many stacks;
# admin contexts are exempt (heat/engine/service.py, _validate_new_stack). Only set where asked.
[[ $MAX_STACKS =~ ^[0-9]+$ ]] || die "LC_MAX_STACKS_PER_TENANT must be a number, not '$MAX_STACKS'"
STACK_LIMIT="# max_stacks_per_tenant: Heat's default"
if ((MAX_STACKS > 0)); then STACK_LIMIT="max_stacks_per_tenant = $MAX_STACKS"; fi
# With Nova: Zed's Nova (2.93) generates no key pair past microversion 2.92, and Heat talks the
# newest one, so an OS::Nova::KeyPair without public_key would be refused; 2.91 keeps it.
NOVA_MICROVERSION="# max_nova_api_microversion: the newest"
if [[ $NOVA_PORT != 0 ]]; then NOVA_MICROVERSION="max_nova_api_microversion = 2.91"; fi
cat >"$STATE/etc/heat.conf" <<EOF
[DEFAULT]
$STACK_LIMIT
$NOVA_MICROVERSION
log_dir = $STATE/log
transport_url = rabbit://guest:guest@$HOST:$RABBIT_PORT/
host = labplane-$NAME
num_engine_workers = $ENGINE_WORKERS
region_name_for_services = $REGION
auth_encryption_key = $AUTH_ENCRYPTION_KEY
stack_user_domain_name = heat
stack_domain_admin = heat_domain_admin
stack_domain_admin_password = $HEAT_DOMAIN_ADMIN_PASSWORD
heat_metadata_server_url = http://$HOST:8000
heat_waitcondition_server_url = http://$HOST:8000/v1/waitcondition
deferred_auth_method = trusts
[database]
connection = postgresql+psycopg2://heat:$DB_PASSWORD@$HOST:$PG_PORT/heat
[heat_api]
bind_host = $HOST
bind_port = $HEAT_PORT
workers = 1
[keystone_authtoken]
www_authenticate_uri = $KS_URL/v3
auth_url = $KS_URL/v3
auth_type = password
username = heat
password = $HEAT_SVC_PASSWORD
user_domain_name = Default
project_name = service
project_domain_name = Default
region_name = $REGION
interface = public
[trustee]
auth_type = password
auth_url = $KS_URL/v3
username = heat
password = $HEAT_SVC_PASSWORD
user_domain_name = Default
[clients_keystone]
auth_uri = $KS_URL
[ec2authtoken]
auth_uri = $KS_URL/v3
[clients]
endpoint_type = public
[paste_deploy]
api_paste_config = /etc/heat/api-paste.ini
[oslo_concurrency]
lock_path = $STATE/lock
[oslo_messaging_rabbit]
heartbeat_timeout_threshold = 0
EOF

cat >"$STATE/etc/rabbitmq.conf" <<EOF
listeners.tcp.default = $HOST:$RABBIT_PORT
loopback_users.guest = true
log.console = false
log.file.level = warning
disk_free_limit.absolute = 50MB
EOF
echo '[].' >"$STATE/etc/enabled_plugins"
: >"$STATE/etc/rabbitmq-env.conf"

# keystone key repositories (no DB needed): in the background while the rest starts
KS_MANAGE=(/usr/bin/keystone-manage --config-file "$STATE/etc/keystone.conf")
KEYS_PID=
if [[ ! -s $STATE/keystone/fernet-keys/0 || ! -s $STATE/keystone/credential-keys/0 ]]; then
  ( "${KS_MANAGE[@]}" fernet_setup --keystone-user root --keystone-group root &&
    "${KS_MANAGE[@]}" credential_setup --keystone-user root --keystone-group root ) >>"$STATE/log/keystone-manage.log" 2>&1 &
  KEYS_PID=$!
fi

# ---------- 3. RabbitMQ (slow to boot: start first, in background) ----------
export ERL_EPMD_ADDRESS=$HOST ERL_EPMD_PORT=$EPMD_PORT
rabbit_env=(HOME="$STATE/rabbit" RABBITMQ_NODENAME=heatlab$RABBIT_PORT@localhost
  RABBITMQ_CONF_ENV_FILE="$STATE/etc/rabbitmq-env.conf" RABBITMQ_CONFIG_FILE="$STATE/etc/rabbitmq.conf"
  RABBITMQ_ENABLED_PLUGINS_FILE="$STATE/etc/enabled_plugins" RABBITMQ_MNESIA_BASE="$STATE/rabbit/mnesia"
  RABBITMQ_LOG_BASE="$STATE/log/rabbitmq" RABBITMQ_PID_FILE="$STATE/run/rabbitmq-beam.pid"
  RABBITMQ_NODE_IP_ADDRESS=$HOST RABBITMQ_NODE_PORT=$RABBIT_PORT RABBITMQ_DIST_PORT=$RABBIT_DIST_PORT
  RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}")
if ! alive epmd "-port $EPMD_PORT "; then
  port_open "$EPMD_PORT" && die "port $EPMD_PORT (epmd) is in use by something up.sh did not start"
  setsid epmd -address "$HOST" -port "$EPMD_PORT" </dev/null >>"$STATE/log/epmd.log" 2>&1 &
  echo $! >"$STATE/run/epmd.pid"
  wait_for 10 epmd port_open "$EPMD_PORT"
fi
if ! alive rabbitmq "$STATE/rabbit"; then
  port_open "$RABBIT_PORT" && die "port $RABBIT_PORT (rabbitmq) is in use by something up.sh did not start"
  log "starting rabbitmq on $HOST:$RABBIT_PORT"
  mkdir -p "$STATE/log/rabbitmq"
  env "${rabbit_env[@]}" setsid /usr/lib/rabbitmq/bin/rabbitmq-server </dev/null >>"$STATE/log/rabbitmq-stdout.log" 2>&1 &
  echo $! >"$STATE/run/rabbitmq.pid"
fi

# ---------- 4. PostgreSQL private cluster ----------
PGDATA=$STATE/pg/data
if [[ ! -s $PGDATA/PG_VERSION ]]; then
  log "initdb $PGDATA"
  as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$STATE/log/initdb.log" 2>&1
  cat >>"$PGDATA/postgresql.conf" <<EOF
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$STATE/pg'
shared_buffers = 32MB
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
fi
if ! alive postgres "$PGDATA"; then
  port_open "$PG_PORT" && die "port $PG_PORT (postgres) is in use by something up.sh did not start"
  rm -f "$PGDATA/postmaster.pid"
  touch "$STATE/log/postgres.log"; chown postgres:postgres "$STATE/log/postgres.log"
  log "starting postgres on $HOST:$PG_PORT"
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$STATE/log/postgres.log" -w -t 60 start >/dev/null
  head -1 "$PGDATA/postmaster.pid" >"$STATE/run/postgres.pid"
fi
psql_pg() { as_pg "$PGBIN/psql" -h "$STATE/pg" -p "$PG_PORT" -U postgres -qtAX -v ON_ERROR_STOP=1 "$@"; }
for db in keystone heat; do
  if [[ -z $(psql_pg -d postgres -c "select 1 from pg_database where datname='$db'") ]]; then
    psql_pg -d postgres -c "create role $db login password '$DB_PASSWORD'" 2>/dev/null || true
    psql_pg -d postgres -c "create database $db owner $db"
  fi
done

# ---------- 5. schemas: heat db_sync (background) || keystone db_sync + bootstrap ----------
heat_ver=$(dpkg-query -W -f='${Version}' python3-heat)
HEATDB_PID=
if [[ $(cat "$STATE/heat-db-synced" 2>/dev/null) != "$heat_ver" ]]; then
  log "heat-manage db_sync (background)"
  /usr/bin/heat-manage --config-file "$STATE/etc/heat.conf" db_sync >>"$STATE/log/heat-manage.log" 2>&1 &
  HEATDB_PID=$!
fi
ks_ver=$(dpkg-query -W -f='${Version}' python3-keystone)
if [[ $(cat "$STATE/keystone/db-synced" 2>/dev/null) != "$ks_ver" ]]; then
  log "keystone db_sync + bootstrap"
  "${KS_MANAGE[@]}" db_sync >>"$STATE/log/keystone-manage.log" 2>&1
  "${KS_MANAGE[@]}" bootstrap --bootstrap-password "$ADMIN_PASSWORD" --bootstrap-username "$ADMIN_USER" \
    --bootstrap-project-name "$ADMIN_PROJECT" --bootstrap-role-name admin --bootstrap-service-name keystone \
    --bootstrap-region-id "$REGION" --bootstrap-admin-url "$KS_URL/v3" --bootstrap-public-url "$KS_URL/v3" \
    --bootstrap-internal-url "$KS_URL/v3" >>"$STATE/log/keystone-manage.log" 2>&1
  echo "$ks_ver" >"$STATE/keystone/db-synced"
fi
if [[ -n $KEYS_PID ]]; then
  wait "$KEYS_PID" || die "keystone fernet/credential setup failed (see $STATE/log/keystone-manage.log)"
fi

# ---------- 6. Keystone (uwsgi) ----------
if ! alive keystone "$STATE/etc/keystone-uwsgi.ini"; then
  port_open "$KEYSTONE_PORT" && die "port $KEYSTONE_PORT (keystone) is in use by something up.sh did not start"
  log "starting keystone (uwsgi) on $KS_URL"
  setsid /usr/bin/uwsgi --ini "$STATE/etc/keystone-uwsgi.ini" </dev/null >>"$STATE/log/keystone-uwsgi.log" 2>&1 &
  echo $! >"$STATE/run/keystone.pid"
fi

# ---------- 7. Heat engine + API (they need DB + RabbitMQ, not Keystone, to start) ----------
if [[ -n $HEATDB_PID ]]; then
  wait "$HEATDB_PID" || die "heat-manage db_sync failed (see $STATE/log/heat-manage.log)"
  echo "$heat_ver" >"$STATE/heat-db-synced"
fi
wait_for 120 "rabbitmq $HOST:$RABBIT_PORT" port_open "$RABBIT_PORT"
log "rabbitmq is up"
ENGINE_T0=
if ! alive heat-engine "$STATE/etc/heat.conf"; then
  log "starting heat-engine"
  ENGINE_T0=$(( $(date +%s) - 1 ))
  setsid /usr/bin/heat-engine --config-file "$STATE/etc/heat.conf" </dev/null >>"$STATE/log/heat-engine.stdout.log" 2>&1 &
  echo $! >"$STATE/run/heat-engine.pid"
fi
if ! alive heat-api "$STATE/etc/heat.conf"; then
  port_open "$HEAT_PORT" && die "port $HEAT_PORT (heat-api) is in use by something up.sh did not start"
  log "starting heat-api on $HEAT_URL"
  setsid /usr/bin/heat-api --config-file "$STATE/etc/heat.conf" </dev/null >>"$STATE/log/heat-api.stdout.log" 2>&1 &
  echo $! >"$STATE/run/heat-api.pid"
fi

wait_for 60 "keystone $KS_URL/v3" bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 $KS_URL/v3) == 200 ]]"
log "keystone is up"

# ---------- 8. Keystone objects (idempotent, via REST) ----------
if [[ ! -e $STATE/keystone/objects-done ]]; then
  log "creating keystone projects/users/roles/endpoints"
  KS_URL=$KS_URL HEAT_URL=$HEAT_URL REGION=$REGION ADMIN_USER=$ADMIN_USER ADMIN_PASSWORD=$ADMIN_PASSWORD \
  ADMIN_PROJECT=$ADMIN_PROJECT LEARNER_USER=$LEARNER_USER LEARNER_PASSWORD=$LEARNER_PASSWORD \
  LEARNER_PROJECT=$LEARNER_PROJECT HEAT_SVC_PASSWORD=$HEAT_SVC_PASSWORD \
  HEAT_DOMAIN_ADMIN_PASSWORD=$HEAT_DOMAIN_ADMIN_PASSWORD "$PY" - <<'PYEOF'
import json, os, urllib.request, urllib.error
E = os.environ
KS = E["KS_URL"] + "/v3"
def req(method, path, body=None, token=None):
    r = urllib.request.Request(KS + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **({"X-Auth-Token": token} if token else {})})
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            raw = resp.read()
            return resp.headers, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        if e.code == 409: return None, None
        raise SystemExit(f"{method} {path} -> {e.code}: {e.read()[:500]!r}")
hdr, _ = req("POST", "/auth/tokens", {"auth": {"identity": {"methods": ["password"], "password": {"user": {
    "name": E["ADMIN_USER"], "domain": {"id": "default"}, "password": E["ADMIN_PASSWORD"]}}},
    "scope": {"project": {"name": E["ADMIN_PROJECT"], "domain": {"id": "default"}}}}})
T = hdr["X-Subject-Token"]
def find(coll, key, **q):
    qs = "&".join(f"{k}={v}" for k, v in q.items())
    items = req("GET", f"/{coll}?{qs}", token=T)[1][coll]
    return items[0] if items else None
def ensure(coll, single, body, **q):
    got = find(coll, single, **q)
    if got: return got
    req("POST", f"/{coll}", {single: body}, token=T)
    return find(coll, single, **q)
dom_default = "default"
heat_dom = ensure("domains", "domain", {"name": "heat", "description": "Heat stack users"}, name="heat")
for r in ("admin", "member", "reader", "heat_stack_owner", "heat_stack_user"):
    ensure("roles", "role", {"name": r}, name=r)
role = {r: find("roles", "role", name=r)["id"] for r in ("admin", "member", "reader", "heat_stack_owner")}
service = ensure("projects", "project", {"name": "service", "domain_id": dom_default}, name="service", domain_id=dom_default)
learner_p = ensure("projects", "project", {"name": E["LEARNER_PROJECT"], "domain_id": dom_default,
    "description": "learner lab project", "tags": ["learner-lab"]}, name=E["LEARNER_PROJECT"], domain_id=dom_default)
heat_u = ensure("users", "user", {"name": "heat", "domain_id": dom_default, "password": E["HEAT_SVC_PASSWORD"]},
    name="heat", domain_id=dom_default)
hda = ensure("users", "user", {"name": "heat_domain_admin", "domain_id": heat_dom["id"],
    "password": E["HEAT_DOMAIN_ADMIN_PASSWORD"]}, name="heat_domain_admin", domain_id=heat_dom["id"])
learner_u = ensure("users", "user", {"name": E["LEARNER_USER"], "domain_id": dom_default,
    "password": E["LEARNER_PASSWORD"], "default_project_id": learner_p["id"]}, name=E["LEARNER_USER"], domain_id=dom_default)
admin_u = find("users", "user", name=E["ADMIN_USER"], domain_id=dom_default)
admin_p = find("projects", "project", name=E["ADMIN_PROJECT"], domain_id=dom_default)
req("PUT", f"/projects/{service['id']}/users/{heat_u['id']}/roles/{role['admin']}", token=T)
req("PUT", f"/domains/{heat_dom['id']}/users/{hda['id']}/roles/{role['admin']}", token=T)
req("PUT", f"/projects/{learner_p['id']}/users/{learner_u['id']}/roles/{role['member']}", token=T)
req("PUT", f"/projects/{learner_p['id']}/users/{admin_u['id']}/roles/{role['admin']}", token=T)
req("PUT", f"/projects/{admin_p['id']}/users/{admin_u['id']}/roles/{role['heat_stack_owner']}", token=T)
svc = ensure("services", "service", {"name": "heat", "type": "orchestration", "description": "Heat Orchestration"},
    type="orchestration")
existing = {(e["interface"]) for e in req("GET", f"/endpoints?service_id={svc['id']}", token=T)[1]["endpoints"]}
for iface in ("public", "internal", "admin"):
    if iface not in existing:
        req("POST", "/endpoints", {"endpoint": {"service_id": svc["id"], "interface": iface,
            "region_id": E["REGION"], "url": E["HEAT_URL"] + "/v1/%(tenant_id)s"}}, token=T)
print("keystone objects ok: learner project", learner_p["id"])
PYEOF
  touch "$STATE/keystone/objects-done"
fi

# ---------- 9. wait for Heat ----------
engine_up() {
  alive heat-engine "$STATE/etc/heat.conf" || { tail -5 "$STATE/log/heat-engine.log" >&2; die "heat-engine died"; }
  alive heat-api "$STATE/etc/heat.conf" || { tail -5 "$STATE/log/heat-api.log" >&2; die "heat-api died"; }
  engine_ok
}
# a freshly started engine registers itself in heat.service right after its RPC server is listening;
# calling the API before that loses the RPC message (60 s timeout), so wait for the row first
engine_registered() {
  alive heat-engine "$STATE/etc/heat.conf" || { tail -5 "$STATE/log/heat-engine.log" >&2; die "heat-engine died"; }
  [[ $(psql_pg -d heat -c "select count(*) from service where created_at >= to_timestamp($ENGINE_T0) at time zone 'utc'") -ge 1 ]]
}
wait_for 60 "heat-api $HEAT_URL/" bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 $HEAT_URL/) == 300 ]]"
if [[ -n $ENGINE_T0 ]]; then wait_for 90 "heat-engine registration" engine_registered; fi
wait_for 120 "heat-engine (stack list through heat-api)" engine_up
all_pids_alive || die "a service died during start-up (logs: $STATE/log)"

write_clouds_yaml
rss=$(for n in postgres epmd rabbitmq keystone heat-engine heat-api; do cat "$STATE/run/$n.pid"; done |
      xargs -I{} sh -c 'ps -o rss= --pid {} --ppid {}' 2>/dev/null | awk '{s+=$1} END {printf "%d", s/1024}')
log "UP: keystone $KS_URL/v3  heat $HEAT_URL/v1/<project_id>  (~${rss} MiB RSS incl. children)"
log "clouds.yaml: $CLOUDS_YAML (clouds: $NAME, $NAME-admin)"
if ((MAX_STACKS > 0)); then log "heat: max_stacks_per_tenant = $MAX_STACKS (every non-admin project: $NAME's is full at $MAX_STACKS stacks)"; fi
log "total $(elapsed)s"
