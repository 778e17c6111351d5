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
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
