#!/bin/bash
# hosts.sh up | down | stop NAME -- SSH test hosts for labplane's Ansible tests and demo.
# Each host has its own network namespace on a bridge namespace, its own root filesystem (an
# overlay over the machine's / with a private upper dir), its own PID/mount/UTS/IPC namespaces
# and hostname, tmpfs /tmp and /run, and an sshd (PID 1 of the host) that lets root in with the
# set's key. Embedded in labplane (internal/testhosts), which allocates each set its own /24 and
# names; adapted from the team's tried recipe. Needs root and openssh-server (not running).
#
# Environment (set by internal/testhosts):
#   TH_DIR    the set's directory (state, keys, the hosts' upper dirs, logs)
#   TH_NET    the set's network prefix, such as 10.251.7 (hosts .11, .12, ...; machine .254)
#   TH_NS     the set's name prefix for namespaces and the machine-side veth, such as lpth7
#   TH_NAMES  the hosts' names, space-separated, in address order
#
# Safety: up first adds `unreachable 10.251.0.0/16` to the machine's routes and nothing removes
# it: without it, a connection to a test host whose veth is gone would leave the machine through
# its default route. Processes are signalled only by the PIDs recorded here, after checking them.
set -euo pipefail
D=${TH_DIR:?TH_DIR is required}; NET=${TH_NET:?TH_NET is required}; NS=${TH_NS:?TH_NS is required}
S=$D/state
GUARD=10.251.0.0/16
GATEWAY=$NET.254
read -r -a NAMES <<<"${TH_NAMES:-}"

host_init() { # NAME DIR IP: runs inside the host's new mount/pid/uts/ipc namespaces and netns
  local n=$1 d=$2 ip=$3 r=$2/root
  mount -t overlay overlay -o "lowerdir=/,upperdir=$d/upper,workdir=$d/work" "$r"
  # dpkg's journal and pending triggers are the host's own (its status is, in upper): not the
  # machine's run under way, seen through the overlay
  mount --bind "$d/dpkg/updates" "$r/var/lib/dpkg/updates"
  mount --bind "$d/dpkg/triggers" "$r/var/lib/dpkg/triggers"
  mount -t proc proc "$r/proc"
  mount -t sysfs -o ro sysfs "$r/sys"
  mount -t tmpfs -o mode=755,nosuid tmpfs "$r/dev"
  mknod -m666 "$r/dev/null" c 1 3; mknod -m666 "$r/dev/zero" c 1 5
  mknod -m666 "$r/dev/full" c 1 7; mknod -m666 "$r/dev/random" c 1 8
  mknod -m666 "$r/dev/urandom" c 1 9; mknod -m666 "$r/dev/tty" c 5 0
  mkdir "$r/dev/pts" "$r/dev/shm"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$r/dev/pts"
  ln -s pts/ptmx "$r/dev/ptmx"; ln -s /proc/self/fd "$r/dev/fd"
  ln -s /proc/self/fd/0 "$r/dev/stdin"; ln -s /proc/self/fd/1 "$r/dev/stdout"
  ln -s /proc/self/fd/2 "$r/dev/stderr"
  mount -t tmpfs -o mode=1777 tmpfs "$r/dev/shm"
  mount -t tmpfs -o mode=1777 tmpfs "$r/tmp"  # hides the machine's /tmp (and other sets' state)
  mount -t tmpfs -o mode=755 tmpfs "$r/run"   # no stale pid files or sockets of the machine
  mount -t tmpfs -o mode=700 tmpfs "$r/root"  # a fresh root home, not the machine's dotfiles
  cp /etc/skel/.bashrc /etc/skel/.profile "$r/root/"
  # the host's package lists are the machine's: fresh, as if the host had just run apt update
  mkdir -p "$r/var/lib/apt/periodic"; touch "$r/var/lib/apt/periodic/update-success-stamp"
  # apt keeps its binary cache, as on a Debian server (a container image's docker-clean turns
  # it off: every apt task then rebuilds it from the lists, a second of CPU each)
  printf 'Dir::Cache::pkgcache "pkgcache.bin";\n' >"$r/etc/apt/apt.conf.d/zz-labplane-testhost"
  mkdir -p "$r/run/sshd" "$r/run/lock"; chmod 0755 "$r/run/sshd"
  hostname "$n"; echo "$n" >"$r/etc/hostname"
  printf '127.0.0.1 localhost\n%s %s\n' "$ip" "$n" >"$r/etc/hosts"
  echo "# no DNS inside test hosts" >"$r/etc/resolv.conf"
  mkdir -p "$r/etc/ssh/testhost"
  install -m600 "$d/host_ed25519" "$r/etc/ssh/testhost/host_ed25519"
  install -m600 "$S/id_ed25519.pub" "$r/etc/ssh/testhost/authorized_keys"
  cat >"$r/etc/ssh/testhost/sshd_config" <<CONF
ListenAddress $ip
HostKey /etc/ssh/testhost/host_ed25519
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
MaxSessions 50
MaxStartups 50:30:100
AuthorizedKeysFile /etc/ssh/testhost/authorized_keys
PidFile /run/sshd.pid
Subsystem sftp /usr/lib/openssh/sftp-server
CONF
  cd /
  exec chroot "$r" /usr/sbin/sshd -D -e -f /etc/ssh/testhost/sshd_config
}

alive() { local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1; [ -n "$st" ] && [ "$st" != Z ]; }

# ours PID: the host's unshare, started by this set (its command line names the set's state dir)
ours() { alive "$1" && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = unshare ] &&
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- " $S/"; }

up() {
  [ ${#NAMES[@]} -gt 0 ] || { echo "TH_NAMES is empty" >&2; exit 2; }
  [ -x /usr/sbin/sshd ] || { echo "openssh-server is not installed" >&2; exit 1; }
  # Guard first: without the veth below, the machine would route the test subnet to its default
  # gateway. The veth's /24 is more specific and wins while it exists.
  ip route replace unreachable $GUARD
  [ -e "$S" ] && { echo "$S exists: run down first" >&2; exit 1; }
  mkdir -p "$S"
  ssh-keygen -q -t ed25519 -N '' -C "labplane-testhosts-$NS" -f "$S/id_ed25519"
  : >"$S/known_hosts"
  ip netns add "$NS-br"
  ip -n "$NS-br" link add br0 type bridge; ip -n "$NS-br" addr add "$NET.1/24" dev br0
  ip -n "$NS-br" link set br0 up; ip -n "$NS-br" link set lo up
  ip link add "$NS" type veth peer name uplink netns "$NS-br"
  sysctl -qw "net.ipv6.conf.$NS.disable_ipv6=1"
  ip addr add "$GATEWAY/24" dev "$NS"; ip link set "$NS" up
  ip -n "$NS-br" link set uplink master br0 up
  local i=0 n ip
  for n in "${NAMES[@]}"; do
    i=$((i + 1)); ip=$NET.$((10 + i))
    mkdir -p "$S/$n/upper/var/lib/dpkg" "$S/$n/work" "$S/$n/root" "$S/$n/dpkg"
    # the machine's dpkg database between two of its runs (testhosts.snapshotDpkg), the host's own
    cp -p "$D/dpkg/status" "$S/$n/upper/var/lib/dpkg/status"
    cp -a "$D/dpkg/updates" "$D/dpkg/triggers" "$S/$n/dpkg/"
    ssh-keygen -q -t ed25519 -N '' -C "$n" -f "$S/$n/host_ed25519"
    echo "$ip $(cut -d' ' -f1,2 "$S/$n/host_ed25519.pub")" >>"$S/known_hosts"
    ip netns add "$NS-h$i"
    ip -n "$NS-br" link add "v$i" type veth peer name eth0 netns "$NS-h$i"
    ip -n "$NS-br" link set "v$i" master br0 up
    ip -n "$NS-h$i" link set lo up; ip -n "$NS-h$i" addr add "$ip/24" dev eth0
    ip -n "$NS-h$i" link set eth0 up
    setsid ip netns exec "$NS-h$i" unshare --mount --pid --uts --ipc --fork \
      --kill-child --propagation private /bin/bash "$D/hosts.sh" _init "$n" "$S/$n" "$ip" \
      </dev/null >"$S/$n/log" 2>&1 &
    echo $! >"$S/$n/pid"
  done
  i=0
  for n in "${NAMES[@]}"; do # wait for each sshd: connect only (bytes make sshd log errors)
    i=$((i + 1)); ip=$NET.$((10 + i))
    local t ok=0
    for t in $(seq 1 100); do
      ip netns exec "$NS-br" timeout 1 bash -c ": >/dev/tcp/$ip/22" 2>/dev/null && { ok=1; break; }
      sleep 0.1
    done
    [ $ok = 1 ] || { echo "host $n ($ip): sshd did not come up:" >&2; cat "$S/$n/log" >&2; exit 1; }
  done
}

# kill_host NAME: SIGKILL the host's PID 1 (sshd): the kernel then kills its whole PID
# namespace, and unshare (which ignores SIGTERM) reaps it and exits. Its netns stays, so its
# address refuses connections at once.
kill_host() {
  local f=$S/$1/pid p c t
  [ -f "$f" ] || return 0
  p=$(cat "$f")
  if ours "$p"; then
    c=$(cat "/proc/$p/task/$p/children" 2>/dev/null || true)
    [ -n "$c" ] && kill -KILL $c 2>/dev/null || true
    for t in $(seq 1 50); do alive "$p" || break; sleep 0.1; done
    alive "$p" && kill -KILL "$p" 2>/dev/null || true
    for t in $(seq 1 50); do alive "$p" || break; sleep 0.1; done
    alive "$p" && { echo "host $1: pid $p still alive" >&2; return 1; }
  fi
  rm -f "$f"
}

stop() { [ -n "${1:-}" ] || { echo "usage: hosts.sh stop NAME" >&2; exit 2; }; kill_host "$1"; }

down() {
  local f n
  for f in "$S"/cp/*; do [ -S "$f" ] && ssh -o ControlPath="$f" -O exit x >/dev/null 2>&1 || true; done
  if [ -d "$S" ]; then
    for f in "$S"/*/pid; do [ -f "$f" ] || continue; n=${f%/pid}; kill_host "${n##*/}"; done
  fi
  for n in $(ip netns list | awk -v p="$NS-h" 'index($1, p) == 1 {print $1}'); do ip netns del "$n"; done
  ip link del "$NS" 2>/dev/null || true
  ip netns del "$NS-br" 2>/dev/null || true
  rm -rf "$S" "$D/dpkg" # the guard route stays: nothing here should ever reach that subnet again
}

case "${1:-}" in
  up) up ;; down) down ;; stop) shift; stop "$@" ;; _init) shift; host_init "$@" ;;
  *) echo "usage: hosts.sh up | down | stop NAME" >&2; exit 2 ;;
esac
