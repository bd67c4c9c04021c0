# lib.sh - the helpers up.sh and compute-up.sh share (sourced by both; embedded in labplane and
# written beside them, with rest.py, the Python their heredocs import from LIB_DIR). The caller
# sets NAME, STEP (its name in the log), T0, STATE and HOST.

LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log()  { printf '[localcloud %s %s %6ss] %s\n' "$NAME" "$STEP" "$(elapsed)" "$*"; }
die()  { printf '[localcloud %s %s %6ss] ERROR: %s\n' "$NAME" "$STEP" "$(elapsed)" "$*" >&2; exit 1; }
elapsed() { awk -v a="$T0" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f", (b-a)/1e9}'; }

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

# uwsgi_ini FILE PORT WSGI_FILE ENV THREADS : the uwsgi configuration of a WSGI service
# (Keystone, Placement) on HOST:PORT: one process (Keystone's cache is per process), THREADS
# threads, ENV (NAME=VALUE) in its environment.
uwsgi_ini() {
  cat >"$1" <<EOF
[uwsgi]
plugins = python3
http-socket = $HOST:$2
# uwsgi's http-socket closes each connection without saying so: a client that reuses
# connections then fails about 4% of its requests (connection reset); say it
add-header = Connection: close
wsgi-file = $3
env = $4
master = true
processes = 1
threads = $5
enable-threads = true
lazy-apps = true
die-on-term = true
no-orphans = true
buffer-size = 65535
need-app = true
chdir = $STATE
disable-logging = true
EOF
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
as_pg()  { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }

# need_packages PKG... : every one installed (the Go side installs them, internal/apt, first)
need_packages() {
  local p
  for p in "$@"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) == "install ok installed" ]] ||
      die "Debian package $p is not installed (labplane dev cloud up installs it: run it through labplane)"
  done
}
