//! `technical-group-ids`: Groups addressed by an opaque technical id, as many
//! EHRs do, while the logical id a person knows answers 404.

/// The technical id of the Group whose logical id is `logical`: a stable hash,
/// so the same Group keeps its id across servers and runs.
pub fn technical_group_id(logical: &str) -> String {
    let hash = logical.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    format!("t{hash:016x}")
}

/// The logical id behind technical id `technical`, among `logical_ids`.
pub fn logical_group_id<'a>(technical: &str, logical_ids: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    logical_ids.into_iter().find(|id| technical_group_id(id) == technical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn technical_ids_are_stable_opaque_and_reversible() {
        let t = technical_group_id("diabetes");
        assert_eq!(t, technical_group_id("diabetes"));
        assert_ne!(t, technical_group_id("all"));
        assert!(!t.contains("diabetes") && t.len() == 17);
        assert_eq!(logical_group_id(&t, ["all", "diabetes"]), Some("diabetes"));
        assert_eq!(logical_group_id("diabetes", ["all", "diabetes"]), None);
    }
}
