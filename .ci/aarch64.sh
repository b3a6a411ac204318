#!/usr/bin/env bash
# The test suite built for aarch64 and run under qemu-aarch64 (user-mode emulation): the whole
# test process, Rust code and JIT-compiled native code alike, runs as aarch64. Installs what it
# needs on a fresh Debian/Ubuntu machine (apt packages, the rustup target) and fails loudly when
# an install step fails. Arguments go to `cargo test` (e.g. `--test flows`).
set -euo pipefail
cd "$(dirname "$0")/.."
triple=aarch64-unknown-linux-gnu

fail() {
    echo "aarch64.sh: $*" >&2
    exit 1
}

# Debian packages: the emulator, the cross linker (also the C compiler of build scripts), and
# the aarch64 C library to link against and to load under qemu (`-L`).
packages=()
command -v qemu-aarch64 >/dev/null || packages+=(qemu-user)
command -v aarch64-linux-gnu-gcc >/dev/null || packages+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/lib/crt1.o ] || packages+=(libc6-dev-arm64-cross)
if ((${#packages[@]})); then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    command -v apt-get >/dev/null || fail "missing ${packages[*]} and no apt-get to install them"
    echo "aarch64.sh: installing ${packages[*]}" >&2
    "${sudo[@]}" apt-get update || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y "${packages[@]}" ||
        fail "apt-get install ${packages[*]} failed"
fi
command -v qemu-aarch64 >/dev/null || fail "qemu-aarch64 is not on PATH after installing qemu-user"
command -v aarch64-linux-gnu-gcc >/dev/null || fail "aarch64-linux-gnu-gcc is not on PATH"
[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] ||
    fail "/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 is missing"

# The Rust standard library for the target.
command -v rustup >/dev/null || fail "rustup is needed to add the $triple target"
if ! rustup target list --installed | grep -qx "$triple"; then
    rustup target add "$triple" || fail "rustup target add $triple failed"
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
# Reduced under emulation (the reason is in each test): 100,000 cached flows take ~18 minutes
# under qemu; 3,000 show the same bound (the cache evicts from the 17th flow on).
export KORU_CACHE_FLOWS="${KORU_CACHE_FLOWS:-3000}"
cargo test --target "$triple" "$@"
