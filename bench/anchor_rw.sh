#!/bin/bash
# RelayWarden beside the shared anchors (Postfix alone, a trivial pymilter,
# rspamd's ratelimit-only milter over TCP and a unix socket) in one interleaved
# run of the shared anchor bench, with the rate limits *in force*.
#
#   bench/anchor_rw.sh /path/to/anchor-bench [bench.py options]
#   e.g. bench/anchor_rw.sh ../shared/anchor-bench --rounds 3 --msgs 3000 --warmup 200 --sessions 20
#
# The anchor bench's own run-rw.sh uses the same commands, but its policy leaves
# the relay's own address exempt from limits (our default), and its smtp-source
# connects from 127.0.0.1: the limits path would not run at all. This policy
# empties `[limits] exempt`, so every message goes through admission and the
# end-of-message commit, as a customer's would. Install the anchors once with
# the bench's install.sh (root). RWPY: the Python with our dependencies
# (default: the checkout's .venv).
set -euo pipefail
ANCHOR=$(cd "$1" && pwd); shift
CO=$(cd "$(dirname "$0")/.." && pwd)
PY=${VENV:-/tmp/anchor-venv}/bin/python
dport=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
work=$(mktemp -d /tmp/rw-anchor.XXXXXX)
echo '{"example.com": {"MX": ["10 mx.example.com."], "A": ["192.0.2.1"], "TXT": ["v=spf1 -all"]}, "example.net": {"MX": ["10 mx.example.net."], "A": ["192.0.2.2"]}}' > "$work/zones.json"
$PY "$ANCHOR/dns_server.py" "$dport" "$work/zones.json" >/dev/null 2>&1 &
dns_pid=$!
trap 'kill $dns_pid 2>/dev/null; rm -rf "$work"' EXIT
cat > "$work/policy.toml" <<T
[milter]
socket_mode = "0666"
[dns]
nameservers = ["127.0.0.1:$dport"]
[plans.default]
messages = ["100000/1m"]
[limits]
exempt = []
[limits.burst]
enabled = false
[limits.escalation]
enabled = false
T
sed 's/^socket_mode = "0666"$/socket_mode = "0666"\nworkers = 2/' "$work/policy.toml" > "$work/policy-2w.toml"
# The same milters unpinned ([milter] pin_cpus = false), and the trivial
# pymilter pinned the same way (taskset), to show what pinning does by itself.
for p in policy policy-2w; do
  sed 's/^socket_mode = "0666"$/socket_mode = "0666"\npin_cpus = false/' "$work/$p.toml" > "$work/$p-unpinned.toml"
done
RUN="${RWPY:-$CO/.venv/bin/python} -m relaywarden run --redis-url redis://127.0.0.1:{redis_port}/0"
RW="$RUN --config $work/policy.toml"
export PYTHONPATH="$CO"
"$ANCHOR/run.sh" \
  --variant "pymilter=$PY {bench}/milters/bench_milter.py --port {port} --latency-file {latfile}" \
  --variant "rspamd-rl={bench}/rspamd/start-rspamd.sh rl {port} {latfile}.rspamd.log" \
  --variant "rspamd-rl-unix={bench}/rspamd/start-rspamd.sh rl {unix} {latfile}.rspamd.log" \
  --variant "rw=$RW --listen inet:{port}@127.0.0.1" \
  --variant "rw-unix=$RW --listen unix:{unix}" \
  --variant "rw-2w=$RUN --config $work/policy-2w.toml --listen inet:{port}@127.0.0.1" \
  --variant "pymilter-pinned=taskset -c 0 $PY {bench}/milters/bench_milter.py --port {port} --latency-file {latfile}" \
  --variant "rw-unpinned=$RUN --config $work/policy-unpinned.toml --listen inet:{port}@127.0.0.1" \
  --variant "rw-2w-unpinned=$RUN --config $work/policy-2w-unpinned.toml --listen inet:{port}@127.0.0.1" \
  "$@"
