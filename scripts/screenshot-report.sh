#!/usr/bin/env bash
# Regenerates docs/report.png, the README's picture of a run report: runs
# `treefarm demo`, then renders the report it printed with headless
# Chromium. Needs chromium (scripts/install-chromium.sh installs it).
#
#   scripts/screenshot-report.sh [OUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/report.png}
chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chromium" ]; then
    echo "screenshot-report: chromium not found; run scripts/install-chromium.sh" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --quiet --locked
# The demo's temp repository lives in $work; its report is copied out there.
TMPDIR=$work NO_COLOR=1 target/debug/treefarm demo 2>"$work/demo.txt" || {
    cat "$work/demo.txt" >&2
    exit 1
}
report=$(sed -n 's/^report: //p' "$work/demo.txt" | tail -n 1)
[ -f "$report" ] || { echo "screenshot-report: no report in the demo's output" >&2; exit 1; }
mkdir -p "$work/profile"
"$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$work/profile" \
    --screenshot="$out" --window-size=1320,900 "file://$report" 2>/dev/null
echo "wrote $out from $report"
