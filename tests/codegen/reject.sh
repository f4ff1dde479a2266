#!/usr/bin/env bash
# reject.sh PROTOC PLUGIN OPTIONS_DIR BAD_DIR NAME.proto
#
# Runs protoc with protoc-gen-loom on BAD_DIR/NAME.proto, which must be
# refused: protoc fails, and each line "// expect: TEXT" of the file
# appears verbatim in protoc's stderr. A line "// options: OPTS" passes
# --loom_opt=OPTS. The output directory is scratch.
set -euo pipefail
protoc=$1 plugin=$2 options_dir=$3 bad_dir=$4 name=$5
file=$bad_dir/$name
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mapfile -t expects < <(sed -n 's|^// expect: ||p' "$file")
if ((${#expects[@]} == 0)); then
    echo "reject.sh: $name has no '// expect:' line" >&2
    exit 1
fi
opt=()
loom_opt=$(sed -n 's|^// options: ||p' "$file")
if [[ -n $loom_opt ]]; then
    opt=("--loom_opt=$loom_opt")
fi

status=0
"$protoc" -I"$bad_dir" -I"$options_dir" \
    --plugin=protoc-gen-loom="$plugin" --loom_out="$work" "${opt[@]}" \
    "$name" 2>"$work/stderr" || status=$?
if ((status == 0)); then
    echo "FAIL: protoc accepted $name" >&2
    exit 1
fi
fail=0
for e in "${expects[@]}"; do
    if ! grep -qF -- "$e" "$work/stderr"; then
        echo "FAIL: stderr lacks: $e" >&2
        fail=1
    fi
done
if ((fail)); then
    echo "--- protoc's stderr:" >&2
    cat "$work/stderr" >&2
    exit 1
fi
# Nothing is generated for a refused file.
if [[ -n $(find "$work" -name '*.loom.*') ]]; then
    echo "FAIL: files were generated for $name" >&2
    exit 1
fi
echo "ok: $name refused: ${expects[*]}"
