#!/usr/bin/env bash
# Install the Debian packages the test suite runs for real: PostgreSQL 15 (the alert store's
# production database), Chromium (the headless browser that checks the map page) and
# Prometheus (a real server scrapes the daemon; promtool checks the scrape config and
# unit-tests the alerting rules in deploy/prometheus/) and Alertmanager (amtool checks
# deploy/compose/alertmanager.yml).
# Idempotent: installs only what is missing. Needs root or sudo for apt-get.
# Nothing here starts a service. Debian's prometheus package enables a systemd unit of its
# own; in a container (no systemd, policy-rc.d) that does nothing. The tests start their own
# Prometheus on a free port. On a host with systemd the package starts one on :9090.
set -euo pipefail

missing=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "need root (or sudo) to apt-get install ${missing[*]}; install them and rerun" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q >/dev/null || true   # stale lists are fine if the cache has them
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
