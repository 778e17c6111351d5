#!/usr/bin/env bash
# Install smis-tui on a Debian 12 server, as root (docs/operator.md). Idempotent: run it
# again after an upgrade, or to add the kiosk seat or the SSH set-up later; it never
# overwrites the configuration, the data or the key.
#
#   scripts/install-server.sh [--wheel FILE] [--kiosk-seat] [--ssh]
#
# What it does:
#   - the Debian packages (python3-venv, pcscd; cage, foot, fonts-noto-cjk for the seat;
#     sudo and openssh-server for SSH);
#   - the service account `smis` (no login, no password), the only one that reads the
#     configuration, the data directory and the data key;
#   - the program from the wheel (built from this checkout unless --wheel) in a
#     virtualenv in /opt/smis-tui;
#   - /etc/smis-tui/config.toml (0600 smis; only when missing), /etc/smis-tui/ca;
#     /var/lib/smis-tui (0700 smis) with, on SQLite, the database and key (`db init`);
#   - systemd timers for `maintenance` (nightly), `crl refresh` (every 4 h) and
#     `audit verify` (daily), each unit checked with `systemd-analyze verify`;
#   - --kiosk-seat: the kiosk on tty1 in foot under cage (smis-tui-kiosk.service);
#   - --ssh: the staff group, docs/sudoers.snippet, docs/sshd_config.snippet and the
#     agent forwarding directory (docs/ssh.md).
#
# Every path and name has an option (the tests install into a scratch directory with
# accounts of their own): --prefix --etc --data --user --staff-group --unit-dir
# --sshd-dir --sudoers-dir --tmpfiles-dir --pam-dir --forward-dir, and --no-apt,
# --no-systemctl to leave packages and running services alone.
set -euo pipefail
# The program and the units are for everyone to read; what is private gets its mode.
umask 022

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEEL=""
KIOSK_SEAT=no
SSH=no
APT=yes
SYSTEMCTL=yes
PREFIX=/opt/smis-tui
ETC=/etc/smis-tui
DATA=/var/lib/smis-tui
SERVICE_USER=smis
STAFF_GROUP=smis-staff
UNIT_DIR=/etc/systemd/system
SSHD_DIR=/etc/ssh/sshd_config.d
SUDOERS_DIR=/etc/sudoers.d
TMPFILES_DIR=/etc/tmpfiles.d
PAM_DIR=/etc/pam.d
FORWARD_DIR=/run/smis/agent
# Debian's own Python: the virtualenv links to it, and the service account must be able
# to run it (not a per-user interpreter found first on root's PATH).
PYTHON=/usr/bin/python3

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --wheel) WHEEL="$2"; shift 2 ;;
    --kiosk-seat) KIOSK_SEAT=yes; shift ;;
    --ssh) SSH=yes; shift ;;
    --no-apt) APT=no; shift ;;
    --no-systemctl) SYSTEMCTL=no; shift ;;
    --prefix) PREFIX="$2"; shift 2 ;;
    --etc) ETC="$2"; shift 2 ;;
    --data) DATA="$2"; shift 2 ;;
    --user) SERVICE_USER="$2"; shift 2 ;;
    --staff-group) STAFF_GROUP="$2"; shift 2 ;;
    --unit-dir) UNIT_DIR="$2"; shift 2 ;;
    --sshd-dir) SSHD_DIR="$2"; shift 2 ;;
    --sudoers-dir) SUDOERS_DIR="$2"; shift 2 ;;
    --tmpfiles-dir) TMPFILES_DIR="$2"; shift 2 ;;
    --pam-dir) PAM_DIR="$2"; shift 2 ;;
    --forward-dir) FORWARD_DIR="$2"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "install-server: unknown option $1" >&2; usage ;;
  esac
done

say() { printf 'install-server: %s\n' "$*"; }
fail() { printf 'install-server: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root"
case "$SERVICE_USER$STAFF_GROUP" in *[!a-z0-9_-]*) fail "user and group names: a-z 0-9 _ - only" ;; esac
for path in "$PREFIX" "$ETC" "$DATA" "$UNIT_DIR" "$FORWARD_DIR"; do
  case "$path" in /*) ;; *) fail "$path: an absolute path is needed" ;; esac
  case "$path" in *[[:space:]\"\'\\\#]*) fail "$path: no spaces, quotes, backslashes or #" ;; esac
done

# The published templates name the default paths and accounts; an install elsewhere
# gets the same files with its own (the tests render the snippets the same way).
render() {
  sed -e "s#/opt/smis-tui#$PREFIX#g" \
      -e "s#/etc/smis-tui#$ETC#g" \
      -e "s#/var/lib/smis-tui#$DATA#g" \
      -e "s#/run/smis/agent#$FORWARD_DIR#g" \
      -e "s#--run-as smis #--run-as $SERVICE_USER #g" \
      -e "s#(smis)#($SERVICE_USER)#g" \
      -e "s#^User=smis\$#User=$SERVICE_USER#" \
      -e "s#smis-staff#$STAFF_GROUP#g" \
      "$1"
}

# install_file SOURCE-TEXT TARGET MODE [OWNER]: write only when the content differs.
install_text() {
  local text="$1" target="$2" mode="$3" owner="${4:-root:root}"
  if [ -f "$target" ] && [ "$(cat "$target")" = "$text" ]; then
    chmod "$mode" "$target"; chown "$owner" "$target"
    return 1
  fi
  mkdir -p "$(dirname "$target")"
  local staged
  staged="$(mktemp "$(dirname "$target")/.install.XXXXXX")"
  printf '%s\n' "$text" >"$staged"
  chmod "$mode" "$staged"; chown "$owner" "$staged"
  mv -f "$staged" "$target"
  say "wrote $target"
}

# --- packages -----------------------------------------------------------------------
if [ "$APT" = yes ]; then
  packages=(python3-venv pcscd)
  [ "$KIOSK_SEAT" = yes ] && packages+=(cage foot fonts-noto-cjk xwayland)
  [ "$SSH" = yes ] && packages+=(sudo openssh-server)
  "$REPO/scripts/ensure-debs.sh" "${packages[@]}"
fi

# --- the service account ------------------------------------------------------------
if ! getent passwd "$SERVICE_USER" >/dev/null; then
  install -d -m 0700 "$DATA"
  if command -v adduser >/dev/null; then
    adduser --system --group --home "$DATA" --no-create-home --shell /usr/sbin/nologin \
      --gecos "smis-tui service" "$SERVICE_USER" >/dev/null
  else
    useradd --system --user-group --home-dir "$DATA" --no-create-home \
      --shell /usr/sbin/nologin "$SERVICE_USER"
  fi
  passwd -l "$SERVICE_USER" >/dev/null 2>&1 || true
  say "created the service account $SERVICE_USER"
fi

# --- the program --------------------------------------------------------------------
if [ -z "$WHEEL" ]; then
  build="$(mktemp -d)"
  trap 'rm -rf "$build"' EXIT
  "$PYTHON" -m venv "$build/venv"
  "$build/venv/bin/pip" wheel --quiet --disable-pip-version-check --no-deps -w "$build" "$REPO" >/dev/null
  WHEEL="$(ls "$build"/smis_tui-*.whl)"
fi
[ -f "$WHEEL" ] || fail "$WHEEL: no such wheel"
if [ ! -x "$PREFIX/bin/python" ]; then
  "$PYTHON" -m venv "$PREFIX"
  say "made the virtualenv $PREFIX"
fi
pip=("$PREFIX/bin/pip" --quiet --disable-pip-version-check)
"${pip[@]}" install "$WHEEL[kiosk]"
# The same version number may carry other files (a rebuilt wheel): this one, exactly.
"${pip[@]}" install --force-reinstall --no-deps "$WHEEL"
install -d -m 0755 "$PREFIX/share/doc"
for doc in operator.md ssh.md; do
  [ -f "$REPO/docs/$doc" ] && install -m 0644 "$REPO/docs/$doc" "$PREFIX/share/doc/$doc"
done
say "smis-tui $("$PREFIX/bin/smis-tui" --version | cut -d' ' -f2) in $PREFIX"

# --- configuration and data ---------------------------------------------------------
install -d -m 0755 -o root -g root "$ETC" "$ETC/ca"
install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_USER" "$DATA"
install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_USER" "$DATA/crl"
CONFIG="$ETC/config.toml"
if [ ! -e "$CONFIG" ]; then
  install_text "# smis-tui configuration (docs/operator.md). Unknown keys are refused.
# Readable by $SERVICE_USER only: a database password may go into database_url.
data_dir = \"$DATA\"
# Without database_url: SQLite in data_dir (one kiosk). Many kiosks share PostgreSQL:
# database_url = \"postgresql:///smis?host=/var/run/postgresql\"
ca_dir = \"$ETC/ca\"
crl_dir = \"$DATA/crl\"" "$CONFIG" 0600 "$SERVICE_USER:$SERVICE_USER" || true
else
  chown "$SERVICE_USER:$SERVICE_USER" "$CONFIG"
  chmod 0600 "$CONFIG"
fi
as_service() {
  runuser -u "$SERVICE_USER" -- env -i PATH=/usr/bin:/bin LANG=C.UTF-8 \
    SMIS_CONFIG="$CONFIG" "$PREFIX/bin/smis-tui" "$@"
}
# Unknown or misspelt keys are refused here, naming the key, before any unit runs.
as_service config check | sed "s/^/install-server: /"
if grep -Eq '^[[:space:]]*database_url[[:space:]]*=' "$CONFIG"; then
  say "database_url is set: make the schema with the owner role (docs/operator.md), then"
  say "  runuser -u $SERVICE_USER -- env SMIS_CONFIG=$CONFIG $PREFIX/bin/smis-tui db version"
else
  as_service db init | sed 's/^/install-server: /'
fi
[ -e "$DATA/smis.key" ] && { chown "$SERVICE_USER:$SERVICE_USER" "$DATA/smis.key"; chmod 0600 "$DATA/smis.key"; }

# --- systemd units ------------------------------------------------------------------
units=(smis-tui-maintenance.service smis-tui-maintenance.timer
       smis-tui-crl-refresh.service smis-tui-crl-refresh.timer
       smis-tui-audit-verify.service smis-tui-audit-verify.timer)
[ "$KIOSK_SEAT" = yes ] && units+=(smis-tui-kiosk.service)
for unit in "${units[@]}"; do
  install_text "$(render "$REPO/deploy/systemd/$unit")" "$UNIT_DIR/$unit" 0644 || true
done
if [ "$KIOSK_SEAT" = yes ]; then
  install_text "$(cat "$REPO/deploy/pam.d/smis-tui-kiosk")" "$PAM_DIR/smis-tui-kiosk" 0644 || true
fi
if command -v systemd-analyze >/dev/null; then
  services=()
  for unit in "${units[@]}"; do services+=("$UNIT_DIR/$unit"); done
  # Checks syntax, the programs' paths and the users (not the running system).
  SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "${services[@]}" \
    || fail "systemd-analyze verify found errors in the units above"
fi

# --- SSH ----------------------------------------------------------------------------
if [ "$SSH" = yes ]; then
  getent group "$STAFF_GROUP" >/dev/null || { groupadd "$STAFF_GROUP"; say "created the group $STAFF_GROUP"; }
  install_text "d $FORWARD_DIR 1733 root root -" "$TMPFILES_DIR/smis-tui.conf" 0644 || true
  if [ "$SYSTEMCTL" = yes ]; then
    systemd-tmpfiles --create "$TMPFILES_DIR/smis-tui.conf"
  else
    install -d -m 1733 "$FORWARD_DIR"
  fi
  rule="$(render "$REPO/docs/sudoers.snippet")"
  staged="$(mktemp)"
  printf '%s\n' "$rule" >"$staged"
  visudo -cqf "$staged" || { rm -f "$staged"; fail "the sudoers rule does not parse"; }
  rm -f "$staged"
  install_text "$rule" "$SUDOERS_DIR/smis-tui" 0440 || true
  install_text "$(render "$REPO/docs/sshd_config.snippet")" "$SSHD_DIR/smis-tui.conf" 0644 || true
  if [ "$SSHD_DIR" = /etc/ssh/sshd_config.d ]; then
    mkdir -p /run/sshd
    /usr/sbin/sshd -t || fail "sshd -t: the SSH configuration does not parse"
  fi
fi

# --- start --------------------------------------------------------------------------
if [ "$SYSTEMCTL" = yes ]; then
  systemctl daemon-reload
  systemctl enable --now pcscd.socket
  systemctl enable --now smis-tui-maintenance.timer smis-tui-crl-refresh.timer \
    smis-tui-audit-verify.timer
  if [ "$KIOSK_SEAT" = yes ]; then
    systemctl disable getty@tty1.service 2>/dev/null || true
    systemctl enable smis-tui-kiosk.service
    systemctl set-default graphical.target
    say "the kiosk starts on tty1 at the next boot (or: systemctl start smis-tui-kiosk)"
  fi
  [ "$SSH" = yes ] && systemctl reload ssh
fi
say "done"
