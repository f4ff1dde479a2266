#!/usr/bin/env bash
# golden.sh PROTOC PLUGIN OPTIONS_DIR TEST_DIR
#
# Generates the sample files with protoc-gen-loom and compares every
# generated file, byte for byte, with TEST_DIR/golden/<file name>.golden:
#   proto/shop/order_saga.proto   two sagas, failures, retries, events
#   proto/shop/catalog.proto      events only, --loom_opt=register_symbol
#                                 and protoc-c's c_package
# The .golden suffix keeps scripts/format.sh off the expected C files.
#
# After a deliberate change to the output, regenerate them with
#   UPDATE_GOLDEN=1 ctest --test-dir build -R codegen_golden
# and review the diff before committing.
set -euo pipefail
protoc=$1 plugin=$2 options_dir=$3 test_dir=$4
golden=$test_dir/golden
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

gen() { # OPTS FILE.proto
    "$protoc" -I"$test_dir/proto" -I"$options_dir" \
        --plugin=protoc-gen-loom="$plugin" --loom_out="$1$work/out" \
        "$2"
}
mkdir -p "$work/out"
gen "" shop/order_saga.proto
gen "register_symbol:" shop/catalog.proto

# The same input gives the same bytes: run again and compare.
mv "$work/out" "$work/first"
mkdir -p "$work/out"
gen "" shop/order_saga.proto
gen "register_symbol:" shop/catalog.proto
diff -r "$work/first" "$work/out"

generated=$(cd "$work/out/shop" && ls)
if [[ ${UPDATE_GOLDEN:-} == 1 ]]; then
    rm -f "$golden"/*.golden
    mkdir -p "$golden"
    for f in $generated; do
        cp "$work/out/shop/$f" "$golden/$f.golden"
    done
    echo "golden files rewritten in $golden: review them with git diff"
    exit 0
fi

fail=0
expected=$(cd "$golden" && ls -- *.golden | sed 's/\.golden$//')
if [[ "$generated" != "$expected" ]]; then
    echo "FAIL: generated files differ from the golden ones:" >&2
    diff <(echo "$expected") <(echo "$generated") >&2 || true
    fail=1
fi
for f in $generated; do
    if [[ -f $golden/$f.golden ]] &&
        ! diff -u "$golden/$f.golden" "$work/out/shop/$f" >&2; then
        echo "FAIL: $f differs from golden/$f.golden" >&2
        fail=1
    fi
done
if ((fail)); then
    echo "(UPDATE_GOLDEN=1 rewrites the golden files after a deliberate change)" >&2
    exit 1
fi
echo "ok: $(echo "$generated" | wc -l) files equal their golden copies"
