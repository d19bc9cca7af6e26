#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the lease tests, as the `postgres`
# user, on a free loopback port with trust authentication, and prints the
# URL to use as SUPERVISED_TEST_DATABASE_URL. Installs Debian's `postgresql`
# when it is missing. `.ci/postgres.sh stop DIR` stops it again.
set -euo pipefail

if [ "${1:-}" = "stop" ]; then
    dir=$2
    bin=$(cat "$dir/bindir")
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    exit 0
fi

find_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

bin=$(find_bin)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "installing postgresql" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    bin=$(find_bin)
fi

# A free port, from the kernel.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

dir=$(mktemp -d /tmp/supervised-pg.XXXXXX)
echo "$bin" >"$dir/bindir"
chown postgres "$dir"
runuser -u postgres -- "$bin/initdb" -D "$dir/data" --auth=trust --username=postgres \
    --encoding=UTF8 --no-sync >"$dir/initdb.log" 2>&1
runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off -c max_connections=200" \
    start >&2

echo "dir=$dir"
echo "url=postgres://postgres@127.0.0.1:$port/postgres"
