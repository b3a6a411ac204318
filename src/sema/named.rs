//! Lists looked up by name (a struct payload's fields, an accumulator's lost fields), and lists
//! of names shown in messages ([`listed`]).
//!
//! A source decides how wide they are (a capture of 25,000 fields fits in the source limit), and
//! the checker looks a name up once per use: a linear search per lookup made checking quadratic
//! in that width (a 780 KB capture took 13 s to check). Past [`INDEXED`] entries a list keeps a
//! hash index (std's SipHash: the names are the source's, chosen by whoever wrote it).

use std::collections::HashMap;
use std::sync::Arc;

/// Below this many entries a linear search is as fast as hashing and needs no index.
pub(super) const INDEXED: usize = 16;

/// At most this many names of a list are shown in a message.
pub(super) const LISTED: usize = 12;

/// The first [`LISTED`] of `names`, each quoted, then how many more: a message costs the same
/// whatever the length of the list a source made (an event of 20,000 branches, an error per
/// call of it). The names are only counted past the first [`LISTED`].
pub(super) fn listed<D: std::fmt::Display>(names: impl IntoIterator<Item = D>) -> String {
    use std::fmt::Write;
    let mut names = names.into_iter();
    let mut out = String::new();
    for (i, name) in names.by_ref().take(LISTED).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "`{name}`");
    }
    let more = names.count();
    if more > 0 {
        let _ = write!(out, " and {more} more");
    }
    out
}

/// `base.field`, for [`listed`].
pub(super) struct Dotted<'a>(pub &'a str, pub &'a str);

impl std::fmt::Display for Dotted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// What a [`Named`] list is keyed by.
pub(super) trait Keyed {
    fn key(&self) -> &Arc<str>;
}

impl Keyed for Arc<str> {
    fn key(&self) -> &Arc<str> {
        self
    }
}

impl<A, B> Keyed for (Arc<str>, A, B) {
    fn key(&self) -> &Arc<str> {
        &self.0
    }
}

/// Entries in their order, the first of each name found in constant time.
#[derive(Clone, Debug)]
pub(super) struct Named<T> {
    items: Vec<T>,
    /// The position of each name's first entry, once there are more than [`INDEXED`].
    index: HashMap<Arc<str>, usize>,
}

impl<T> Default for Named<T> {
    fn default() -> Self {
        Named {
            items: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<T: Keyed> Named<T> {
    pub fn push(&mut self, item: T) {
        if self.items.len() == INDEXED {
            for (i, item) in self.items.iter().enumerate().rev() {
                self.index.insert(item.key().clone(), i);
            }
        }
        if self.items.len() >= INDEXED {
            self.index
                .entry(item.key().clone())
                .or_insert(self.items.len());
        }
        self.items.push(item);
    }

    /// The first entry named `name`.
    pub fn find(&self, name: &str) -> Option<&T> {
        if self.items.len() > INDEXED {
            self.index.get(name).map(|&i| &self.items[i])
        } else {
            self.items.iter().find(|item| &**item.key() == name)
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.items.len()
    }
}

/// The position of each name in a list (the first, for a name listed twice).
pub(super) type Positions = Named<(Arc<str>, usize, ())>;

impl Positions {
    /// `names` by position.
    pub fn of<'n>(names: impl IntoIterator<Item = &'n Arc<str>>) -> Positions {
        names
            .into_iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), i, ()))
            .collect()
    }

    /// Where `name` first stands.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.find(name).map(|&(_, i, ())| i)
    }
}

impl<T: Keyed> FromIterator<T> for Named<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut named = Named::default();
        for item in iter {
            named.push(item);
        }
        named
    }
}

impl<'a, T> IntoIterator for &'a Named<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_list_shows_its_first_names_and_counts_the_rest() {
        assert_eq!(listed(["a", "b"]), "`a`, `b`");
        assert_eq!(listed(Vec::<&str>::new()), "");
        let many: Vec<String> = (0..100).map(|i| format!("f{i}")).collect();
        let shown = listed(&many);
        assert!(shown.starts_with("`f0`, `f1`, "), "{shown}");
        assert!(shown.ends_with("`f11` and 88 more"), "{shown}");
    }

    #[test]
    fn the_first_of_a_name_is_found_below_and_above_the_index_threshold() {
        for n in [3, INDEXED, INDEXED + 1, 100] {
            let mut named: Named<(Arc<str>, usize, ())> = Named::default();
            for i in 0..n {
                named.push((Arc::from(format!("f{i}")), i, ()));
                // A second entry of the same name is kept but not found.
                named.push((Arc::from(format!("f{i}")), usize::MAX, ()));
            }
            assert_eq!(named.len(), 2 * n);
            for i in 0..n {
                assert_eq!(
                    named.find(&format!("f{i}")).map(|f| f.1),
                    Some(i),
                    "n = {n}"
                );
            }
            assert!(!named.contains("g"));
            assert_eq!(named.iter().filter(|f| f.1 == usize::MAX).count(), n);
        }
    }
}
