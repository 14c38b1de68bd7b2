#!/usr/bin/env bash
# Builds the user guide (docs/guide/, mdBook) into docs/guide/book/ and
# checks its links.
#
# mdBook is installed from crates.io at an exact version (`cargo install
# --locked`, only the `search` feature: no server, no watcher) into
# ${XDG_CACHE_HOME:-$HOME/.cache}/treefarm-tools/mdbook-<version>/, and
# reused from there when present. The link check is the integration test
# `docs_links::` (every relative link and `#anchor` of README.md, the guide
# and DESIGN.md must resolve): mdbook-linkcheck 0.7 is built on mdBook 0.4's
# renderer API, and mdbook-linkcheck2 (for 0.5) checks no anchors and not the
# README, so neither covers what this check does.
set -euo pipefail
cd "$(dirname "$0")/.."

MDBOOK_VERSION=0.5.4
cache="${XDG_CACHE_HOME:-$HOME/.cache}/treefarm-tools/mdbook-$MDBOOK_VERSION"
mdbook="$cache/bin/mdbook"
if [ -x "$mdbook" ] && "$mdbook" --version | grep -qx "mdbook v$MDBOOK_VERSION"; then
    echo "build-guide: using $mdbook"
else
    echo "build-guide: installing mdbook $MDBOOK_VERSION into $cache (cargo install, a few minutes once)"
    cargo install mdbook --version "=$MDBOOK_VERSION" --locked \
        --no-default-features --features search --root "$cache"
fi

echo "build-guide: mdbook build docs/guide -> docs/guide/book/"
"$mdbook" build docs/guide

echo "build-guide: link check (README.md, docs/guide/src/, docs/DESIGN.md)"
cargo test --locked --test integration docs_links::
