#!/usr/bin/env bash
# Start the services the tests need, run the given command with their addresses
# exported, stop them again:
#   - PostgreSQL on 127.0.0.1 only, in a throw-away data directory;
#   - PgBouncer in transaction pooling mode in front of it, 127.0.0.1 only;
#   - a private pcscd with the vsmartcard-vpcd driver (readers "Virtual PCD 00 00" and
#     "Virtual PCD 00 01", vpcd listening on 127.0.0.1 only);
#   - a SoftHSM2 configuration with its own token directory (tests create the tokens);
#   - a private OpenSSH server on 127.0.0.1 only (own config, host key, port and
#     authorized key) whose ForceCommand is this checkout's `smis-tui ssh-session`.
set -euo pipefail

PG_PORT="${SMIS_TEST_PG_PORT:-54329}"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
  echo "test-services: PostgreSQL server binaries not found (apt-get install postgresql)" >&2
  exit 1
fi

WORK="$(mktemp -d /tmp/smis-test-services.XXXXXX)"
chmod 755 "$WORK"
PGDATA="$WORK/pgdata"
mkdir -p "$PGDATA"
PCSC_DIR="$WORK/pcsc"
PCSCD_CTL="$PCSC_DIR/pcscd-ctl"
SSHD_DIR="$WORK/sshd"
SSHD_PID=""
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

as_postgres() {
  if [ "$(id -u)" = "0" ]; then
    chown -R postgres:postgres "$WORK"
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

stop_services() {
  stop_sshd
  if [ -x "$PCSCD_CTL" ]; then "$PCSCD_CTL" stop >/dev/null 2>&1 || true; fi
  stop_pgbouncer
  as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}

stop_pgbouncer() { # the pgbouncer this script started (its pid file), if any
  local pid
  pid="$(cat "$WORK/pgbouncer/pgbouncer.pid" 2>/dev/null || true)"
  [ -n "$pid" ] || return 0
  # SIGTERM: immediate shutdown (SIGINT would wait for the clients).
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
}
trap stop_services EXIT INT TERM

# --- PostgreSQL -------------------------------------------------------------------
# Passwords over TCP (SCRAM), peer over the UNIX socket, as on a server: other Unix
# users on this machine (the multi-user SSH tests' staff accounts) cannot connect as
# postgres. The password is fresh each run and in the exported URLs only.
PG_PASSWORD="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
( umask 077; printf '%s\n' "$PG_PASSWORD" >"$WORK/pg-password" )
as_postgres "$PG_BIN/initdb" -D "$PGDATA" --auth-local=peer --auth-host=scram-sha-256 \
  --pwfile="$WORK/pg-password" -U postgres -E UTF8 --locale=C.UTF-8 >"$WORK/initdb.log" 2>&1 \
  || { cat "$WORK/initdb.log" >&2; exit 1; }
rm -f "$WORK/pg-password"
as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$WORK/postgres.log" -w \
  -o "-k $WORK -p $PG_PORT -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null \
  || { cat "$WORK/postgres.log" >&2; exit 1; }

export SMIS_TEST_POSTGRES_URL="postgresql://postgres:${PG_PASSWORD}@127.0.0.1:${PG_PORT}/postgres"

# The fault tests stop and restart this PostgreSQL mid-transaction: a control script
# (start | stop | restart | status) with exactly the options above, loopback only, for
# this data directory only. stop_services stops the server whatever state it is left in.
PG_CTL_SCRIPT="$WORK/pg-ctl"
cat >"$PG_CTL_SCRIPT" <<EOF
#!/usr/bin/env bash
set -euo pipefail
run() { if [ "\$(id -u)" = 0 ]; then runuser -u postgres -- "\$@"; else "\$@"; fi; }
PG_CTL='$PG_BIN/pg_ctl'
DATA='$PGDATA'
LOG='$WORK/postgres.log'
OPTS='-k $WORK -p $PG_PORT -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300'
case "\${1:-}" in
  start) run "\$PG_CTL" -D "\$DATA" -l "\$LOG" -w -t 30 -o "\$OPTS" start >/dev/null ;;
  stop) run "\$PG_CTL" -D "\$DATA" -m "\${2:-fast}" -w -t 30 stop >/dev/null ;;
  restart) run "\$PG_CTL" -D "\$DATA" -m fast -w -t 30 stop >/dev/null
    run "\$PG_CTL" -D "\$DATA" -l "\$LOG" -w -t 30 -o "\$OPTS" start >/dev/null ;;
  status) run "\$PG_CTL" -D "\$DATA" status >/dev/null ;;
  *) echo "usage: \$0 start|stop [fast|immediate]|restart|status" >&2; exit 2 ;;
esac
EOF
chmod 755 "$PG_CTL_SCRIPT"
export SMIS_TEST_PG_CTL="$PG_CTL_SCRIPT"
echo "test-services: PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:${PG_PORT}"

# --- PgBouncer --------------------------------------------------------------------
# PgBouncer in transaction pooling mode in front of the PostgreSQL above, 127.0.0.1
# only, its own ini, user list, pid file, log and socket directory in $WORK (a system
# pgbouncer service, if any, is neither used nor touched). A wildcard database entry
# makes every database of that server reachable, the scratch databases the tests
# create included. Trust authentication like the PostgreSQL above: loopback test only.
# Exports SMIS_TEST_PGBOUNCER_URL (docs/pgbouncer.md).
PGBOUNCER_DIR="$WORK/pgbouncer"
PGBOUNCER_PORT="${SMIS_TEST_PGBOUNCER_PORT:-$((PG_PORT + 1))}"
PGBOUNCER_BIN="$(command -v pgbouncer || true)"
if [ -z "$PGBOUNCER_BIN" ] && [ -x /usr/sbin/pgbouncer ]; then PGBOUNCER_BIN=/usr/sbin/pgbouncer; fi
if [ -z "$PGBOUNCER_BIN" ]; then
  echo "test-services: pgbouncer not found (apt-get install pgbouncer)" >&2
  exit 1
fi
mkdir -p "$PGBOUNCER_DIR"
( umask 077; printf '"postgres" "%s"\n' "$PG_PASSWORD" >"$PGBOUNCER_DIR/userlist.txt" )
cat >"$PGBOUNCER_DIR/pgbouncer.ini" <<EOF_INI
; smis-tui test PgBouncer (scripts/test-services.sh); see docs/pgbouncer.md.
[databases]
* = host=127.0.0.1 port=$PG_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir = $PGBOUNCER_DIR
pidfile = $PGBOUNCER_DIR/pgbouncer.pid
logfile = $PGBOUNCER_DIR/pgbouncer.log
auth_type = scram-sha-256
auth_file = $PGBOUNCER_DIR/userlist.txt
admin_users = postgres
pool_mode = transaction
max_client_conn = 400
default_pool_size = 20
; With PostgreSQL down a query waits this long for a server, then fails (the
; default, 120 s, would leave a kiosk hanging); after a failed server login new
; clients are refused for server_login_retry seconds (default 15).
query_wait_timeout = 10
server_login_retry = 1
log_connections = 0
log_disconnections = 0
EOF_INI
pgbouncer_listening() { # -> a listener on 127.0.0.1:PGBOUNCER_PORT and on no other address
  local hex files=(/proc/net/tcp)
  [ -r /proc/net/tcp6 ] && files+=(/proc/net/tcp6)
  hex="$(printf '%04X' "$PGBOUNCER_PORT")"
  awk -v p=":$hex" 'FNR > 1 && substr($2, length($2) - 4) == p && $4 == "0A" \
      { if ($2 == "0100007F" p) lo = 1; else other = 1 } END { exit !(lo && !other) }' \
    "${files[@]}"
}
if pgbouncer_listening; then
  echo "test-services: something already listens on 127.0.0.1:$PGBOUNCER_PORT" \
    "(set SMIS_TEST_PGBOUNCER_PORT)" >&2
  exit 1
fi
# -d: pgbouncer detaches and writes its pid file (stop_pgbouncer signals that pid).
as_postgres "$PGBOUNCER_BIN" -d -q "$PGBOUNCER_DIR/pgbouncer.ini" \
  || { cat "$PGBOUNCER_DIR/pgbouncer.log" >&2 2>/dev/null; exit 1; }
PGBOUNCER_UP=no
for _ in $(seq 200); do
  if [ -s "$PGBOUNCER_DIR/pgbouncer.pid" ] && pgbouncer_listening; then PGBOUNCER_UP=yes; break; fi
  sleep 0.05
done
if [ "$PGBOUNCER_UP" = no ]; then
  echo "test-services: pgbouncer did not come up on 127.0.0.1:$PGBOUNCER_PORT (only):" >&2
  tail -n 20 "$PGBOUNCER_DIR/pgbouncer.log" >&2 2>/dev/null || true
  exit 1
fi
export SMIS_TEST_PGBOUNCER_URL="postgresql://postgres:${PG_PASSWORD}@127.0.0.1:${PGBOUNCER_PORT}/postgres"
echo "test-services: $("$PGBOUNCER_BIN" --version | head -n 1) (pool_mode = transaction) on 127.0.0.1:${PGBOUNCER_PORT}"

# --- pcscd + vpcd -----------------------------------------------------------------
# pcsc-lite 1.9.9's daemon always uses /run/pcscd, and a system pcscd (or systemd's
# pcscd.socket) may own it. Where we may (root, mount namespaces allowed) our pcscd
# runs in its own mount namespace with a directory of ours bound over /run/pcscd and
# an empty one over /usr/lib/pcsc/drivers (so it never touches real USB readers); the
# tests reach it through PCSCLITE_CSOCK_NAME, which libpcsclite honours. Otherwise it
# uses /run/pcscd itself, but only when no other pcscd is there; we never stop a pcscd
# we did not start.
#
# vpcd binds INADDR_ANY in its server mode (hard-coded; its "host:port" client mode
# crashes pcscd 1.9.9 when nothing listens), so pcscd runs with a tiny LD_PRELOAD
# shim that turns a bind to 0.0.0.0 into 127.0.0.1; the listeners are checked below.
setup_pcscd() {
  local vpcd_so=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
  if ! command -v pcscd >/dev/null || [ ! -e "$vpcd_so" ]; then
    echo "test-services: pcscd or vsmartcard-vpcd missing; PC/SC tests will not run" >&2
    return 1
  fi
  if [ "$(id -u)" != "0" ]; then
    echo "test-services: not root; PC/SC tests will not run" >&2
    return 1
  fi
  if ! command -v cc >/dev/null; then
    echo "test-services: no C compiler for the loopback shim (apt-get install build-essential)" >&2
    return 1
  fi
  mkdir -p "$PCSC_DIR/run" "$PCSC_DIR/drivers" "$PCSC_DIR/conf"
  cp "$(readlink -f "$vpcd_so")" "$PCSC_DIR/libifdvpcd.so"
  cat >"$PCSC_DIR/loopback.c" <<'EOF'
/* Make every IPv4 bind to 0.0.0.0 a bind to 127.0.0.1 (for vpcd inside pcscd). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    static int (*real_bind)(int, const struct sockaddr *, socklen_t);
    struct sockaddr_in sin;

    if (!real_bind)
        real_bind = (int (*)(int, const struct sockaddr *, socklen_t)) dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_INET && len >= (socklen_t) sizeof sin) {
        memcpy(&sin, addr, sizeof sin);
        if (sin.sin_addr.s_addr == htonl(INADDR_ANY)) {
            sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real_bind(fd, (const struct sockaddr *) &sin, sizeof sin);
        }
    }
    return real_bind(fd, addr, len);
}
EOF
  cc -shared -fPIC -O2 -o "$PCSC_DIR/loopback.so" "$PCSC_DIR/loopback.c" -ldl

  # SMIS_TEST_PCSCD_MODE=global forces the shared /run/pcscd (to test that path).
  local mode=global
  mkdir -p /run/pcscd 2>/dev/null || true
  if [ "${SMIS_TEST_PCSCD_MODE:-}" != global ] && unshare --mount --propagation private -- \
    mount --bind "$PCSC_DIR/run" /run/pcscd >/dev/null 2>&1; then
    mode=namespace
  elif [ -e /run/pcscd/pcscd.comm ]; then
    echo "test-services: another pcscd owns /run/pcscd and mount namespaces are not allowed here;" \
      "PC/SC tests will not run (it is left alone)" >&2
    return 1
  fi

  # The control script: start | stop | restart | pid. The tests use it to stop and
  # restart pcscd; it only ever signals the pid it started itself.
  cat >"$PCSCD_CTL" <<EOF
#!/usr/bin/env bash
set -euo pipefail
DIR='$PCSC_DIR'
MODE='$mode'
EOF
  cat >>"$PCSCD_CTL" <<'EOF'
PORT="$(cat "$DIR/port" 2>/dev/null || echo 35963)"
if [ "$MODE" = namespace ]; then SOCK="$DIR/run/pcscd.comm"; else SOCK=/run/pcscd/pcscd.comm; fi

alive() { # pid -> running and not a zombie
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
listening() { # port -> a listener on 127.0.0.1:port (and on no other address)
  local hex files=(/proc/net/tcp)
  [ -r /proc/net/tcp6 ] && files+=(/proc/net/tcp6)
  hex="$(printf '%04X' "$1")"
  awk -v p=":$hex" 'FNR > 1 && substr($2, length($2) - 4) == p && $4 == "0A" \
      { if ($2 == "0100007F" p) lo = 1; else other = 1 } END { exit !(lo && !other) }' \
    "${files[@]}"
}
start() {
  if [ -s "$DIR/pid" ] && alive "$(cat "$DIR/pid")"; then return 0; fi
  local conf="$DIR/conf/vpcd"
  printf 'FRIENDLYNAME "Virtual PCD"\nDEVICENAME   /dev/null:0x%04X\nLIBPATH      %s\nCHANNELID    0x%04X\n' \
    "$PORT" "$DIR/libifdvpcd.so" "$PORT" >"$conf"
  rm -f "$DIR/run/pcscd.comm" "$DIR/run/pcscd.pid"
  : >"$DIR/pcscd.log"
  if [ "$MODE" = namespace ]; then
    setsid unshare --mount --propagation private -- sh -c \
      'mount --bind "$1/run" /run/pcscd && mount --bind "$1/drivers" /usr/lib/pcsc/drivers &&
       exec env LD_PRELOAD="$1/loopback.so" pcscd --foreground -c "$1/conf"' sh "$DIR" \
      >>"$DIR/pcscd.log" 2>&1 </dev/null &
  else
    LD_PRELOAD="$DIR/loopback.so" setsid pcscd --foreground -c "$DIR/conf" \
      >>"$DIR/pcscd.log" 2>&1 </dev/null &
  fi
  local pid=$!
  echo "$pid" >"$DIR/pid"
  local deadline=$((SECONDS + 15))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if ! alive "$pid"; then
      echo "pcscd-ctl: pcscd exited during start-up:" >&2; tail -n 20 "$DIR/pcscd.log" >&2
      rm -f "$DIR/pid"; return 1
    fi
    if [ -S "$SOCK" ] && listening "$PORT" && listening $((PORT + 1)); then return 0; fi
    if grep -q "Could not initialize connection to virtual ICC" "$DIR/pcscd.log"; then
      echo "pcscd-ctl: vpcd could not listen on $PORT/$((PORT + 1)):" >&2
      tail -n 5 "$DIR/pcscd.log" >&2
      stop; return 1
    fi
    sleep 0.05
  done
  echo "pcscd-ctl: pcscd not ready within 15 s:" >&2; tail -n 20 "$DIR/pcscd.log" >&2
  stop; return 1
}
stop() {
  [ -s "$DIR/pid" ] || return 0
  local pid deadline
  pid="$(cat "$DIR/pid")"
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 5))
    while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    while alive "$pid"; do sleep 0.05; done
  fi
  rm -f "$DIR/pid"
  # pcscd cleans up after itself unless it had to be killed; in the shared /run/pcscd
  # only remove what is provably ours.
  if [ "$MODE" = global ] && [ "$(cat /run/pcscd/pcscd.pid 2>/dev/null)" = "$pid" ]; then
    rm -f /run/pcscd/pcscd.comm /run/pcscd/pcscd.pid
  fi
}
case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  pid) cat "$DIR/pid" ;;
  *) echo "usage: $0 start|stop|restart|pid" >&2; exit 2 ;;
esac
EOF
  chmod 755 "$PCSCD_CTL"

  # 35963/35964 as in vpcd's own configuration, unless something already listens there
  # (another test run, or a system pcscd with vpcd): then the next free pair.
  local port
  for port in 35963 36963 37963 38963 39963 40963 41963 42963; do
    if port_in_use "$port" || port_in_use $((port + 1)); then continue; fi
    echo "$port" >"$PCSC_DIR/port"
    if "$PCSCD_CTL" start; then
      export SMIS_TEST_PCSCD=1 SMIS_TEST_PCSCD_CTL="$PCSCD_CTL" SMIS_VPCD_PORT="$port"
      if [ "$mode" = namespace ]; then export PCSCLITE_CSOCK_NAME="$PCSC_DIR/run/pcscd.comm"; fi
      echo "test-services: pcscd $(pcscd --version 2>/dev/null | sed -n 's/.*pcsc-lite version \([0-9.]*[0-9]\).*/\1/p') with vpcd on 127.0.0.1:${port},$((port + 1)) ($mode)"
      return 0
    fi
  done
  echo "test-services: could not start pcscd with vpcd" >&2
  return 1
}

port_in_use() { # port -> something listens on it, on any address (TIME_WAIT is fine)
  local hex files=(/proc/net/tcp)
  [ -r /proc/net/tcp6 ] && files+=(/proc/net/tcp6)
  hex="$(printf '%04X' "$1")"
  awk -v p=":$hex" 'FNR > 1 && substr($2, length($2) - 4) == p && $4 == "0A" { f = 1 }
      END { exit !f }' "${files[@]}"
}

setup_pcscd || true

# --- sshd -------------------------------------------------------------------------
# A private OpenSSH server for the SSH-session tests: 127.0.0.1 only, its own config,
# host key, port, pid file and authorized key (a throw-away client key), logging in as
# the user running the tests. Every session runs `smis-tui ssh-session` of this
# checkout (ForceCommand). Test-only: it accepts DATABASE_URL and SMIS_* from the
# client (AcceptEnv), so each test points its sessions at its own database and data
# directory; a production server must not (docs/sshd_config.snippet). The server side
# has no local reader: its sessions look for pcscd at a socket that does not exist.
# Exports SMIS_TEST_SSHD_PORT, SMIS_TEST_SSH_KEY, SMIS_TEST_SSH_CONFIG (a client
# ssh_config for host "smis-test") and SMIS_TEST_SSHD_LOG.
descendants() { # pid -> its descendants' pids, one a line
  local parent=$1 stat pid ppid
  for stat in /proc/[0-9]*/stat; do
    ppid="$(sed 's/^.*) //' "$stat" 2>/dev/null | cut -d' ' -f2)" || continue
    if [ "$ppid" = "$parent" ]; then
      pid="${stat#/proc/}"
      pid="${pid%/stat}"
      echo "$pid"
      descendants "$pid"
    fi
  done
}

stop_sshd() {
  [ -n "$SSHD_PID" ] || return 0
  # The listener's children are the per-connection sshd processes and their sessions:
  # collected before the listener goes (they would be re-parented), then stopped too.
  local pids pid deadline
  pids="$SSHD_PID $(descendants "$SSHD_PID" | tr '\n' ' ')"
  for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
  deadline=$((SECONDS + 5))
  for pid in $pids; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  SSHD_PID=""
}

sshd_only_on_loopback() { # port pid -> it listens on 127.0.0.1:port and on nothing else
  local hex inode files=(/proc/net/tcp)
  [ -r /proc/net/tcp6 ] && files+=(/proc/net/tcp6)
  hex="$(printf '%04X' "$1")"
  awk -v p=":$hex" 'FNR > 1 && substr($2, length($2) - 4) == p && $4 == "0A" \
      { if ($2 == "0100007F" p) lo = 1; else other = 1 } END { exit !(lo && !other) }' \
    "${files[@]}" || return 1
  # ... and none of the listener's sockets is a TCP listener on another address.
  for inode in $(find "/proc/$2/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null | tr -dc '0-9\n'); do
    if awk -v i="$inode" -v a="0100007F:$hex" 'FNR > 1 && $10 == i && $4 == "0A" && $2 != a \
        { f = 1 } END { exit !f }' "${files[@]}"; then
      return 1
    fi
  done
}

setup_sshd() {
  local sshd=/usr/sbin/sshd user
  if [ ! -x "$sshd" ] || ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null; then
    echo "test-services: sshd or ssh missing (apt-get install openssh-server openssh-client);" \
      "SSH tests will not run" >&2
    return 1
  fi
  user="$(id -un)"
  mkdir -p "$SSHD_DIR"
  chmod 700 "$SSHD_DIR"
  ssh-keygen -q -t ed25519 -N '' -C smis-test-host -f "$SSHD_DIR/host_ed25519"
  ssh-keygen -q -t ed25519 -N '' -C smis-test-client -f "$SSHD_DIR/client_ed25519"
  cp "$SSHD_DIR/client_ed25519.pub" "$SSHD_DIR/authorized_keys"
  # Privilege separation (sshd as root) needs its empty directory.
  if [ "$(id -u)" = 0 ]; then mkdir -p /run/sshd && chmod 755 /run/sshd; fi
  # Without PAM, sshd refuses accounts whose password is locked ("!..."); PAM's
  # session modules (pam_loginuid) may fail in containers, so PAM only when needed.
  local use_pam=no
  if getent shadow "$user" 2>/dev/null | cut -d: -f2 | grep -q '^!'; then use_pam=yes; fi
  printf '#!/bin/sh\nexec %q ssh-session "$@"\n' "$REPO/.venv/bin/smis-tui" >"$SSHD_DIR/session"
  chmod 755 "$SSHD_DIR/session"

  local port deadline up
  for port in 42022 43022 44022 45022 46022 47022 48022 49022; do
    if port_in_use "$port"; then continue; fi
    cat >"$SSHD_DIR/sshd_config" <<SSHD_CONFIG
# smis-tui test sshd (scripts/test-services.sh); see docs/sshd_config.snippet.
ListenAddress 127.0.0.1:$port
AddressFamily inet
HostKey $SSHD_DIR/host_ed25519
PidFile $SSHD_DIR/sshd.pid
AuthorizedKeysFile $SSHD_DIR/authorized_keys
AllowUsers $user
StrictModes no
UsePAM $use_pam
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
GSSAPIAuthentication no
PrintMotd no
PrintLastLog no
UseDNS no
MaxStartups 100:30:200
LogLevel VERBOSE
# OpenSSH grants remote UNIX-socket forwarding only with remote TCP forwarding
# allowed; PermitListen none keeps every TCP port closed.
AllowTcpForwarding remote
PermitListen none
PermitOpen none
X11Forwarding no
AllowAgentForwarding no
PermitTunnel no
AllowStreamLocalForwarding remote
StreamLocalBindMask 0177
StreamLocalBindUnlink yes
ClientAliveInterval 15
ClientAliveCountMax 4
# test only: each test's database and data directory come from the client
AcceptEnv LANG LC_* DATABASE_URL SMIS_*
# The staff's card agents run with --server USER@smis-test (the client's host alias):
# the name their login proofs carry. SetEnv wins over what a client sends.
SetEnv PCSCLITE_CSOCK_NAME=$SSHD_DIR/no-local-pcscd.comm SMIS_SERVER_NAMES=smis-test
ForceCommand $SSHD_DIR/session
SSHD_CONFIG
    "$sshd" -t -f "$SSHD_DIR/sshd_config" 2>"$SSHD_DIR/sshd.log" \
      || { cat "$SSHD_DIR/sshd.log" >&2; return 1; }
    setsid "$sshd" -D -f "$SSHD_DIR/sshd_config" -E "$SSHD_DIR/sshd.log" </dev/null &
    SSHD_PID=$!
    deadline=$((SECONDS + 10))
    up=no
    while [ "$SECONDS" -lt "$deadline" ] && kill -0 "$SSHD_PID" 2>/dev/null; do
      if sshd_only_on_loopback "$port" "$SSHD_PID"; then up=yes; break; fi
      sleep 0.05
    done
    if [ "$up" = no ]; then
      echo "test-services: sshd did not come up on 127.0.0.1:$port (only):" >&2
      stop_sshd
      tail -n 5 "$SSHD_DIR/sshd.log" >&2
      continue
    fi
    echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$SSHD_DIR/host_ed25519.pub")" >"$SSHD_DIR/known_hosts"
    cat >"$SSHD_DIR/ssh_config" <<SSH_CONFIG
Host smis-test
  HostName 127.0.0.1
  Port $port
  User $user
  IdentityFile $SSHD_DIR/client_ed25519
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile $SSHD_DIR/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  CheckHostIP no
  BatchMode yes
  PasswordAuthentication no
  ForwardAgent no
  ForwardX11 no
  ControlMaster no
  ControlPath none
  ExitOnForwardFailure yes
  ServerAliveInterval 15
  LogLevel ERROR
SSH_CONFIG
    export SMIS_TEST_SSHD_PORT="$port" SMIS_TEST_SSH_KEY="$SSHD_DIR/client_ed25519" \
      SMIS_TEST_SSH_CONFIG="$SSHD_DIR/ssh_config" SMIS_TEST_SSHD_LOG="$SSHD_DIR/sshd.log"
    echo "test-services: $("$sshd" -V 2>&1 | cut -d, -f1) on 127.0.0.1:${port} (ssh -F \$SMIS_TEST_SSH_CONFIG smis-test, as $user)"
    return 0
  done
  echo "test-services: could not start sshd" >&2
  return 1
}

setup_sshd || true

# --- SoftHSM2 ---------------------------------------------------------------------
SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so
if [ -e "$SOFTHSM_MODULE" ]; then
  mkdir -p "$WORK/softhsm/tokens"
  cat >"$WORK/softhsm/softhsm2.conf" <<EOF
directories.tokendir = $WORK/softhsm/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
EOF
  export SOFTHSM2_CONF="$WORK/softhsm/softhsm2.conf"
  export SMIS_TEST_PKCS11_MODULE="$SOFTHSM_MODULE"
  echo "test-services: SoftHSM2 $(softhsm2-util --version 2>/dev/null || echo '?') tokens in $WORK/softhsm/tokens"
else
  echo "test-services: SoftHSM2 missing ($SOFTHSM_MODULE); PKCS#11 tests will not run" >&2
fi

"$@"
