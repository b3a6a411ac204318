//! "Did you mean": the name in scope closest to a misspelled one (an event, a binding or input, a
//! field, a branch, an input of an event), by rustc's rule.
//!
//! The distance is the optimal string alignment distance (Damerau-Levenshtein with adjacent
//! transpositions, each edit costing 1: `eahc` is one edit from `each`, `prinltn` one from
//! `println`), over characters. A candidate is suggested when it is at most a third of the
//! misspelled name's length away (at least 1: `ad` suggests `add`), and fewer edits away than
//! the longer name's length (a one-letter name never suggests another one-letter name). A
//! candidate that differs only in case wins; then the nearest, the first written on ties.
//!
//! Bounded work: names longer than [`MAX_NAME_CHARS`] get no suggestion, and a check spends at
//! most [`BUDGET`] distance cells on suggestions in all (a source with a hundred thousand
//! misspellings gets suggestions for its first ones and is checked as fast as without).

/// Names longer than this many characters get no suggestion, and are never suggested.
pub(super) const MAX_NAME_CHARS: usize = 64;
/// The distance cells (one per pair of characters compared) one check may spend on suggestions.
pub(super) const BUDGET: u64 = 16 << 20;

/// What is left of a check's suggestion budget.
#[derive(Debug)]
pub(super) struct Suggester {
    budget: u64,
}

impl Default for Suggester {
    fn default() -> Suggester {
        Suggester { budget: BUDGET }
    }
}

impl Suggester {
    /// Whether the budget is spent (no more suggestions: callers need not gather candidates).
    pub fn is_spent(&self) -> bool {
        self.budget == 0
    }

    /// The candidate closest to `name` by the rule of the module doc, if one is close enough.
    pub fn closest<'c, I>(&mut self, name: &str, candidates: I) -> Option<&'c str>
    where
        I: IntoIterator<Item = &'c str>,
    {
        let length = name.chars().count();
        if length == 0 || length > MAX_NAME_CHARS || self.budget == 0 {
            return None;
        }
        let max_distance = (length / 3).max(1);
        let lowered = name.to_lowercase();
        let mut best: Option<(usize, &'c str)> = None;
        for candidate in candidates {
            // Every candidate costs at least one unit, so that long candidate lists are bounded.
            self.budget = self.budget.saturating_sub(1);
            if candidate == name {
                continue;
            }
            let candidate_length = candidate.chars().count();
            if candidate_length > MAX_NAME_CHARS || candidate_length.abs_diff(length) > max_distance
            {
                continue;
            }
            if candidate.to_lowercase() == lowered {
                return Some(candidate);
            }
            let cells = (length * candidate_length) as u64;
            if cells > self.budget {
                self.budget = 0;
                break;
            }
            self.budget -= cells;
            let distance = strsim::osa_distance(name, candidate);
            let longer = length.max(candidate_length);
            if distance <= max_distance
                && distance < longer
                && best.is_none_or(|(nearest, _)| distance < nearest)
            {
                best = Some((distance, candidate));
            }
        }
        best.map(|(_, candidate)| candidate)
    }

    /// `did you mean `X`?` for the closest candidate, if any.
    pub fn did_you_mean<'c, I>(&mut self, name: &str, candidates: I) -> Option<String>
    where
        I: IntoIterator<Item = &'c str>,
    {
        self.closest(name, candidates)
            .map(|found| format!("did you mean `{found}`?"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closest<'c>(name: &str, candidates: &[&'c str]) -> Option<&'c str> {
        Suggester::default().closest(name, candidates.iter().copied())
    }

    #[test]
    fn close_names_are_suggested_and_far_ones_are_not() {
        let events = ["std.io:println", "std.io:print", "std.io:print.ln", "add"];
        assert_eq!(closest("std.io:prinltn", &events), Some("std.io:println"));
        assert_eq!(closest("ad", &events), Some("add"));
        assert_eq!(closest("eahc", &["each", "done"]), Some("each"));
        assert_eq!(closest("nmae", &["name"]), Some("name"));
        assert_eq!(closest("Name", &["nam", "name"]), Some("name"));
        // Nearest wins; the first written on a tie.
        assert_eq!(closest("totl", &["total", "tot"]), Some("total"));
        assert_eq!(closest("ab", &["abc", "abd"]), Some("abc"));
        // Too far, a one-letter name, the name itself, nothing to choose from.
        assert_eq!(closest("undefined_two", &events), None);
        assert_eq!(closest("x", &["y", "z"]), None);
        assert_eq!(closest("x", &["x"]), None);
        assert_eq!(closest("sum", &[]), None);
        assert_eq!(closest("zzzz", &["each", "done"]), None);
    }

    #[test]
    fn suggestions_stop_when_the_budget_is_spent() {
        let long = "q".repeat(MAX_NAME_CHARS + 1);
        assert_eq!(closest(&long, &[&long[1..]]), None);
        let mut suggester = Suggester::default();
        let names: Vec<String> = (0..1000).map(|i| format!("name_{i:04}_x")).collect();
        let mut found = 0;
        // 2000 misspellings against 1000 candidates would be 2000 * 1000 * 121 cells.
        for i in 0..2000 {
            if suggester
                .closest(
                    &format!("name_{:04}_y", i % 1000),
                    names.iter().map(|s| &**s),
                )
                .is_some()
            {
                found += 1;
            }
        }
        assert!(found > 0 && found < 2000, "{found}");
        assert_eq!(suggester.budget, 0);
    }
}
