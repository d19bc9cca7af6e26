#!/usr/bin/env bash
# Smoke test of the demo service (`cargo run --example service`): builds it,
# starts it on a free loopback port, probes /livez and /admin/liveness (with
# the admin token), stops it with SIGINT and checks that it exits 0.
# Needs: cargo, curl, chromium. Every wait is bounded.
set -euo pipefail

cd "$(dirname "$0")/.."

echo "smoke-service: building the demo"
cargo build --quiet --example service
target_dir=$(cargo metadata --format-version 1 --no-deps \
    | grep -o '"target_directory":"[^"]*"' | head -n1 | cut -d'"' -f4)
bin="$target_dir/debug/examples/service"
[ -x "$bin" ] || { echo "smoke-service: $bin not found" >&2; exit 1; }

log=$(mktemp)
token="smoke-token-$$-$RANDOM$RANDOM"
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$log"
}
trap cleanup EXIT
fail() {
    echo "smoke-service: FAILED: $*" >&2
    echo "----- service output -----" >&2
    cat "$log" >&2 || true
    exit 1
}

# Port 0: the service prints the address it got.
SUPERVISED_ADMIN_TOKEN="$token" RUST_BACKTRACE=0 RUST_LOG=warn \
    "$bin" --addr 127.0.0.1:0 >"$log" 2>&1 &
pid=$!

base=""
for _ in $(seq 1 300); do
    base=$(grep -o 'demo service on http://[0-9.:]*' "$log" | head -n1 | sed 's/.* on //') || true
    [ -n "$base" ] && break
    kill -0 "$pid" 2>/dev/null || fail "the service exited early"
    sleep 0.1
done
[ -n "$base" ] || fail "the service did not print its address within 30 s"
echo "smoke-service: service at $base (pid $pid)"
# The token came from the environment: the demo must not print it.
if grep -aq "$token" "$log"; then fail "the demo printed the admin token it was given"; fi

livez=$(curl -sS --max-time 5 "$base/livez") || fail "GET /livez"
[ "$livez" = "ok" ] || fail "/livez answered '$livez'"
echo "smoke-service: /livez -> $livez"

code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$base/admin/liveness") \
    || fail "GET /admin/liveness without token"
[ "$code" = "401" ] || fail "/admin/liveness without token answered $code, not 401"

# The ordered group starts db, then scheduler and relay; reports is added
# 3 s after the start: wait (bounded) until every one is listed.
names="db scheduler relay storage health-sweep flaky-worker ingest reports"
missing="$names"
for _ in $(seq 1 150); do
    liveness=$(curl -sS --fail --max-time 5 -H "Authorization: Bearer $token" "$base/admin/liveness") \
        || fail "GET /admin/liveness with token"
    missing=""
    for name in $names; do
        case "$liveness" in
            *"\"$name\":{"*) ;;
            *) missing="$missing $name" ;;
        esac
    done
    [ -z "$missing" ] && break
    sleep 0.1
done
[ -z "$missing" ] || fail "/admin/liveness does not list$missing: $liveness"
case "$liveness" in *'"parent":"storage"'*) ;; *) fail "no member of storage in $liveness" ;; esac
# The scheduler's poisoned tenant is quarantined; the scheduler stays healthy.
case "$liveness" in *'"key":"tenant-5"'*) ;; *) fail "tenant-5 is not quarantined in $liveness" ;; esac
verbose=$(curl -sS --max-time 5 "$base/livez?verbose") || fail "GET /livez?verbose"
case "$verbose" in *"[+]scheduler ok (1 key quarantined)"*) ;; *) fail "/livez?verbose: $verbose" ;; esac
case "$verbose" in *tenant-5*) fail "/livez names a quarantined key: $verbose" ;; esac
echo "smoke-service: tenant-5 quarantined; the scheduler alive (a count on /livez, the key behind the token)"
case "$liveness" in *'"last_tick_at":"'*) ;; *) fail "no last_tick_at in $liveness" ;; esac
echo "smoke-service: /admin/liveness lists the 8 subsystems, members of storage under it"

# The status page, as a person sees it: headless Chromium runs its script
# against the demo and leaves one row per task.
command -v chromium >/dev/null 2>&1 || fail "chromium is not installed"
dom=$(timeout 60 chromium --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --no-first-run --virtual-time-budget=3000 --dump-dom "$base/admin/#token=$token" 2>/dev/null) \
    || fail "chromium could not load $base/admin/"
for name in $names; do
    case "$dom" in
    *"data-task=\"$name\""*) ;;
    *) fail "the status page shows no row for $name" ;;
    esac
done
case "$dom" in *"<strong>tenant-5</strong>"*) ;; *) fail "the status page does not show tenant-5 quarantined" ;; esac
echo "smoke-service: /admin/ in headless Chromium shows every task and the quarantined tenant"

kill -INT "$pid"
# The drain (2 s by default): not ready at once, still alive.
sleep 0.3
ready_code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$base/readyz") || fail "GET /readyz while draining"
[ "$ready_code" = "503" ] || fail "/readyz answered $ready_code while draining, not 503"
live_code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$base/livez") || fail "GET /livez while draining"
[ "$live_code" = "200" ] || fail "/livez answered $live_code while draining, not 200"
echo "smoke-service: draining: /readyz 503, /livez 200"
for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$pid" 2>/dev/null && fail "the service did not stop within 20 s of SIGINT"
status=0
wait "$pid" || status=$?
pid=""
[ "$status" -eq 0 ] || fail "the service exited with status $status"
grep -q "How each task ended" "$log" || fail "no exit report"
echo "smoke-service: stopped by SIGINT, exit status 0"
