//! A set of patients, enumerable by ordinal without materialising large sets.

/// The patients an export covers: an arithmetic progression (all patients,
/// a built-in cohort) or an explicit list (the `patient` parameter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatientSet {
    /// Patients `start, start + stride, ...`, `len` of them.
    Progression {
        /// First patient number.
        start: u64,
        /// Distance between members (at least 1).
        stride: u64,
        /// Number of members.
        len: u64,
    },
    /// Explicit patient numbers, sorted and unique.
    List(Vec<u64>),
}

impl PatientSet {
    /// All `n` patients.
    pub fn all(n: u64) -> Self {
        PatientSet::Progression { start: 0, stride: 1, len: n }
    }

    /// An explicit list; sorts and removes duplicates.
    pub fn list(mut patients: Vec<u64>) -> Self {
        patients.sort_unstable();
        patients.dedup();
        PatientSet::List(patients)
    }

    /// Number of members.
    pub fn len(&self) -> u64 {
        match self {
            PatientSet::Progression { len, .. } => *len,
            PatientSet::List(v) => v.len() as u64,
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The patient number of member `ordinal` (`ordinal < len()`).
    pub fn get(&self, ordinal: u64) -> u64 {
        match self {
            PatientSet::Progression { start, stride, .. } => start + ordinal * stride,
            PatientSet::List(v) => v[ordinal as usize],
        }
    }

    /// Whether patient `p` is a member.
    pub fn contains(&self, p: u64) -> bool {
        match self {
            PatientSet::Progression { start, stride, len } => {
                p >= *start && (p - start).is_multiple_of(*stride) && (p - start) / stride < *len
            }
            PatientSet::List(v) => v.binary_search(&p).is_ok(),
        }
    }

    /// Iterates member patient numbers in order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progression_membership_matches_enumeration() {
        let set = PatientSet::Progression { start: 3, stride: 7, len: 5 };
        let members: Vec<u64> = set.iter().collect();
        assert_eq!(members, vec![3, 10, 17, 24, 31]);
        for p in 0..40 {
            assert_eq!(set.contains(p), members.contains(&p), "patient {p}");
        }
    }

    #[test]
    fn list_is_sorted_and_unique() {
        let set = PatientSet::list(vec![5, 1, 5, 3]);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![1, 3, 5]);
        assert!(set.contains(3) && !set.contains(2));
    }
}
