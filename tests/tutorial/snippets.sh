#!/usr/bin/env bash
# snippets.sh ROOT
#
# Keeps the code shown in the documentation identical to the code that
# is built and tested. A fenced block whose info string names a file,
#
#   ```c file=examples/tutorial/account.c
#
# must appear in that file (relative to ROOT) verbatim, as consecutive
# lines. Checked in ROOT/README.md and ROOT/docs/*.md. In docs/tutorial.md
# every c, proto and cmake block must name its file, so no untested code
# slips in. Prints each snippet checked; fails on the first problem of
# each and at the end if any failed. (docs/development.md explains it.)
set -euo pipefail
root=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail=0
checked=0
for md in "$root"/README.md "$root"/docs/*.md; do
    rel=${md#"$root"/}
    strict=0
    [[ $rel == docs/tutorial.md ]] && strict=1
    # Each block to $work/N.txt; one manifest line "N<TAB>file<TAB>line".
    rm -f "$work"/*.txt "$work/manifest"
    awk -v dir="$work" -v strict="$strict" -v md="$rel" '
        BEGIN { n = 0; inblock = 0 }
        !inblock && /^```[a-z]/ {
            inblock = 1; file = ""; start = NR
            if (match($0, /file=[^ ]+/))
                file = substr($0, RSTART + 5, RLENGTH - 5)
            lang = $0; sub(/^```/, "", lang); sub(/ .*/, "", lang)
            if (file == "" && strict && (lang == "c" || lang == "proto" || lang == "cmake")) {
                printf "%s:%d: a ```%s block without file=\n", md, NR, lang > "/dev/stderr"
                bad = 1
            }
            if (file != "") { n++; out = dir "/" n ".txt"; printf "" > out
                printf "%d\t%s\t%d\n", n, file, NR > (dir "/manifest") }
            next
        }
        inblock && /^```[ \t]*$/ { inblock = 0; if (file != "") close(out); next }
        inblock && file != "" { print > out }
        END { exit bad }
    ' "$md" || fail=1
    [[ -f $work/manifest ]] || continue
    while IFS=$'\t' read -r n file line; do
        checked=$((checked + 1))
        if [[ ! -f $root/$file ]]; then
            echo "FAIL: $rel:$line: no file $file" >&2
            fail=1
            continue
        fi
        if [[ ! -s $work/$n.txt ]]; then
            echo "FAIL: $rel:$line: an empty snippet of $file" >&2
            fail=1
            continue
        fi
        # Is the snippet a run of consecutive lines of the file?
        if awk -v snip="$work/$n.txt" '
            BEGIN { while ((getline l < snip) > 0) s[++k] = l }
            { f[NR] = $0 }
            END {
                for (i = 1; i + k - 1 <= NR; i++) {
                    for (j = 1; j <= k && f[i + j - 1] == s[j]; j++) ;
                    if (j > k) exit 0
                }
                exit 1
            }' "$root/$file"; then
            echo "ok: $rel:$line matches $file"
        else
            echo "FAIL: $rel:$line: the snippet is not in $file as written:" >&2
            diff <(cat "$work/$n.txt") "$root/$file" | head -20 >&2 || true
            fail=1
        fi
    done <"$work/manifest"
done
if ((checked == 0)); then
    echo "FAIL: no snippet names a file (expected some in docs/tutorial.md)" >&2
    fail=1
fi
echo "$checked snippets checked"
exit "$fail"
