//! Sets of `match` patterns (SPEC 10): which values the patterns written so far cover, and which
//! pattern covers each value first. The checker uses it to find unreachable patterns and bool
//! exhaustiveness; the JIT, to turn the integer patterns of a run of unguarded continuations into
//! disjoint intervals (a jump table and range checks).
//!
//! Both maps are ordered by the start of their intervals. `union` is the merged union of every
//! interval added (so "is this already covered" is one lookup); `pieces` holds disjoint intervals,
//! each with the tag of the first pattern that covered it. Adding a pattern walks only the union
//! intervals it overlaps, which it then merges into one, so `n` additions cost `O(n log n)` in all.

use std::collections::BTreeMap;

/// Integer (and bool, as 0 and 1) coverage with a tag per covered piece.
#[derive(Debug)]
pub struct Coverage<T: Copy> {
    union: BTreeMap<i64, i64>,
    pieces: BTreeMap<i64, (i64, T)>,
}

impl<T: Copy> Default for Coverage<T> {
    fn default() -> Self {
        Coverage {
            union: BTreeMap::new(),
            pieces: BTreeMap::new(),
        }
    }
}

impl<T: Copy> Coverage<T> {
    /// Adds the closed interval `lo..=hi` (not empty) tagged `tag`: the values it covers that no
    /// earlier interval did become `tag`'s. `Err` with the tag of the first piece it overlaps when
    /// every value was already covered (the interval adds nothing).
    pub fn add(&mut self, lo: i64, hi: i64, tag: T) -> Result<(), T> {
        debug_assert!(lo <= hi);
        if let Some((_, &end)) = self.union.range(..=lo).next_back() {
            if end >= hi {
                return Err(self.tag_at(lo).expect("a covered value has a piece"));
            }
        }
        // The gaps of `lo..=hi` in the union, and the union intervals it overlaps or touches.
        let mut merged_lo = lo;
        let mut merged_hi = hi;
        let mut overlapping: smallvec::SmallVec<[i64; 4]> = smallvec::SmallVec::new();
        let first = match self.union.range(..=lo).next_back() {
            Some((&start, &end)) if i128::from(end) + 1 >= i128::from(lo) => start,
            _ => lo,
        };
        let mut at = i128::from(lo);
        for (&start, &end) in self.union.range(first..) {
            if i128::from(start) > i128::from(hi) + 1 {
                break;
            }
            overlapping.push(start);
            merged_lo = merged_lo.min(start);
            merged_hi = merged_hi.max(end);
            // An interval that only touches `hi` is merged, and leaves the gaps as they are.
            if start <= hi {
                if i128::from(start) > at {
                    self.pieces.insert(at as i64, (start - 1, tag));
                }
                at = at.max(i128::from(end) + 1);
            }
        }
        if at <= i128::from(hi) {
            self.pieces.insert(at as i64, (hi, tag));
        }
        for start in overlapping {
            self.union.remove(&start);
        }
        self.union.insert(merged_lo, merged_hi);
        Ok(())
    }

    /// The tag of the piece holding `value`.
    pub fn tag_at(&self, value: i64) -> Option<T> {
        let (_, &(end, tag)) = self.pieces.range(..=value).next_back()?;
        (end >= value).then_some(tag)
    }

    /// Whether every value of `lo..=hi` is covered.
    pub fn covers(&self, lo: i64, hi: i64) -> bool {
        self.union
            .range(..=lo)
            .next_back()
            .is_some_and(|(_, &end)| end >= hi)
    }

    /// The disjoint pieces in increasing order: `(lo, hi, tag)`, closed.
    pub fn pieces(&self) -> impl Iterator<Item = (i64, i64, T)> + '_ {
        self.pieces.iter().map(|(&lo, &(hi, tag))| (lo, hi, tag))
    }
}

#[cfg(test)]
mod tests {
    use super::Coverage;

    #[test]
    fn first_pattern_owns_each_value_and_covered_patterns_name_their_cover() {
        let mut c = Coverage::default();
        assert_eq!(c.add(5, 5, 'a'), Ok(()));
        assert_eq!(c.add(0, 9, 'b'), Ok(()));
        assert_eq!(c.add(3, 7, 'c'), Err('b'));
        assert_eq!(c.add(5, 5, 'd'), Err('a'));
        assert_eq!(c.add(9, 12, 'e'), Ok(()));
        let pieces: Vec<_> = c.pieces().collect();
        assert_eq!(
            pieces,
            [(0, 4, 'b'), (5, 5, 'a'), (6, 9, 'b'), (10, 12, 'e')]
        );
        assert!(c.covers(0, 12));
        assert!(!c.covers(0, 13));
    }

    #[test]
    fn an_interval_touching_the_next_one_keeps_its_own_values() {
        let mut c = Coverage::default();
        assert_eq!(c.add(1, 1, 't'), Ok(()));
        assert_eq!(c.add(0, 0, 'f'), Ok(()));
        assert_eq!(c.tag_at(0), Some('f'));
        assert_eq!(c.add(-5, -1, 'n'), Ok(()));
        assert_eq!(c.add(-5, 1, 'x'), Err('n'));
        assert_eq!(c.pieces().count(), 3);
    }

    #[test]
    fn extreme_bounds_do_not_overflow() {
        let mut c = Coverage::default();
        assert_eq!(c.add(i64::MAX, i64::MAX, 1), Ok(()));
        assert_eq!(c.add(i64::MIN, i64::MAX, 2), Ok(()));
        assert_eq!(c.add(i64::MIN, i64::MIN, 3), Err(2));
        assert!(c.covers(i64::MIN, i64::MAX));
        let pieces: Vec<_> = c.pieces().collect();
        assert_eq!(
            pieces,
            [(i64::MIN, i64::MAX - 1, 2), (i64::MAX, i64::MAX, 1)]
        );
    }
}
