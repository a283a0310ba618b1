#!/usr/bin/env bash
# Checks that every relative link in the repository's Markdown files resolves: a link to a file or
# folder must name one that exists (relative to the linking file; a leading / means the repository
# root), and a link to an anchor (`#figures`, `FILE.md#section`) must name a heading of that file,
# spelled as GitHub makes anchors. Links to other sites (http:, https:, mailto:) are not fetched.
#
#   bash scripts/check-links.sh [FILE.md…]      # default: every Markdown file git tracks
#
# Exits 1 and names each broken link (file:line: target) when one does not resolve.
# DocumentationTests runs it in `swift test`, so CI fails on a broken link.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ $# -gt 0 ]; then
    files=("$@")
else
    mapfile -t files < <(git ls-files '*.md')
fi

# GitHub's anchor of a heading: lower case, punctuation other than - and _ dropped, spaces to -.
anchors() {
    grep -E '^#{1,6} ' "$1" | sed -E 's/^#+ +//; s/ +#*$//' | tr '[:upper:]' '[:lower:]' |
        sed -E 's/`//g; s/[^a-z0-9 _-]//g; s/ /-/g'
}

broken=0
checked=0
for file in "${files[@]}"; do
    [ -f "$file" ] || { echo "$file: no such file" >&2; broken=$((broken + 1)); continue; }
    folder=$(dirname "$file")
    # Links outside fenced code blocks: [text](target) and <img src="target">.
    while IFS=$'\t' read -r line target; do
        case "$target" in http://*|https://*|mailto:*|doc:*) continue ;; esac
        checked=$((checked + 1))
        path=${target%%#*}
        anchor=""
        [[ "$target" == *"#"* ]] && anchor=${target#*#}
        if [ -z "$path" ]; then
            resolved=$file
        elif [[ "$path" == /* ]]; then
            resolved=".$path"
        else
            resolved="$folder/$path"
        fi
        if [ ! -e "$resolved" ]; then
            echo "$file:$line: $target: $resolved does not exist" >&2
            broken=$((broken + 1))
        elif [ -n "$anchor" ] && ! anchors "$resolved" | grep -qxF -- "$anchor"; then
            echo "$file:$line: $target: no heading in $resolved has the anchor #$anchor" >&2
            broken=$((broken + 1))
        fi
    done < <(awk '
        /^[[:space:]]*(```|~~~)/ { fence = !fence; next }
        fence { next }
        {
            text = $0
            while (match(text, /\]\([^)[:space:]]+\)/)) {
                printf "%d\t%s\n", NR, substr(text, RSTART + 2, RLENGTH - 3)
                text = substr(text, RSTART + RLENGTH)
            }
            text = $0
            while (match(text, /src="[^"]+"/)) {
                printf "%d\t%s\n", NR, substr(text, RSTART + 5, RLENGTH - 6)
                text = substr(text, RSTART + RLENGTH)
            }
        }' "$file")
done
if [ "$broken" -gt 0 ]; then
    echo "check-links: $broken broken link(s) of $checked checked in ${#files[@]} file(s)" >&2
    exit 1
fi
echo "check-links: $checked relative link(s) in ${#files[@]} file(s) resolve"
