#!/usr/bin/env bash
# Installs what foxrouter's build and tests need beyond Rust, gcc, Python 3.11 and pip:
#   - libclang (RocksDB's bindgen), mosquitto + clients, supervisor (Debian packages)
#   - a Python venv at .venv with autobahn (WAMP client), paho-mqtt, cbor2, msgpack
# Idempotent: does nothing that is already done. Safe to run on every test run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v supervisord >/dev/null 2>&1 || need+=(supervisor)
compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null || compgen -G '/usr/lib/x86_64-linux-gnu/libclang-*.so.1' >/dev/null || need+=(libclang-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian starts mosquitto as a service on :1883; our tests pick their own ports, but stop it
  # so it never shadows the router's default port.
  if [[ " ${need[*]} " == *" mosquitto "* ]]; then
    (command -v systemctl >/dev/null && $SUDO systemctl stop mosquitto) >/dev/null 2>&1 || true
    (command -v service >/dev/null && $SUDO service mosquitto stop) >/dev/null 2>&1 || true
  fi
fi
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import autobahn, paho.mqtt, cbor2, msgpack' 2>/dev/null; then
  echo "setup: creating Python venv at $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    'autobahn>=23' 'paho-mqtt>=2,<3' cbor2 msgpack pytest pytest-timeout >/dev/null
fi
echo "setup: ok"
