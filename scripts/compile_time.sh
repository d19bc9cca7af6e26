#!/usr/bin/env bash
# Compile time of 100 `#[supervised]` fns against 100 plain async fns.
#
# Generates two throwaway crates under $WORK (default /tmp/supervised-compile-time)
# that depend on this repository by path, builds their dependencies once, then
# times rebuilding each crate alone (`cargo check` and `cargo build`), RUNS times,
# alternating between the two crates.
# The crates use edition $EDITION (default 2024) and `-D warnings`, and include
# bodies that never return, so the script also checks that the expansion is
# warning-free there.
#
# When valgrind is installed, it also counts the instructions rustc executes
# for one such rebuild of each crate: a measure this machine's noise does not
# move.
#
# Usage: scripts/compile_time.sh            (EDITION=2021 RUNS=5 to change)
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${WORK:-/tmp/supervised-compile-time}"
EDITION="${EDITION:-2024}"
RUNS="${RUNS:-7}"
N=100
export CARGO_TARGET_DIR="$WORK/target"
export RUSTFLAGS="-D warnings"

generate() { # kind
    local kind=$1 dir="$WORK/$1"
    mkdir -p "$dir/src"
    cat >"$dir/Cargo.toml" <<TOML
[package]
name = "ct-$kind"
version = "0.0.0"
edition = "$EDITION"
publish = false

[dependencies]
supervised = { path = "$REPO" }
tokio = { version = "1", features = ["time"] }

[workspace]
TOML
    {
        echo "//! $N $kind fns."
        echo "use std::time::Duration;"
        echo "use supervised::Context;"
        [ "$kind" = annotated ] && echo "use supervised::supervised;"
        for i in $(seq 1 $N); do
            if [ "$kind" = annotated ]; then
                echo "/// Task $i."
                echo "#[supervised(backoff_max = \"10s\", stale_after = \"1m\")]"
                beat=""
            else
                echo "/// Fn $i."
                beat="ctx.heartbeat();"
            fi
            case $((i % 10)) in
            0) # never returns
                echo "pub async fn f$i(ctx: Context, every: u64) -> Result<(), String> {"
                echo "    loop { $beat tokio::time::sleep(Duration::from_millis(every)).await; let _ = ctx.attempt(); }"
                echo "}" ;;
            5) # ends in a panic
                echo "pub async fn f$i(ctx: Context, label: String) {"
                echo "    let _ = (ctx.name(), label);"
                echo "    panic!(\"f$i\")"
                echo "}" ;;
            *)
                echo "pub async fn f$i(ctx: Context, every: u64, label: String) -> Result<(), String> {"
                echo "    while !ctx.is_cancelled() {"
                echo "        $beat"
                echo "        tokio::time::sleep(Duration::from_millis(every)).await;"
                echo "        if label.is_empty() { return Err(\"no label\".into()); }"
                echo "    }"
                echo "    Ok(())"
                echo "}" ;;
            esac
        done
    } >"$dir/src/lib.rs"
}

now() { date +%s.%N; }

time_once() { # kind cmd: prints the seconds of one rebuild after a touch
    local kind=$1; shift
    touch "$WORK/$kind/src/lib.rs"
    local t0 t1
    t0=$(now)
    (cd "$WORK/$kind" && cargo "$@" -q)
    t1=$(now)
    echo "$t1 - $t0" | bc
}

# Rebuilds alternate between the two crates, so that both see the same
# machine; prints the best time of each and the median of the per-round
# ratios.
time_cmd() { # cmd
    local ratios=() best_a="" best_p=""
    for _ in $(seq 1 "$RUNS"); do
        local a p
        a=$(time_once annotated "$1")
        p=$(time_once plain "$1")
        ratios+=("$(echo "scale=4; $a / $p" | bc)")
        if [ -z "$best_a" ] || [ "$(echo "$a < $best_a" | bc)" = 1 ]; then best_a=$a; fi
        if [ -z "$best_p" ] || [ "$(echo "$p < $best_p" | bc)" = 1 ]; then best_p=$p; fi
    done
    local median
    median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
    printf '%-6s best of %s: annotated %6.3f s, plain %6.3f s; ratio of the bests %.2f, median ratio per round %.2f\n' \
        "$1" "$RUNS" "$best_a" "$best_p" "$(echo "scale=4; $best_a / $best_p" | bc)" "$median"
}

rm -rf "$WORK/annotated" "$WORK/plain"
generate annotated
generate plain
for kind in annotated plain; do
    (cd "$WORK/$kind" && cargo build -q && cargo check -q)
done
echo "edition $EDITION, $N fns, rustc $(rustc --version | cut -d' ' -f2)"
for cmd in check build; do
    time_cmd "$cmd"
done

# Instructions rustc executes for one incremental rebuild of `kind`, in
# millions (cachegrind, following the child processes of the command cargo
# runs).
instructions() { # kind
    local kind=$1 crate cmd
    crate="ct_$kind"
    touch "$WORK/$kind/src/lib.rs"
    cmd=$(cd "$WORK/$kind" && cargo build -v 2>&1 | grep "Running \`.*--crate-name $crate " |
        sed 's/^ *Running `//; s/`$//')
    touch "$WORK/$kind/src/lib.rs"
    (cd "$WORK/$kind" && valgrind --tool=cachegrind --cache-sim=no --trace-children=yes \
        --cachegrind-out-file=/dev/null bash -c "$cmd" 2>&1) |
        grep -E 'I +refs' | tr -d , | awk '{ if ($NF > m) m = $NF } END { printf "%.1f", m / 1e6 }'
}

if command -v valgrind >/dev/null; then
    a=$(instructions annotated)
    p=$(instructions plain)
    printf 'rustc instructions, one rebuild: annotated %s M, plain %s M; ratio %.2f\n' \
        "$a" "$p" "$(echo "scale=4; $a / $p" | bc)"
fi
