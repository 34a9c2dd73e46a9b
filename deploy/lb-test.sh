#!/usr/bin/env bash
# lb-test.sh - two igserve instances behind nginx; stop one mid-run; no request may be lost.
#
# usage: deploy/lb-test.sh [--requests N] [--concurrency C]
#
# Starts two `igserve serve` instances on loopback ports, nginx in front of them with
# deploy/nginx/igserve.conf (its backend and listen lines rewritten to those ports; pid, logs
# and temp files in a temporary directory, so no root is needed), and sends N requests (default
# 120, one in four an /attribute) through nginx, C at a time (default 4). Once a third of them
# have been answered it sends SIGTERM to the first instance, which must drain and exit 0 while
# nginx moves the traffic to the second.
#
# The model: $LB_TEST_MODEL (with $LB_TEST_FLAGS), else the demo model
# models/demo/shapes-resnet.safetensors, else the test fixture
# tests/fixtures/engine/tv_basic.safetensors with --input-size 64.
# The binary: $IGSERVE_BINARY, else build/igserve.
#
# Prints "sent N, ok N, lost N". Exit status: 0 when nothing was lost and the stopped instance
# exited 0; 1 otherwise; 2 when the test could not be set up.
set -uo pipefail

requests=120
concurrency=4
while [ $# -gt 0 ]; do
	case "$1" in
	--requests) requests=${2:?}; shift ;;
	--concurrency) concurrency=${2:?}; shift ;;
	-h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
	*) echo "lb-test: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done

root=$(cd "$(dirname "$0")/.." && pwd)
binary=${IGSERVE_BINARY:-$root/build/igserve}
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

setup_fail() {
	echo "lb-test: $*" >&2
	exit 2
}

[ -x "$binary" ] || setup_fail "no igserve binary at $binary (build first)"
[ -x "$nginx_bin" ] || setup_fail "nginx is not installed (scripts/install-deps installs nginx-light)"

if [ -n "${LB_TEST_MODEL:-}" ]; then
	model=$LB_TEST_MODEL
	read -r -a model_flags <<<"${LB_TEST_FLAGS:-}"
elif [ -f "$root/models/demo/shapes-resnet.safetensors" ]; then
	model=$root/models/demo/shapes-resnet.safetensors
	model_flags=()
elif [ -f "$root/tests/fixtures/engine/tv_basic.safetensors" ]; then
	model=$root/tests/fixtures/engine/tv_basic.safetensors
	model_flags=(--input-size 64)
else
	setup_fail "no small model found (models/demo/shapes-resnet.safetensors)"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/igserve-lb-test.XXXXXX") || setup_fail "mktemp failed"
pids=()
cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null
	done
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

# free_port: a loopback TCP port nobody listens on.
free_port() {
	local port
	for _ in $(seq 50); do
		port=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return 0
		fi
	done
	return 1
}

# wait_http URL SECONDS: wait until URL answers 200.
wait_http() {
	local deadline=$((SECONDS + $2))
	while [ "$SECONDS" -lt "$deadline" ]; do
		[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1")" = 200 ] && return 0
		sleep 0.2
	done
	return 1
}

if ! { port_a=$(free_port) && port_b=$(free_port) && port_lb=$(free_port); }; then
	setup_fail "no free port"
fi
if [ "$port_a" = "$port_b" ] || [ "$port_a" = "$port_lb" ] || [ "$port_b" = "$port_lb" ]; then
	setup_fail "port collision, run again"
fi

# ---- the two instances ----
# start_instance PORT: start igserve in the background (in this shell, so that `wait` can
# collect its exit status); $! is its pid.  The result cache is off: every request sends the
# same image, and the drain must find jobs in flight, not answers from the cache.
start_instance() {
	IGSERVE_DRAIN_TIMEOUT=${IGSERVE_DRAIN_TIMEOUT:-20} \
		"$binary" serve --host 127.0.0.1 --port "$1" --workers 2 --model "$model" \
		--cache-bytes 0 "${model_flags[@]}" >"$tmp/igserve-$1.log" 2>&1 &
	pids+=($!)
}
start_instance "$port_a"
pid_a=$!
start_instance "$port_b"
for port in "$port_a" "$port_b"; do
	if ! wait_http "http://127.0.0.1:$port/readyz" 60; then
		tail -n 20 "$tmp/igserve-$port.log" >&2
		setup_fail "igserve on port $port did not become ready in 60 s"
	fi
done

# ---- nginx with the deployment's own configuration ----
mkdir -p "$tmp/nginx"
sed -e "s/server 127\\.0\\.0\\.1:[0-9]*\\(.*# backend 1\\)/server 127.0.0.1:$port_a\\1/" \
	-e "s/server 127\\.0\\.0\\.1:[0-9]*\\(.*# backend 2\\)/server 127.0.0.1:$port_b\\1/" \
	-e "s/listen [0-9]*;\\( *# frontend\\)/listen 127.0.0.1:$port_lb;\\1/" \
	"$root/deploy/nginx/igserve.conf" >"$tmp/nginx/igserve.conf"
for needle in "127.0.0.1:$port_a" "127.0.0.1:$port_b" "127.0.0.1:$port_lb"; do
	grep -q "$needle" "$tmp/nginx/igserve.conf" ||
		setup_fail "deploy/nginx/igserve.conf lacks its '# backend 1/2' or '# frontend' line"
done
user_line=
[ "$(id -u)" -ne 0 ] || user_line="user root;" # workers must reach the temp directory
cat >"$tmp/nginx/nginx.conf" <<EOF
$user_line
daemon off;
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 256; }
http {
	log_format upstreams '\$status|\$upstream_addr|\$upstream_status|\$request_uri';
	access_log $tmp/nginx/access.log upstreams;
	client_body_temp_path $tmp/nginx/body;
	proxy_temp_path $tmp/nginx/proxy;
	fastcgi_temp_path $tmp/nginx/fastcgi;
	uwsgi_temp_path $tmp/nginx/uwsgi;
	scgi_temp_path $tmp/nginx/scgi;
	include $tmp/nginx/igserve.conf;
}
EOF
"$nginx_bin" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" &
pids+=($!)
if ! wait_http "http://127.0.0.1:$port_lb/healthz" 20; then
	cat "$tmp/nginx/error.log" >&2
	setup_fail "nginx did not start"
fi

# ---- an image the model can take ----
image=
for f in "$root"/models/demo/examples/*.png "$root"/models/demo/examples/*.jpg \
	"$root"/tests/fixtures/image/*.png; do
	[ -f "$f" ] && image=$f && break
done
[ -n "$image" ] || setup_fail "no example image (models/demo/examples/*.png)"

# ---- the run ----
results=$tmp/results
: >"$results"
export LB_URL="http://127.0.0.1:$port_lb" LB_IMAGE="$image" LB_RESULTS="$results"
send_one() {
	local path=/predict
	[ $(($1 % 4)) -ne 3 ] || path='/attribute?steps=8&heatmaps=magnitude'
	local code
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 120 \
		-F "image=@$LB_IMAGE" "$LB_URL$path")
	echo "$code $path" >>"$LB_RESULTS"
}
export -f send_one

echo "lb-test: $requests requests, $concurrency at a time, through nginx :$port_lb to igserve :$port_a and :$port_b ($(basename "$model"))"
start=$SECONDS
seq "$requests" | xargs -P "$concurrency" -I{} bash -c 'send_one {}' &
driver=$!

stop_at=$((requests / 3))
while [ "$(wc -l <"$results")" -lt "$stop_at" ] && kill -0 "$driver" 2>/dev/null; do
	sleep 0.05
done
echo "lb-test: $(wc -l <"$results") answered; SIGTERM to the instance on :$port_a"
kill -TERM "$pid_a"
wait "$driver"

# The stopped instance must finish what it had and exit cleanly.
a_status=timeout
for _ in $(seq 300); do
	if ! kill -0 "$pid_a" 2>/dev/null; then
		wait "$pid_a"
		a_status=$?
		break
	fi
	sleep 0.1
done

sent=$(wc -l <"$results")
ok=$(grep -c '^200 ' "$results")
lost=$((requests - ok))
# access.log: status|upstream addresses tried, in order|their statuses|uri
by_a=0 by_b=0 resent=0
while IFS='|' read -r _ addrs _ uri; do
	case "$uri" in /predict* | /attribute*) ;; *) continue ;; esac
	case "$addrs" in *,*) resent=$((resent + 1)) ;; esac
	case "${addrs##*, }" in
	"127.0.0.1:$port_a") by_a=$((by_a + 1)) ;;
	"127.0.0.1:$port_b") by_b=$((by_b + 1)) ;;
	esac
done <"$tmp/nginx/access.log"
echo "lb-test: answered by :$port_a $by_a, by :$port_b $by_b; resent to the other backend $resent; took $((SECONDS - start)) s"
if [ "$lost" -ne 0 ]; then
	echo "lb-test: answers other than 200:" >&2
	grep -v '^200 ' "$results" | sort | uniq -c >&2
fi
echo "lb-test: the stopped instance exited with status $a_status"
[ "$a_status" = 0 ] || tail -n 20 "$tmp/igserve-$port_a.log" >&2
echo "sent $sent, ok $ok, lost $lost"
[ "$lost" -eq 0 ] && [ "$sent" -eq "$requests" ] && [ "$a_status" = 0 ]
