#!/usr/bin/env bash
# Idempotent setup on a fresh Debian machine: system packages, then the venv.
# Postfix is installed without configuration and without starting the system
# instance (nothing grabs port 25): RelayWarden's demo and tests run private
# instances of their own on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

# docker-compose only checks docker-compose.yml (`docker-compose config`); no engine runs here.
PACKAGES=(postfix redis-server libmilter-dev gcc python3-venv python3-dev chromium docker-compose rspamd)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  # Keep package scripts from starting system services (postfix on :25, redis on :6379).
  created_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -z "$created_policy" ] || $SUDO rm -f /usr/sbin/policy-rc.d
fi

PY=${PYTHON:-python3}
stamp=.venv/.setup-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
  echo "setup: creating .venv and installing relaywarden with dev extras"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.setup-*
  touch "$stamp"
fi
echo "setup: ready"
