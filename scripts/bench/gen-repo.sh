#!/usr/bin/env bash
# Writes a synthetic repository for scripts/bench-check.sh: N specs, two
# tracked files each, ~10 declared paths per spec (tracked and new), every
# tenth spec also declaring directory globs, so each spec overlaps a handful
# of others. Same layout as tests/integration/overlap_scale.rs.
#
#   scripts/bench/gen-repo.sh DIR N
#
# Spec n (1-based) lives in group k = n / 10:
#   tracked   src/d<k>/s<n>_a.rs, src/d<k>/s<n>_b.rs   (plus README.md)
#   declared  its two tracked files, src/d<k>/s<n>_new{1..5}.rs, tests/t<n>.rs,
#             docs/d<k>/s<n>.md, the next spec's src/.../s<n+1>_a.rs;
#             n % 10 == 0: src/d<k>/** and gen/d<k>/**;  n % 10 == 5: gen/d<k>/*.json
set -euo pipefail

dir=${1:?usage: gen-repo.sh DIR N}
n=${2:?usage: gen-repo.sh DIR N}

export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE

rm -rf "$dir"
mkdir -p "$dir"
git -C "$dir" init -q -b main

awk -v N="$n" '
function inline(path, body) {
    printf "M 100644 inline %s\ndata %d\n%s\n", path, length(body), body
}
BEGIN {
    printf "blob\nmark :1\ndata 20\n// generated source\n\n"
    printf "commit refs/heads/main\n"
    printf "author Bench <bench@example.com> 1767225600 +0000\n"
    printf "committer Bench <bench@example.com> 1767225600 +0000\n"
    printf "data 16\nsynthetic bench\n"
    inline("README.md", "# bench\n")
    for (i = 1; i <= N; i++) {
        k = int(i / 10)
        d = "src/d" k "/s" i
        printf "M 100644 :1 %s_a.rs\nM 100644 :1 %s_b.rs\n", d, d
        body = "# Bench spec " i "\n\nSynthetic work item " i ".\n\n**Files**:\n"
        body = body "- `" d "_a.rs`\n- `" d "_b.rs`\n"
        for (j = 1; j <= 5; j++) body = body "- `" d "_new" j ".rs`\n"
        body = body "- `tests/t" i ".rs`\n- `docs/d" k "/s" i ".md`\n"
        if (i < N) body = body "- `src/d" int((i + 1) / 10) "/s" (i + 1) "_a.rs`\n"
        if (i % 10 == 0) body = body "- `src/d" k "/**`\n- `gen/d" k "/**`\n"
        if (i % 10 == 5) body = body "- `gen/d" k "/*.json`\n"
        inline("specs/SPEC-" i "-bench.md", body)
    }
    printf "\n"
}' | git -C "$dir" fast-import --quiet

git -C "$dir" reset -q --hard main
