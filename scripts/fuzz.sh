#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time, keeps the
# corpora in fuzz/corpus/<target>/ (seeded from fuzz/seeds/<target>/), puts
# crash artifacts in fuzz/artifacts/<target>/, uses fuzz/dict/<target>.dict
# when there is one, prints a summary, and exits
# non-zero if any target crashed (panic, sanitizer report, timeout, OOM).
#
#   scripts/fuzz.sh                      # every target, 60 s each
#   FUZZ_SECONDS=30 scripts/fuzz.sh token route_match
#
# Environment:
#   FUZZ_SECONDS     time per target (default 60)
#   FUZZ_SANITIZER   address (default) | none | memory | thread | leak
#   FUZZ_RSS_MB      libFuzzer memory limit per target (default 2048)
#   CARGO_TARGET_DIR build directory (default fuzz/target)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain the
# nightly-only flags cargo-fuzz passes are enabled with RUSTC_BOOTSTRAP=1.
# When `unshare -n` works (root, Linux) the fuzzers run in a network
# namespace with only loopback: config loading resolves backend addresses,
# and a fuzzed host name must not become a DNS query.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-address}"
rss_mb="${FUZZ_RSS_MB:-2048}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/fuzz/target}"
all_targets=(path_normalize route_match config_load token)
if [ "$#" -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is not installed; run: cargo install cargo-fuzz" >&2
    exit 2
fi
rustc --version | grep -q nightly || export RUSTC_BOOTSTRAP=1

echo "== building fuzz targets (sanitizer: $sanitizer)"
# One target at a time, so a subset works too; stop on a build failure.
for t in "${targets[@]}"; do
    if ! cargo fuzz build --sanitizer "$sanitizer" "$t" >/dev/null 2>fuzz/build-"$t".log; then
        echo "fuzz.sh: building $t failed (see fuzz/build-$t.log)" >&2
        exit 2
    fi
    rm -f fuzz/build-"$t".log
done
triple="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$CARGO_TARGET_DIR/$triple/release"

netns=()
if command -v unshare >/dev/null 2>&1 && unshare -n true 2>/dev/null; then
    netns=(unshare -n)
else
    echo "fuzz.sh: note: no network namespace (unshare -n); config_load may resolve host names" >&2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=0
summary=()
for t in "${targets[@]}"; do
    corpus="fuzz/corpus/$t"
    artifacts="fuzz/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    extra=()
    [ -d "fuzz/seeds/$t" ] && extra+=("fuzz/seeds/$t")
    [ -f "fuzz/dict/$t.dict" ] && extra+=("-dict=fuzz/dict/$t.dict")
    find "$artifacts" -type f | sort >"$work/$t.before"
    log="$work/$t.log"
    echo "== $t: ${seconds}s"
    # TMPDIR: config_load writes its files there; removed with $work.
    mkdir -p "$work/tmp-$t"
    TMPDIR="$work/tmp-$t" timeout --kill-after=10 "$((seconds + 120))" \
        "${netns[@]}" "$bin_dir/$t" "$corpus" "${extra[@]}" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb="$rss_mb" \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    find "$artifacts" -type f | sort >"$work/$t.after"
    new_artifacts="$(comm -13 "$work/$t.before" "$work/$t.after")"
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
    cov="$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)"
    size="$(find "$corpus" -type f | wc -l)"
    if [ "$rc" -eq 0 ] && [ -z "$new_artifacts" ]; then
        result="ok"
    else
        result="CRASH (exit $rc)"
        failed=1
        echo "---- $t: last lines of the log"
        grep -E '^(==[0-9]+==|thread .* panicked|SUMMARY|artifact_prefix|Test unit written|Base64)' "$log" | head -n 20
        tail -n 25 "$log"
        echo "---- minimise with: RUSTC_BOOTSTRAP=1 cargo fuzz tmin $t <artifact>"
        printf '%s\n' "$new_artifacts"
    fi
    summary+=("$(printf '%-15s %10s execs %8s exec/s  corpus %5s  %-22s %s' \
        "$t" "${execs:-?}" "${speed:-?}" "$size" "${cov:-cov: ?}" "$result")")
done

echo
echo "== fuzz summary (${seconds}s per target, sanitizer $sanitizer)"
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
    echo "fuzz.sh: at least one target crashed; artifacts under fuzz/artifacts/" >&2
    exit 1
fi
echo "fuzz.sh: no crashes"
