#!/usr/bin/env bash
# Ensure the Debian 12 packages Eventloom needs are installed.
#
#   scripts/deps.sh          what building and testing need
#   scripts/deps.sh --bench  that, plus what the benchmarks compare against
#
# Installs only what is missing; prints a single line when nothing is.
# Needs root, or password-less sudo, to install anything.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(
    build-essential          # gcc, make
    cmake
    pkg-config
    libpq-dev
    libprotobuf-c-dev
    protobuf-c-compiler
    protobuf-compiler
    libprotoc-dev
    libprotobuf-dev
    libuv1-dev
    libcmocka-dev
    postgresql-15            # server for tests (scripts/pg.sh)
    postgresql-client-15
    openssl                  # the test CA and certificates of scripts/pg.sh
    libnats-dev              # the NATS JetStream transport (LOOM_WITH_NATS)
    nats-server              # server for its tests (scripts/nats.sh)
    clang-format             # version 14 on Debian 12
    valgrind                 # memcheck_* tests (LOOM_VALGRIND, build/)
    clang                    # sanitizer / fuzz builds
    libclang-rt-14-dev
)

# `loom-bench topics` measures the topics transport against PgQ, in the
# PostgreSQL 15 server of scripts/pg.sh (CREATE EXTENSION pgq).
BENCH_PACKAGES=(
    postgresql-15-pgq3
)

case ${1:-} in
"") ;;
--bench) PACKAGES+=("${BENCH_PACKAGES[@]}") ;;
*)
    printf 'usage: %s [--bench]\n' "$0" >&2
    exit 2
    ;;
esac

die() {
    printf 'deps.sh: error: %s\n' "$*" >&2
    exit 1
}

command -v dpkg-query >/dev/null ||
    die "dpkg-query not found: this script supports Debian 12 only." \
        "Install the equivalents of: ${PACKAGES[*]}"

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
    echo "==> dependencies: all ${#PACKAGES[@]} Debian packages present"
    exit 0
fi

# Privilege: root as is, else sudo if it works without a password prompt.
sudo=()
if ((EUID != 0)); then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        # sudo resets the environment; pass DEBIAN_FRONTEND explicitly.
        sudo=(sudo -n env DEBIAN_FRONTEND=noninteractive)
    else
        die "missing packages: ${missing[*]}
Install them as root, then re-run:
    sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}"
    fi
fi

echo "==> installing: ${missing[*]}"
install=("${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}")
# Fresh containers often have no package lists; refresh only when needed.
if ! "${install[@]}"; then
    echo "==> install failed; running apt-get update and retrying"
    "${sudo[@]}" apt-get update
    "${install[@]}" || die "apt-get install failed for: ${missing[*]}"
fi
echo "==> dependencies installed"
