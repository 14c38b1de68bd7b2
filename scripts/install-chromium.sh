#!/usr/bin/env bash
# Installs headless Chromium (renders the HTML run report in tests and for
# docs/report.png) and Graphviz (`dot`, parses `plan --format dot` in tests)
# from the distribution's packages. Best effort: when they cannot be
# installed (no root, no apt, no network) the tests that need them print why
# they are skipped, and this script still exits 0.
set -uo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

missing=()
have chromium || have chromium-browser || missing+=(chromium)
have dot || missing+=(graphviz)
# Chromium needs a font to draw text.
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-chromium: chromium and dot already installed"
    exit 0
fi
if ! have apt-get; then
    echo "install-chromium: no apt-get; not installing ${missing[*]} (report/dot tests will be skipped)"
    exit 0
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
    if have sudo && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        echo "install-chromium: not root and no sudo; not installing ${missing[*]} (report/dot tests will be skipped)"
        exit 0
    fi
fi
echo "install-chromium: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; then
    "${as_root[@]}" apt-get update -q || true
    "${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}" ||
        echo "install-chromium: could not install ${missing[*]} (report/dot tests will be skipped)"
fi
exit 0
