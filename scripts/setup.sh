#!/usr/bin/env bash
# Idempotent developer setup on a fresh Debian machine: system packages, then .venv.
# Postfix is installed without configuration and without starting the system
# instance (nothing grabs port 25): RelayWarden's demo and tests run private
# instances of their own on free loopback ports.
#
#   scripts/setup.sh demo   what `make demo` needs: Postfix, Redis, the runtime + demo extra
#   scripts/setup.sh        (dev) what `make test` needs on top: Chromium, docker-compose,
#                           systemd-analyze, the test/browser/lint extras
#
# A relay in production does not run this: scripts/install.sh installs the runtime only.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${1:-dev}
case "$PROFILE" in
  demo) EXTRAS=demo ;;
  dev) EXTRAS=dev ;;
  *) echo "setup: unknown profile $PROFILE (demo or dev)" >&2; exit 2 ;;
esac

# sasl2-bin (saslpasswd2) and libsasl2-modules (PLAIN, LOGIN, sasldb): the devstack's
# optional real SASL AUTH, whose failures the outcome watcher counts.
PACKAGES=(postfix redis-server libmilter-dev gcc python3-venv python3-dev sasl2-bin libsasl2-modules)
if [ "$PROFILE" = dev ]; then
  # chromium: the desk's browser test; docker-compose only checks docker-compose.yml
  # (`docker-compose config`, no engine runs here); systemd: `systemd-analyze verify`
  # of the units in dist/systemd.
  # rspamd: the optional content scanner's end-to-end test (its service is not started).
  PACKAGES+=(chromium docker-compose systemd rspamd)
fi

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

# The system's Python, not whatever python3 comes first on PATH.
PY=${PYTHON:-/usr/bin/python3}
hash=$(sha256sum pyproject.toml | cut -c1-16)
stamp=.venv/.setup-$hash-$PROFILE
# A dev venv has everything the demo needs.
if [ ! -e "$stamp" ] && [ ! -e ".venv/.setup-$hash-dev" ]; then
  echo "setup: creating .venv and installing relaywarden with the $EXTRAS extras"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  rm -f .venv/.setup-*
  touch "$stamp"
fi
echo "setup: ready"
