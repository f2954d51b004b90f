#!/usr/bin/env bash
# Installs what foxrouter's build and tests need beyond Rust, gcc, Python 3.11 and pip:
#   - libclang (RocksDB's bindgen), mosquitto + clients, supervisor (Debian packages)
#   - a Python venv at .venv with autobahn (WAMP client, with what its cryptosign needs),
#     paho-mqtt, cbor2, msgpack
#   - node and npm (Debian packages nodejs, npm) and the JavaScript clients of tests/js
#     (autobahn-js, wampy.js, MQTT.js, playwright-core) at the exact versions of
#     tests/js/package-lock.json
#   - Chromium (Debian package chromium) and a font, for the status page's browser test
#     (tests/interop/test_status_page.py drives /usr/bin/chromium with playwright-core;
#     playwright's own browser downloads are never used)
# Idempotent: does nothing that is already done. Safe to run on every test run.
# `--build-only`: just what building the router needs (libclang), for scripts/run.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_only=0
[ "${1:-}" = "--build-only" ] && build_only=1
need=()
if [ "$build_only" = 0 ]; then
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
  command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
  command -v supervisord >/dev/null 2>&1 || need+=(supervisor)
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  command -v npm >/dev/null 2>&1 || need+=(npm)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  compgen -G '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf' >/dev/null || need+=(fonts-dejavu-core)
fi
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
if [ "$build_only" = 1 ]; then
  exit 0
fi
venv="$root/.venv"
# pynacl, base58 and ecdsa: what autobahn's WAMP-Cryptosign client (autobahn.wamp.cryptosign) imports
# PyJWT and cryptography: the JWT tests sign tokens with keys they generate, the TLS tests
# make their certificates (tests/interop/test_auth_jwt.py, test_tls.py)
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import autobahn, paho.mqtt, cbor2, msgpack, nacl, base58, ecdsa, jwt, cryptography' 2>/dev/null; then
  echo "setup: creating Python venv at $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    'autobahn>=23' 'paho-mqtt>=2,<3' cbor2 msgpack pynacl base58 ecdsa 'PyJWT>=2' cryptography pytest pytest-timeout >/dev/null
fi
# npm ci when node_modules is missing or older than the lock file (npm writes
# node_modules/.package-lock.json on every install, so its age is the install's age).
js="$root/tests/js"
if [ ! -f "$js/node_modules/.package-lock.json" ] || [ "$js/package-lock.json" -nt "$js/node_modules/.package-lock.json" ]; then
  echo "setup: installing the JavaScript test clients (npm ci in tests/js)"
  npm ci --prefix "$js" --no-audit --no-fund --loglevel=error >/dev/null
fi
echo "setup: ok"
