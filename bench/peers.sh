# bench/compare.sh's routers: how each one is configured, started, run through the
# scenarios and stopped. Sourced by compare.sh (it uses its settings and helpers:
# start_peer, stop_peer, mqtt_scenarios, wamp_scenarios, free_port, wait_port, log, $WORK,
# $QUEUE_MAX, $WINDOW, ...); not a script of its own.
# shellcheck shell=bash

# foxrouter as operators run it: its admin listener on, scraped once a second (/metrics
# and /api/v1/status, as Prometheus and a status page would). `foxrouter-noadmin` (only
# when --routers names it) runs it with --admin off, so its rows and RATIO lines show what
# the admin listener costs the message path. `foxrouter-before` (only when --routers names
# it) is $FOXROUTER_BEFORE_BIN run exactly as foxrouter: a change measured before and after.
run_foxrouter() { # [label]
  local label=${1:-foxrouter} ws rs mqtt admin cfg admin_args scraper="" bin=$FOXROUTER
  if [ "$label" = foxrouter-before ]; then
    bin=${FOXROUTER_BEFORE_BIN:-}
    if [ ! -x "$bin" ]; then
      # Every row, as errors, as for a missing peer.
      log "foxrouter-before: FOXROUTER_BEFORE_BIN is not an executable ('$bin')"
      mqtt_scenarios "$label" "" 127.0.0.1:1 127.0.0.1:1
      wamp_scenarios "$label" "" 127.0.0.1:1 127.0.0.1:1
      return 0
    fi
  fi
  ws=$(free_port); rs=$(free_port); mqtt=$(free_port); cfg="$WORK/foxrouter.toml"
  printf '[limits]\nsession_queue_max = %s\nmqtt_inflight_max = %s\nconnections_max = 100000\n' \
    "$QUEUE_MAX" "$WINDOW" > "$cfg"
  if [ "$label" != foxrouter-noadmin ]; then
    admin=$(free_port); admin_args=(--admin "127.0.0.1:$admin")
  else
    admin=""; admin_args=(--admin off)
  fi
  start_peer "$label" "$mqtt" "$WORK/$label.log" "$bin" serve --config "$cfg" \
    --ws "127.0.0.1:$ws" --rawsocket "127.0.0.1:$rs" --mqtt "127.0.0.1:$mqtt" \
    "${admin_args[@]}" --workers "$FOX_WORKERS" --log warn || return 0
  if [ -n "$admin" ] && [ "${DRY:-0}" != 1 ]; then
    # It follows the admin port, not one process: a router restarted after a failed run or
    # for a two-load-generator rerun (same command, same port) is scraped as well. It ends
    # when run_foxrouter kills it, or when this script is gone (its parent changes).
    python3 - "$admin" "$$" <<'PY' &
import os, sys, time, urllib.request
port, parent = sys.argv[1], int(sys.argv[2])
while os.getppid() == parent:
    for path in ("/metrics", "/api/v1/status"):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2).read()
        except OSError:
            pass
    time.sleep(1)
PY
    scraper=$!; PIDS+=("$scraper")
  fi
  mqtt_scenarios "$label" "$PEER_PID" "127.0.0.1:$mqtt" "127.0.0.1:$mqtt"
  wamp_scenarios "$label" "$PEER_PID" "127.0.0.1:$ws" "127.0.0.1:$rs"
  stop_peer
  if [ -n "$scraper" ]; then kill "$scraper" 2>/dev/null || true; wait "$scraper" 2>/dev/null || true; fi
}

run_mosquitto() {
  # A missing peer still gets every row, as errors (connection refused on port 1).
  [ -n "$MOSQUITTO" ] || { log "mosquitto not installed"; mqtt_scenarios mosquitto "" 127.0.0.1:1 127.0.0.1:1; return; }
  local port; port=$(free_port)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages %s\nmax_inflight_messages %s\nmax_connections -1\n' \
    "$port" "$QUEUE_MAX" "$WINDOW" > "$WORK/mosquitto.conf"
  start_peer mosquitto "$port" "$WORK/mosquitto.log" "$MOSQUITTO" -c "$WORK/mosquitto.conf" || return 0
  mqtt_scenarios mosquitto "$PEER_PID" "127.0.0.1:$port" "127.0.0.1:$port"
  stop_peer
}

run_rumqttd() {
  [ -x "$RUMQTTD" ] || { log "rumqttd not installed"; mqtt_scenarios rumqttd "" 127.0.0.1:1 127.0.0.1:1; return; }
  local v4 v5; v4=$(free_port); v5=$(free_port)
  cat > "$WORK/rumqttd.toml" <<EOF
id = 0
[router]
id = 0
max_connections = 20000
max_outgoing_packet_count = $QUEUE_MAX
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:$v4"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = $WINDOW
    dynamic_filters = true
[v5.1]
name = "v5-1"
listen = "127.0.0.1:$v5"
next_connection_delay_ms = 0
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = $WINDOW
EOF
  start_peer rumqttd "$v4" "$WORK/rumqttd.log" "$RUMQTTD" --config "$WORK/rumqttd.toml" || return 0
  mqtt_scenarios rumqttd "$PEER_PID" "127.0.0.1:$v4" "127.0.0.1:$v5"
  stop_peer
}

# rmqttd with the same window, queue and listener as the others: MQTT 3.1.1 and 5 on one
# loopback port (it tells them apart by the CONNECT), no plugins (the HTTP API on
# 0.0.0.0:6060, ACL and counter start by default: switched off), cluster gRPC on loopback.
# max_mqueue_len is the queue; mqueue_rate_limit is left at its built-in default (no limit;
# the sample rmqtt.toml sets 1000/s). Started from $WORK: rmqttd also reads ./rmqtt.toml.
run_rmqttd() {
  [ -x "$RMQTTD" ] || { log "rmqttd not installed"; mqtt_scenarios rmqttd "" 127.0.0.1:1 127.0.0.1:1; return; }
  local port grpc dir="$WORK/rmqttd"; port=$(free_port); grpc=$(free_port)
  mkdir -p "$dir/plugins"
  cat > "$dir/rmqtt.toml" <<EOF
node.id = 1
node.busy.check_enable = false
rpc.server_addr = "127.0.0.1:$grpc"
log.to = "console"
log.level = "warn"
plugins.dir = "$dir/plugins/"
plugins.default_startups = []
plugins.disabled_default_startups = ["rmqtt-acl", "rmqtt-counter", "rmqtt-http-api"]
mqtt.max_sessions = 0
listener.tcp.external.addr = "127.0.0.1:$port"
listener.tcp.external.max_connections = 1024000
listener.tcp.external.allow_anonymous = true
listener.tcp.external.max_inflight = $WINDOW
listener.tcp.external.max_mqueue_len = $QUEUE_MAX
listener.tcp.external.max_packet_size = "1m"
EOF
  start_peer rmqttd "$port" "$WORK/rmqttd.log" bash -c 'cd "$1" && exec "$2" -f "$1/rmqtt.toml"' rmqttd "$dir" "$RMQTTD" || return 0
  mqtt_scenarios rmqttd "$PEER_PID" "127.0.0.1:$port" "127.0.0.1:$port"
  stop_peer
}

# fox-relay: the frames moved and nothing else (see the header); every listener of it.
run_relay() {
  [ -x "$RELAY" ] || {
    log "fox-relay not built ($RELAY)"
    mqtt_scenarios relay "" 127.0.0.1:1 127.0.0.1:1
    wamp_scenarios relay "" 127.0.0.1:1 127.0.0.1:1
    return
  }
  local mqtt ws rs; mqtt=$(free_port); ws=$(free_port); rs=$(free_port)
  start_peer relay "$mqtt" "$WORK/relay.log" "$RELAY" --mqtt "127.0.0.1:$mqtt" \
    --ws "127.0.0.1:$ws" --rawsocket "127.0.0.1:$rs" --workers "$FOX_WORKERS" || return 0
  mqtt_scenarios relay "$PEER_PID" "127.0.0.1:$mqtt" "127.0.0.1:$mqtt"
  wamp_scenarios relay "$PEER_PID" "127.0.0.1:$ws" "127.0.0.1:$rs"
  stop_peer
}

run_crossbar() {
  [ -x "$CROSSBAR" ] || { log "crossbar not installed"; wamp_scenarios crossbar "" 127.0.0.1:1 127.0.0.1:1; return; }
  local ws rs dir; ws=$(free_port); rs=$(free_port); dir="$WORK/crossbar/.crossbar"
  mkdir -p "$dir"
  cat > "$dir/config.json" <<EOF
{
  "version": 2,
  "controller": {},
  "workers": [{
    "type": "router",
    "realms": [{"name": "realm1", "roles": [{"name": "anonymous", "permissions": [{
      "uri": "", "match": "prefix",
      "allow": {"call": true, "register": true, "publish": true, "subscribe": true},
      "disclose": {"caller": false, "publisher": false}, "cache": true}]}]}],
    "transports": [
      {"type": "web", "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": $ws},
       "paths": {"ws": {"type": "websocket", "serializers": ["json", "msgpack", "cbor"],
                        "options": {"max_message_size": 1048576}}}},
      {"type": "rawsocket", "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": $rs},
       "serializers": ["msgpack", "json", "cbor"]}
    ]
  }]
}
EOF
  "${ROUTER_CPUS[@]}" "$CROSSBAR" start --cbdir "$dir" > "$WORK/crossbar.log" 2>&1 &
  local pid=$!; PIDS+=("$pid")
  if ! wait_port "$ws" 60; then log "crossbar did not start (see $WORK/crossbar.log)"; return; fi
  # The router runs in a worker process, a child of the controller: measure that one.
  local worker; worker=$(pgrep -P "$pid" | head -1 || true)
  log "crossbar controller $pid, router worker ${worker:-?}"
  wamp_scenarios crossbar "${worker:-$pid}" "127.0.0.1:$ws" "127.0.0.1:$rs"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
