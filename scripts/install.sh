#!/usr/bin/env bash
# Production install of RelayWarden: the runtime only, into its own venv built
# with the system's Python, plus the service user, the policy in /etc and the
# systemd units. No development tools, no browser, no docker-compose.
#
#   sudo scripts/install.sh                      # /opt/relaywarden, units, user, /etc/relaywarden
#   scripts/install.sh --prefix DIR --no-system  # only the venv (what the install test does)
#
# Options:
#   --prefix DIR      the venv (default /opt/relaywarden)
#   --wheel FILE      install this wheel instead of building one from this checkout
#   --units-dir DIR   where the systemd units go (default /etc/systemd/system)
#   --no-system       no user, /etc, units or /usr/local/bin link (units still go to
#                     --units-dir if given)
#   --no-apt          do not install the Debian packages needed to build pymilter
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=/opt/relaywarden
WHEEL=""
UNITS_DIR=""
SYSTEM=1
APT=1
while (($#)); do
  case "$1" in
    --prefix) PREFIX=$2; shift 2 ;;
    --wheel) WHEEL=$2; shift 2 ;;
    --units-dir) UNITS_DIR=$2; shift 2 ;;
    --no-system) SYSTEM=""; shift ;;
    --no-apt) APT=""; shift ;;
    *) echo "install: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$SYSTEM" ] && [ -z "$UNITS_DIR" ] && UNITS_DIR=/etc/systemd/system

# The system's Python, never whatever python3 comes first on PATH (a pyenv shim
# under /root would be unreadable for the service user).
PY=${PYTHON:-/usr/bin/python3}
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

if [ -n "$APT" ]; then
  # pymilter is compiled against libmilter at install time; the relay itself then
  # needs only libmilter1.0.1 (pulled in by libmilter-dev).
  PACKAGES=(python3-venv python3-dev libmilter-dev gcc)
  missing=()
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    echo "install: Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

echo "install: venv $PREFIX (with $PY, $("$PY" --version 2>&1))"
[ -x "$PREFIX/bin/python" ] || "$PY" -m venv "$PREFIX"
"$PREFIX/bin/python" -m pip install -q --upgrade pip

if [ -z "$WHEEL" ]; then
  build=$(mktemp -d)
  trap 'rm -rf "$build"' EXIT
  echo "install: building the wheel"
  "$PREFIX/bin/python" -m pip wheel -q --no-deps -w "$build" .
  WHEEL=$(ls "$build"/relaywarden-*.whl)
fi
echo "install: $(basename "$WHEEL") with its runtime dependencies"
"$PREFIX/bin/python" -m pip install -q --upgrade "$WHEEL"

install -d "$PREFIX/share/doc/relaywarden"
install -m 0644 README.md docs/operations.md "$PREFIX/share/doc/relaywarden/"

if [ -n "$UNITS_DIR" ]; then
  install -d "$UNITS_DIR"
  for unit in dist/systemd/*.service; do
    sed "s#/opt/relaywarden#$PREFIX#g" "$unit" > "$UNITS_DIR/$(basename "$unit")"
    chmod 0644 "$UNITS_DIR/$(basename "$unit")"
  done
  echo "install: systemd units in $UNITS_DIR"
fi

if [ -n "$SYSTEM" ]; then
  getent group relaywarden >/dev/null || $SUDO groupadd --system relaywarden
  getent passwd relaywarden >/dev/null \
    || $SUDO useradd --system --gid relaywarden --no-create-home --home-dir /nonexistent \
         --shell /usr/sbin/nologin relaywarden
  $SUDO install -d -m 0750 -g relaywarden /etc/relaywarden
  if [ ! -e /etc/relaywarden/policy.toml ]; then
    # The packaged default, every key documented: the starting point to edit.
    $SUDO install -m 0640 -g relaywarden \
      "$("$PREFIX/bin/python" -c 'from relaywarden.policy.loader import DEFAULT_POLICY; print(DEFAULT_POLICY)')" \
      /etc/relaywarden/policy.toml
    echo "install: /etc/relaywarden/policy.toml (the packaged default: edit it)"
  fi
  $SUDO ln -sf "$PREFIX/bin/relaywarden" /usr/local/bin/relaywarden
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl daemon-reload
  fi
  cat <<EOT
install: done. Next:
  edit /etc/relaywarden/policy.toml, then: relaywarden check-config
  systemctl enable --now relaywarden          # the milter
  systemctl enable --now relaywarden-agent    # hold-queue actions from the desk (runs postsuper as root)
  systemctl enable --now relaywarden-web      # the desk, on the host behind your reverse proxy
  Postfix's main.cf lines: $PREFIX/share/doc/relaywarden/operations.md
EOT
fi
