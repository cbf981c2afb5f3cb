#!/usr/bin/env bash
# Opens a physlens report from disk in headless Chromium, as a reader would:
# fails if the page logs anything to the console (script errors, fetches the
# page's Content-Security-Policy blocked, resources that failed to load) or
# did not render every figure, then writes screenshots of the top of the page
# and of every section to RUN/screenshots/ (1400 px wide, plus one at 800 px).
#
# Usage: tools/check_report.sh [RUN_DIR]     (default: runs/blog)
# Needs Chromium: apt-get install -y chromium (Debian's package).
set -euo pipefail

run="${1:-runs/blog}"
if [ ! -f "$run/report.html" ]; then
    echo "check_report: no report.html in $run (write it with \`physlens run\` or \`physlens report --run $run\`)" >&2
    exit 2
fi
browser="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$browser" ]; then
    echo "check_report: Chromium not found; install it with: apt-get install -y chromium" >&2
    exit 2
fi
run="$(cd "$run" && pwd)"
url="file://$run/report.html"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$profile")

# 1. Load the page; keep the rendered DOM and the browser's log.
if ! "$browser" "${flags[@]}" --enable-logging=stderr --v=0 --virtual-time-budget=5000 --dump-dom "$url" \
        > "$profile/dom.html" 2> "$profile/log.txt"; then
    cat "$profile/log.txt" >&2
    echo "check_report: Chromium failed to load $url" >&2
    exit 1
fi
console="$(grep -F ':CONSOLE' "$profile/log.txt" || true)"
if [ -n "$console" ]; then
    echo "check_report: console messages while loading $url:" >&2
    echo "$console" >&2
    exit 1
fi
want="$(grep -o '<figure ' "$run/report.html" | wc -l)"
got="$(grep -o '<figure ' "$profile/dom.html" | wc -l)"
svgs="$(grep -o '<svg ' "$profile/dom.html" | wc -l)"
notes="$(grep -o 'class="skipped"' "$profile/dom.html" | wc -l)"
if [ "$want" -eq 0 ] || [ "$got" -ne "$want" ] || [ "$svgs" -lt "$want" ]; then
    echo "check_report: the browser rendered $got of $want figures ($svgs svg elements)" >&2
    exit 1
fi
echo "check_report: $url loaded with no console messages: $got figures, $notes notes on figures left out"

# 2. Screenshots: the top of the page, the page in a narrow window, and each
#    section alone (headless Chromium does not scroll to an anchor before a
#    screenshot, so a copy of the page shows only that section).
shots="$run/screenshots"
mkdir -p "$shots"
shoot() { # name, window size, page
    "$browser" "${flags[@]}" --window-size="$2" --screenshot="$shots/report-$1.png" "$3" > /dev/null 2>&1
    if [ ! -s "$shots/report-$1.png" ]; then
        echo "check_report: no screenshot for $1" >&2
        exit 1
    fi
}
shoot top 1400,1000 "$url"
shoot narrow 800,1200 "$url"
count=2
for id in $(grep -o '<section [^>]*id="[a-z_-]*"' "$run/report.html" | sed 's/.*id="\([a-z_-]*\)"/\1/'); do
    only="<style>body > h1, body > p.sub, body > section:not(#$id) { display: none; }</style></head>"
    sed "s|</head>|$only|" "$run/report.html" > "$profile/$id.html"
    shoot "$id" 1400,1300 "file://$profile/$id.html"
    count=$((count + 1))
done
echo "check_report: wrote $count screenshots to $shots"
