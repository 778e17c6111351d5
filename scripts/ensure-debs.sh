#!/usr/bin/env bash
# Install the named Debian packages that are missing (as root with apt-get; otherwise
# only say which are assumed to be there).
set -euo pipefail
missing=()
for package in "$@"; do
  dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q '^install ok installed$' \
    || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "ensure-debs: not root or no apt-get; please install: ${missing[*]}" >&2
  exit 1
fi
echo "apt-get install ${missing[*]}"
# Installing a server package (openssh-server, postgresql, pcscd) must not start the
# system's own daemon: an sshd on 0.0.0.0:22 or a cluster on 5432 is not ours to run.
# The tests start private, loopback-only instances themselves. policy-rc.d exit 101
# tells invoke-rc.d (and deb-systemd-invoke) to leave services stopped.
policy=/usr/sbin/policy-rc.d
saved=""
if [ -e "$policy" ]; then saved="$(mktemp)"; cp -p "$policy" "$saved"; fi
restore_policy() {
  if [ -n "$saved" ]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' >"$policy"
chmod 755 "$policy"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
