#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for N seconds each (default 60).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs the nightly toolchain (`cargo +nightly`); without it, says so and
# exits 0. Installs cargo-fuzz from crates.io into target/tools the first
# time. Seed corpora are generated here (rings made by the `shmring` CLI,
# and a few hand-written inputs) into fuzz/corpus/, which is not committed.
# A finding is left in fuzz/artifacts/TARGET/ and makes the script exit 1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(header_validate attach_consume inspect_files)
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: no nightly toolchain on this machine (cargo +nightly); fuzzing SKIPPED"
    exit 0
fi
export PATH="$root/target/tools/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz into target/tools"
    cargo install --locked --quiet cargo-fuzz --root "$root/target/tools"
fi

# Seeds: a ring of every kind as the CLI makes it, and junk.
cargo build --release --quiet -p shmring-cli --bin shmring
seeds=$(mktemp -d /dev/shm/shmring-fuzz-seeds-XXXXXX)
# The targets make their rings under here; removed at exit, whatever happens.
export SHMRING_FUZZ_DIR
SHMRING_FUZZ_DIR=$(mktemp -d /dev/shm/shmring-fuzz-work-XXXXXX)
trap 'rm -rf "$seeds" "$SHMRING_FUZZ_DIR"' EXIT
bin=$root/target/release/shmring
"$bin" create --dir "$seeds" --kind spsc --capacity 16 --slot-size 8 spsc >/dev/null
"$bin" create --dir "$seeds" --kind frames --capacity 64 --slot-size 16 frames >/dev/null
"$bin" create --dir "$seeds" --kind mpmc --capacity 16 --slot-size 8 --producers 2 --consumers 2 mpmc >/dev/null
"$bin" create --dir "$seeds" --kind broadcast --capacity 16 --slot-size 24 --subscribers 2 broadcast >/dev/null
printf 'hello, not a ring\n' >"$seeds/junk"
for t in header_validate inspect_files; do
    mkdir -p "fuzz/corpus/$t"
    cp "$seeds"/* "fuzz/corpus/$t/"
done
mkdir -p fuzz/corpus/attach_consume
# kind, messages to push, then (u16 word, u64 value) patches.
printf '\x00\x05' >fuzz/corpus/attach_consume/spsc
printf '\x01\x07' >fuzz/corpus/attach_consume/frames
printf '\x02\x09' >fuzz/corpus/attach_consume/mpmc
printf '\x03\x14' >fuzz/corpus/attach_consume/broadcast
printf '\x00\x03\x10\x00\xff\xff\xff\xff\xff\xff\xff\xff' >fuzz/corpus/attach_consume/spsc-tail
printf '\x02\x03\x40\x00\x01\x00\x00\x00\x00\x00\x00\x00' >fuzz/corpus/attach_consume/mpmc-seq
# Regression: frame counters scribbled to u64::MAX overflowed on release.
{ printf '\x01\xc6\x61\x7a'; head -c 45 /dev/zero | tr '\0' '\377'; } >fuzz/corpus/attach_consume/regress-frame-counter
# Regression: an MPMC dequeue position scribbled to u64::MAX overflowed.
printf '\x38\x05\x70\x04\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xc2\x04\x30\x30\x72\x2b\x01' \
    >fuzz/corpus/attach_consume/regress-mpmc-position

status=0
for t in "${targets[@]}"; do
    echo "fuzz: $t for ${secs}s"
    if ! cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
        2>"target/fuzz-$t.log"; then
        echo "fuzz: $t FOUND A PROBLEM (see target/fuzz-$t.log and fuzz/artifacts/$t/)"
        tail -40 "target/fuzz-$t.log"
        status=1
    else
        grep -E "stat::number_of_executed_units|stat::new_units_added" "target/fuzz-$t.log" | sed "s/^/fuzz: $t: /"
    fi
done
exit $status
