#!/usr/bin/env bash
# Runs the whole test suite under AddressSanitizer (nightly toolchain):
#
#   scripts/asan.sh [extra cargo test arguments]
#
# Every process the tests start (the test binaries re-spawned as children,
# the shmring CLI) is built with ASan too. Build scripts and proc macros
# are not instrumented (the explicit --target keeps RUSTFLAGS off them).
# Without a nightly toolchain it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "asan: no nightly toolchain on this machine (cargo +nightly); ASan run SKIPPED"
    exit 0
fi
target=$(rustc +nightly -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Zsanitizer=address"
export RUSTDOCFLAGS="-Zsanitizer=address"
# Leak checking stays on; a report aborts the process with exit code 23.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1}"
exec cargo +nightly test --release --target "$target" --target-dir target/asan "$@"
