//! Which specs may write the same path: glob-aware, pairwise overlap of the
//! declared footprints (DESIGN.md, Overlap).
//!
//! Two footprints overlap when some path may be written by both:
//!
//! - [`OverlapKind::SamePath`]: both declare the same literal path;
//! - [`OverlapKind::GlobMatchesPath`]: a glob of one matches a literal path of
//!   the other;
//! - [`OverlapKind::GlobsShareTrackedFile`]: a glob of each matches the same
//!   file tracked at the base commit;
//! - [`OverlapKind::NestedPrefixes`]: two globs whose literal prefixes nest
//!   (`src/new/**` vs `src/new/*.rs`, `src/**` vs `src/a/*.rs`) although no
//!   tracked file matches both yet. Conservative: such globs *may* create the
//!   same file. Two globs whose literal tails cannot both end a path
//!   (`src/**/*.rs` vs `src/**/*.md`) are known disjoint and do not count.
//!
//! Literal entries are files: `src/a` does not overlap `src/a/b.rs`. An entry
//! ending in `/` means the whole directory and is read as `dir/**`.
//!
//! Exclusions are symmetric: for a pair of specs, a path does not count when
//! it matches a global `ignore` glob or the `shared` list of *either* spec. A
//! glob counts as excluded when an exclusion covers every path it can match
//! (equal pattern, or an exclusion `dir/**` above its literal prefix).
//!
//! Cost grows with the number of declared entries, tracked files under the
//! declared globs and real conflicts, never with the square of the number of
//! specs: literal paths are indexed in a hash map, globs by their literal
//! prefix, and only entries whose prefixes can meet are compared. Each glob is
//! compiled once and matched against tracked files under its prefix only.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use globset::{Glob, GlobMatcher};
use serde::{Deserialize, Serialize};

/// At most this many paths are listed per overlap; the reason gives the total.
pub const MAX_LISTED_PATHS: usize = 20;

/// At most this many explanations are spelled out in an overlap's reason.
const MAX_REASON_FRAGMENTS: usize = 5;

/// What one spec declares it will write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Footprint {
    /// The spec id, used in reasons and in [`Overlap::a`] / [`Overlap::b`].
    pub id: String,
    /// Repository-relative paths or globs (globset syntax).
    pub files: Vec<String>,
    /// Paths or globs this spec touches that may overlap (e.g. `Cargo.lock`).
    pub shared: Vec<String>,
}

/// Why a pair overlaps, strongest first: when a pair overlaps for several
/// reasons, its [`Overlap::kind`] is the strongest one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlapKind {
    /// Both declare the same path.
    SamePath,
    /// A glob of one matches a path declared by the other.
    GlobMatchesPath,
    /// A glob of each matches the same file tracked at the base commit.
    GlobsShareTrackedFile,
    /// Two globs with nested literal prefixes that no tracked file joins yet.
    NestedPrefixes,
}

/// One overlapping pair of specs, with every path and reason merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlap {
    /// The id of the earlier footprint in input order.
    pub a: String,
    /// The id of the later footprint in input order.
    pub b: String,
    /// Paths both may write, sorted, at most [`MAX_LISTED_PATHS`]; for an
    /// overlap that is only [`OverlapKind::NestedPrefixes`], the globs.
    pub paths: Vec<String>,
    /// The strongest reason the pair overlaps.
    pub kind: OverlapKind,
    /// Human explanation of every reason, `; `-separated.
    pub reason: String,
}

/// A glob that does not parse. Spec validation normally reports it first.
#[derive(Debug, thiserror::Error)]
pub enum OverlapError {
    #[error("spec `{spec}`: invalid glob `{glob}` in `{field}`")]
    InvalidGlob {
        spec: String,
        field: &'static str,
        glob: String,
        #[source]
        source: globset::Error,
    },
    #[error("invalid glob `{glob}` in `overlap.ignore`")]
    InvalidIgnore {
        glob: String,
        #[source]
        source: globset::Error,
    },
}

/// Every overlapping pair among `footprints`, sorted by the input position of
/// `a`, then of `b` (`a` always comes first in the input).
///
/// `tracked` lists the files tracked at the base commit (any order); `ignore`
/// holds the global `overlap.ignore` globs.
pub fn find_overlaps(
    footprints: &[Footprint],
    tracked: &[String],
    ignore: &[String],
) -> Result<Vec<Overlap>, OverlapError> {
    let ignore = Exclusions::new(ignore)
        .map_err(|(glob, source)| OverlapError::InvalidIgnore { glob, source })?;
    let mut shared = Vec::with_capacity(footprints.len());
    for fp in footprints {
        shared.push(Exclusions::new(&fp.shared).map_err(|(glob, source)| {
            OverlapError::InvalidGlob {
                spec: fp.id.clone(),
                field: "shared",
                glob,
                source,
            }
        })?);
    }

    // Declared entries, minus whatever the spec itself or the global ignore
    // list excludes: those can never count against anyone.
    // Literal paths in first-seen order (deterministic reasons), each with
    // the specs declaring it.
    let declared_count: usize = footprints.iter().map(|fp| fp.files.len()).sum();
    let mut literal_slot: FastMap<&str, usize> =
        FastMap::with_capacity_and_hasher(declared_count, Default::default());
    let mut literals: Vec<Declared<'_>> = Vec::with_capacity(declared_count);
    let mut globs: Vec<GlobEntry<'_>> = Vec::new();
    let normalized: Vec<Vec<Cow<'_, str>>> = footprints
        .iter()
        .map(|fp| {
            let mut entries: Vec<Cow<'_, str>> =
                fp.files.iter().filter_map(|f| normalize(f)).collect();
            entries.sort_unstable();
            entries.dedup();
            entries
        })
        .collect();
    for (spec, entries) in normalized.iter().enumerate() {
        let own = &shared[spec];
        let spec = u32::try_from(spec).expect("fewer than 2^32 specs");
        for entry in entries {
            let entry: &str = entry;
            if is_glob(entry) {
                let prefix = literal_prefix(entry);
                if ignore.covers_glob(entry, prefix) || own.covers_glob(entry, prefix) {
                    continue;
                }
                let matcher = Pattern::new(Cow::Borrowed(entry)).map_err(|source| {
                    OverlapError::InvalidGlob {
                        spec: footprints[spec as usize].id.clone(),
                        field: "files",
                        glob: entry.to_owned(),
                        source,
                    }
                })?;
                globs.push(GlobEntry {
                    spec,
                    pattern: entry,
                    prefix,
                    suffix: literal_suffix(entry),
                    matcher,
                });
            } else if !ignore.excludes(entry) && !own.excludes(entry) {
                match literal_slot.entry(entry) {
                    Entry::Occupied(slot) => literals[*slot.get()].rest.push(spec),
                    Entry::Vacant(slot) => {
                        slot.insert(literals.len());
                        literals.push(Declared {
                            path: entry,
                            first: spec,
                            rest: Vec::new(),
                        });
                    }
                }
            }
        }
    }

    let mut tracked: Vec<&str> = tracked
        .iter()
        .map(String::as_str)
        .filter(|t| !ignore.excludes(t))
        .collect();
    tracked.sort_unstable();
    tracked.dedup();

    drop(literal_slot);
    let mut pairs = Pairs::default();

    // Equal literal paths. Each spec lists a path at most once, and a path
    // listed in its own `shared` is already gone, so every pair counts.
    for declared in literals.iter().filter(|d| !d.rest.is_empty()) {
        let path = declared.path;
        let specs: Vec<u32> = declared.specs().collect();
        for (i, &x) in specs.iter().enumerate() {
            for &y in &specs[i + 1..] {
                let fragment = format!("both declare `{path}`");
                pairs.add(x, y, OverlapKind::SamePath, fragment, [path]);
            }
        }
    }

    let index = GlobIndex::new(&globs);

    // A glob of one spec against the literal paths of the others.
    if !globs.is_empty() {
        for declared in &literals {
            let path = declared.path;
            for (_, bucket) in index.candidates(path) {
                for &g in bucket {
                    let glob = &globs[g as usize];
                    if !glob.matcher.is_match(path) {
                        continue;
                    }
                    let x = glob.spec;
                    if shared[x as usize].excludes(path) {
                        continue;
                    }
                    for y in declared.specs().filter(|&y| y != x) {
                        let fragment = format!(
                            "glob `{}` of {} matches `{path}` of {}",
                            glob.pattern, footprints[x as usize].id, footprints[y as usize].id
                        );
                        pairs.add(x, y, OverlapKind::GlobMatchesPath, fragment, [path]);
                    }
                }
            }
        }
    }

    // Glob against glob: only those whose literal prefixes nest.
    let mut matched: Vec<Option<Vec<u32>>> = vec![None; globs.len()];
    for (g, deep) in globs.iter().enumerate() {
        for (k, bucket) in index.candidates(deep.prefix) {
            for &h in bucket {
                let h = h as usize;
                // Equal prefixes meet from both sides; take each pair once.
                if (k == deep.prefix.len() && h >= g) || globs[h].spec == deep.spec {
                    continue;
                }
                let wide = &globs[h];
                let (x, y) = (deep.spec, wide.spec);
                let (sx, sy) = (&shared[x as usize], &shared[y as usize]);
                let common: Vec<&str> = {
                    fill_tracked_matches(&mut matched, g, deep, &tracked);
                    fill_tracked_matches(&mut matched, h, wide, &tracked);
                    let mg = matched[g].as_deref().unwrap_or_default();
                    let mh = matched[h].as_deref().unwrap_or_default();
                    intersect(mg, mh)
                        .map(|t| tracked[t as usize])
                        .filter(|t| !sx.excludes(t) && !sy.excludes(t))
                        .collect()
                };
                let (idx, idy) = (&footprints[x as usize].id, &footprints[y as usize].id);
                if let Some(first) = common.first() {
                    let fragment = if common.len() == 1 {
                        format!(
                            "globs `{}` of {idx} and `{}` of {idy} both match tracked `{first}`",
                            deep.pattern, wide.pattern
                        )
                    } else {
                        format!(
                            "globs `{}` of {idx} and `{}` of {idy} both match {} tracked files",
                            deep.pattern,
                            wide.pattern,
                            common.len()
                        )
                    };
                    pairs.add(x, y, OverlapKind::GlobsShareTrackedFile, fragment, common);
                } else if suffixes_compatible(deep.suffix, wide.suffix)
                    && !sx.covers_glob(deep.pattern, deep.prefix)
                    && !sy.covers_glob(deep.pattern, deep.prefix)
                    && !sx.covers_glob(wide.pattern, wide.prefix)
                    && !sy.covers_glob(wide.pattern, wide.prefix)
                {
                    let fragment = format!(
                        "may overlap: globs `{}` of {idx} and `{}` of {idy} have nested prefixes {} and {}; no tracked file matches yet",
                        deep.pattern,
                        wide.pattern,
                        show_prefix(deep.prefix),
                        show_prefix(wide.prefix)
                    );
                    pairs.add_nested(x, y, fragment, [deep.pattern, wide.pattern]);
                }
            }
        }
    }

    Ok(pairs.finish(footprints))
}

/// A literal path and the specs declaring it (rarely more than one, so the
/// first needs no allocation).
struct Declared<'a> {
    path: &'a str,
    first: u32,
    rest: Vec<u32>,
}

impl Declared<'_> {
    fn specs(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.first).chain(self.rest.iter().copied())
    }
}

/// A hash map with a fast, non-cryptographic hasher: keys are paths and
/// indices from local files, so hash flooding is no concern.
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// The multiply-rotate hash of rustc's `FxHasher`, eight bytes at a time.
#[derive(Debug, Default, Clone, Copy)]
struct FastHasher(u64);

impl FastHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A declared glob, compiled once.
struct GlobEntry<'a> {
    spec: u32,
    pattern: &'a str,
    /// The literal text before the first metacharacter.
    prefix: &'a str,
    /// The literal text after the last metacharacter, minus a leading `/`
    /// (`**/` may match nothing): every match ends with it.
    suffix: &'a str,
    matcher: Pattern<'a>,
}

/// Globs by literal prefix. A glob can only match a path (or nest with a
/// glob) its literal prefix is a string prefix of, so a lookup probes only the
/// prefix lengths that occur among the globs.
struct GlobIndex<'a> {
    by_prefix: FastMap<&'a str, Vec<u32>>,
    prefix_lens: Vec<usize>,
}

impl<'a> GlobIndex<'a> {
    fn new(globs: &[GlobEntry<'a>]) -> Self {
        let mut by_prefix: FastMap<&'a str, Vec<u32>> = FastMap::default();
        for (g, glob) in globs.iter().enumerate() {
            let g = u32::try_from(g).expect("fewer than 2^32 globs");
            by_prefix.entry(glob.prefix).or_default().push(g);
        }
        let mut prefix_lens: Vec<usize> = by_prefix.keys().map(|p| p.len()).collect();
        prefix_lens.sort_unstable();
        prefix_lens.dedup();
        GlobIndex {
            by_prefix,
            prefix_lens,
        }
    }

    /// `(prefix length, globs)` for every glob prefix that starts `key`.
    fn candidates<'k>(&'k self, key: &'k str) -> impl Iterator<Item = (usize, &'k [u32])> + 'k {
        self.prefix_lens
            .iter()
            .take_while(move |&&k| k <= key.len())
            .filter(move |&&k| key.is_char_boundary(k))
            .filter_map(move |&k| self.by_prefix.get(&key[..k]).map(|v| (k, v.as_slice())))
    }
}

/// Records, once per glob, the indices into the sorted tracked list of the
/// files `glob` matches, looking only at the files under its literal prefix.
fn fill_tracked_matches(
    memo: &mut [Option<Vec<u32>>],
    index: usize,
    glob: &GlobEntry<'_>,
    tracked: &[&str],
) {
    memo[index].get_or_insert_with(|| {
        let start = tracked.partition_point(|t| *t < glob.prefix);
        tracked[start..]
            .iter()
            .take_while(|t| t.starts_with(glob.prefix))
            .enumerate()
            .filter(|(_, t)| glob.matcher.is_match(t))
            .map(|(i, _)| u32::try_from(start + i).expect("fewer than 2^32 tracked files"))
            .collect()
    });
}

/// The common elements of two sorted lists, probing the shorter into the longer.
fn intersect<'l>(a: &'l [u32], b: &'l [u32]) -> impl Iterator<Item = u32> + 'l {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short
        .iter()
        .copied()
        .filter(move |t| long.binary_search(t).is_ok())
}

/// Trims an entry, drops a leading `./`, and reads `dir/` as `dir/**`.
fn normalize(entry: &str) -> Option<Cow<'_, str>> {
    let mut e = entry.trim();
    while let Some(rest) = e.strip_prefix("./") {
        e = rest;
    }
    if e.is_empty() {
        None
    } else if e.ends_with('/') {
        Some(Cow::Owned(format!("{e}**")))
    } else {
        Some(Cow::Borrowed(e))
    }
}

const GLOB_META: [char; 5] = ['*', '?', '[', '{', '\\'];

fn is_glob(entry: &str) -> bool {
    entry.contains(GLOB_META)
}

fn literal_prefix(glob: &str) -> &str {
    glob.find(GLOB_META).map_or(glob, |i| &glob[..i])
}

fn literal_suffix(glob: &str) -> &str {
    let tail = glob
        .rfind(['*', '?', '[', ']', '{', '}', '\\'])
        .map_or(glob, |i| &glob[i + 1..]);
    tail.strip_prefix('/').unwrap_or(tail)
}

/// Whether some path can end with both literal tails.
fn suffixes_compatible(a: &str, b: &str) -> bool {
    a.ends_with(b) || b.ends_with(a)
}

fn show_prefix(prefix: &str) -> String {
    if prefix.is_empty() {
        "(repository root)".to_owned()
    } else {
        format!("`{prefix}`")
    }
}

/// A compiled glob. Common shapes (`dir/**`, `dir/*.rs`, `dir/**/*.rs`)
/// match by plain string tests; anything else goes to globset, whose regex is
/// built on first use only: compiling thousands of regexes up front would
/// cost more than all the matching.
struct Pattern<'a> {
    text: Cow<'a, str>,
    shape: Shape,
    glob: Option<Glob>,
    matcher: OnceCell<GlobMatcher>,
}

/// The shape of a pattern `P…S`, as byte offsets: `P = text[..p]`,
/// `S = text[s..]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// No metacharacter: the path itself.
    Literal,
    /// `P**` with `P` empty or ending in `/`: everything under `P`.
    Under { p: usize },
    /// `P*S`: `P`, then one path component's worth of anything, then `S`.
    OneLevel { p: usize, s: usize },
    /// `P**/*S`: under `P` at any depth, file name ending in `S`.
    AnyDepth { p: usize, s: usize },
    /// Anything else: globset decides.
    General,
}

/// Every character globset may read as syntax, for the shape tests.
const SYNTAX: [char; 7] = ['*', '?', '[', ']', '{', '}', '\\'];

impl<'a> Pattern<'a> {
    /// Parses `text` with globset (`*` and `?` never match `/`).
    fn new(text: Cow<'a, str>) -> Result<Self, globset::Error> {
        let shape = Shape::of(&text);
        let glob = match shape {
            Shape::Literal => None,
            _ => Some(crate::spec::compile_glob(&text)?),
        };
        Ok(Pattern {
            text,
            shape,
            glob,
            matcher: OnceCell::new(),
        })
    }

    fn is_match(&self, path: &str) -> bool {
        let text: &str = &self.text;
        match self.shape {
            Shape::Literal => text == path,
            Shape::Under { p } => path.starts_with(&text[..p]),
            Shape::OneLevel { p, s } => path.strip_prefix(&text[..p]).is_some_and(|rest| {
                rest.len() >= text.len() - s && rest.ends_with(&text[s..]) && !rest.contains('/')
            }),
            Shape::AnyDepth { p, s } => path.strip_prefix(&text[..p]).is_some_and(|rest| {
                let name = rest.rsplit('/').next().unwrap_or(rest);
                name.ends_with(&text[s..])
            }),
            Shape::General => self.glob.as_ref().is_some_and(|glob| {
                self.matcher
                    .get_or_init(|| glob.compile_matcher())
                    .is_match(path)
            }),
        }
    }
}

impl Shape {
    fn of(text: &str) -> Shape {
        let plain = |s: &str| !s.contains(SYNTAX);
        let dir = |s: &str| s.is_empty() || s.ends_with('/');
        if plain(text) {
            return Shape::Literal;
        }
        if let Some(p) = text.strip_suffix("**") {
            if plain(p) && dir(p) {
                return Shape::Under { p: p.len() };
            }
        }
        if let Some((p, s)) = text.split_once("**/*") {
            if plain(p) && dir(p) && plain(s) && !s.contains('/') {
                return Shape::AnyDepth {
                    p: p.len(),
                    s: text.len() - s.len(),
                };
            }
        }
        if let Some((p, s)) = text.split_once('*') {
            if plain(p) && plain(s) && !s.contains('/') {
                return Shape::OneLevel {
                    p: p.len(),
                    s: text.len() - s.len(),
                };
            }
        }
        Shape::General
    }
}

/// Paths that do not count: one spec's `shared` list or the global ignore list.
struct Exclusions<'a> {
    patterns: Vec<Pattern<'a>>,
}

impl<'a> Exclusions<'a> {
    /// Compiles `raw`; on failure, returns the pattern at fault.
    fn new(raw: &'a [String]) -> Result<Self, (String, globset::Error)> {
        let patterns = raw
            .iter()
            .filter_map(|p| normalize(p))
            .map(|text| Pattern::new(text.clone()).map_err(|e| (text.into_owned(), e)))
            .collect::<Result<_, _>>()?;
        Ok(Exclusions { patterns })
    }

    fn excludes(&self, path: &str) -> bool {
        self.patterns.iter().any(|p| p.is_match(path))
    }

    /// Whether every path `glob` (with literal `prefix`) can match is excluded.
    fn covers_glob(&self, glob: &str, prefix: &str) -> bool {
        self.patterns.iter().any(|p| {
            p.text == glob
                || match p.shape {
                    Shape::Under { p: end } => prefix.starts_with(&p.text[..end]),
                    _ => false,
                }
        })
    }
}

/// Everything found about each pair, merged into one [`Overlap`] at the end.
#[derive(Default)]
struct Pairs<'a> {
    by_pair: FastMap<(u32, u32), PairFindings<'a>>,
}

struct PairFindings<'a> {
    kind: OverlapKind,
    paths: BTreeSet<&'a str>,
    globs: BTreeSet<&'a str>,
    fragments: Vec<String>,
    more_fragments: usize,
}

impl<'a> Pairs<'a> {
    fn entry(&mut self, x: u32, y: u32, kind: OverlapKind) -> &mut PairFindings<'a> {
        let key = (x.min(y), x.max(y));
        let findings = self.by_pair.entry(key).or_insert_with(|| PairFindings {
            kind,
            paths: BTreeSet::new(),
            globs: BTreeSet::new(),
            fragments: Vec::new(),
            more_fragments: 0,
        });
        findings.kind = findings.kind.min(kind);
        findings
    }

    fn add(
        &mut self,
        x: u32,
        y: u32,
        kind: OverlapKind,
        fragment: String,
        paths: impl IntoIterator<Item = &'a str>,
    ) {
        let findings = self.entry(x, y, kind);
        findings.paths.extend(paths);
        findings.push_fragment(fragment);
    }

    fn add_nested(&mut self, x: u32, y: u32, fragment: String, globs: [&'a str; 2]) {
        let findings = self.entry(x, y, OverlapKind::NestedPrefixes);
        findings.globs.extend(globs);
        findings.push_fragment(fragment);
    }

    fn finish(self, footprints: &[Footprint]) -> Vec<Overlap> {
        let mut pairs: Vec<((u32, u32), PairFindings<'a>)> = self.by_pair.into_iter().collect();
        pairs.sort_unstable_by_key(|(key, _)| *key);
        pairs
            .into_iter()
            .map(|((a, b), f)| {
                let listed = if f.paths.is_empty() { f.globs } else { f.paths };
                let mut reason = f.fragments.join("; ");
                if f.more_fragments > 0 {
                    reason.push_str(&format!("; and {} more", f.more_fragments));
                }
                if listed.len() > MAX_LISTED_PATHS {
                    reason.push_str(&format!(
                        " ({} paths, first {MAX_LISTED_PATHS} listed)",
                        listed.len()
                    ));
                }
                Overlap {
                    a: footprints[a as usize].id.clone(),
                    b: footprints[b as usize].id.clone(),
                    paths: listed
                        .into_iter()
                        .take(MAX_LISTED_PATHS)
                        .map(str::to_owned)
                        .collect(),
                    kind: f.kind,
                    reason,
                }
            })
            .collect()
    }
}

impl PairFindings<'_> {
    fn push_fragment(&mut self, fragment: String) {
        if self.fragments.len() < MAX_REASON_FRAGMENTS {
            self.fragments.push(fragment);
        } else {
            self.more_fragments += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The string-test shapes agree with globset on every pattern and path.
    #[test]
    fn shapes_agree_with_globset() {
        let patterns = [
            "**",
            "src/**",
            "src/a/**",
            "*.rs",
            "src/*.rs",
            "src/a*.rs",
            "src/*",
            "src/a*",
            "**/*.rs",
            "src/**/*.rs",
            "src/**/*",
            "**/*",
            "src/**/mod.rs",
            "*",
            "a.b-c/*.d-e",
            "src/*/mod.rs",
            "src/{a,b}.rs",
            "src/?.rs",
            "src/[ab].rs",
        ];
        let paths = [
            "src",
            "src/",
            "src/a.rs",
            "src/b.rs",
            "src/a/b.rs",
            "src/a/b/c.rs",
            "src/abc.rs",
            "src/ab/c.rs",
            "a.rs",
            "x/y/z.rs",
            "src/mod.rs",
            "src/x/mod.rs",
            "src/a",
            "README",
            "a.b-c/x.d-e",
            "a.b-c/y/x.d-e",
            "src/.rs",
            "src/a.rsx",
            "x.rs/y",
        ];
        for pattern in patterns {
            let ours = Pattern::new(Cow::Borrowed(pattern)).expect("valid");
            let theirs = compile_reference(pattern);
            for path in paths {
                assert_eq!(
                    ours.is_match(path),
                    theirs.is_match(path),
                    "pattern `{pattern}` ({:?}) on `{path}`",
                    ours.shape
                );
            }
        }
        assert_eq!(Shape::of("src/**"), Shape::Under { p: 4 });
        assert_eq!(Shape::of("src/**/*.rs"), Shape::AnyDepth { p: 4, s: 8 });
        assert_eq!(Shape::of("src/*.rs"), Shape::OneLevel { p: 4, s: 5 });
        assert_eq!(Shape::of("src/{a,b}.rs"), Shape::General);
    }

    /// globset itself, independent of [`crate::spec::compile_glob`]: the
    /// oracle the shapes are checked against.
    fn compile_reference(pattern: &str) -> GlobMatcher {
        globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .expect("valid")
            .compile_matcher()
    }

    #[test]
    fn prefixes_and_suffixes() {
        assert_eq!(literal_prefix("src/new/**"), "src/new/");
        assert_eq!(literal_prefix("src/a*.rs"), "src/a");
        assert_eq!(literal_prefix("**/*.rs"), "");
        assert_eq!(literal_suffix("src/**/*.rs"), ".rs");
        assert_eq!(literal_suffix("**/mod.rs"), "mod.rs");
        assert_eq!(literal_suffix("src/*.{rs,md}"), "");
        assert!(!suffixes_compatible(".rs", ".md"));
        assert!(suffixes_compatible("mod.rs", ".rs"));
    }
}
