#!/usr/bin/env bash
# scripts/format.sh check|fix — clang-format the project's C sources.
#
# Files: tracked *.c/*.h (git ls-files) once the repository has commits,
# else everything outside build*/ and .git. Generated protobuf-c code
# (*.pb-c.[ch]) is skipped. Override the binary with CLANG_FORMAT=...
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
case $mode in
check) flags=(--dry-run -Werror) ;;
fix) flags=(-i) ;;
*)
    echo "usage: $0 check|fix" >&2
    exit 2
    ;;
esac

clang_format=${CLANG_FORMAT:-clang-format}
command -v "$clang_format" >/dev/null ||
    { echo "format.sh: error: $clang_format not found; run scripts/deps.sh" >&2; exit 1; }

list_sources() {
    if git rev-parse --verify -q HEAD >/dev/null 2>&1; then
        git ls-files -z -- '*.c' '*.h'
    else
        find . \( -path './build*' -o -path ./.git \) -prune -o \
            -type f \( -name '*.c' -o -name '*.h' \) -print0
    fi | grep -zv '\.pb-c\.[ch]$' || true
}

files=()
while IFS= read -r -d '' f; do
    # git ls-files still lists tracked files deleted from the work tree.
    if [[ -f $f ]]; then
        files+=("$f")
    fi
done < <(list_sources)

if ((${#files[@]} == 0)); then
    echo "==> format: no C sources yet"
    exit 0
fi

if [[ $mode == fix ]]; then
    echo "==> formatting ${#files[@]} files"
    "$clang_format" "${flags[@]}" -- "${files[@]}"
elif ! "$clang_format" "${flags[@]}" -- "${files[@]}"; then
    echo "==> format check failed; run 'make format' to fix" >&2
    exit 1
else
    echo "==> format check: ${#files[@]} files ok"
fi
