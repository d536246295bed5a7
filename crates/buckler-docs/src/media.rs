//! Media type lists as routing compares them.

/// Reduces each entry to its essence (`type/subtype`, lower-cased, parameters such as
/// `charset` dropped), dropping entries that are not `type/subtype` and duplicates, keeping
/// the first occurrence's order.
pub(crate) fn media_list<'a>(types: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for raw in types {
        let essence = raw
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let well_formed = essence
            .split_once('/')
            .is_some_and(|(kind, sub)| !kind.is_empty() && !sub.is_empty() && !sub.contains('/'));
        if well_formed && !out.contains(&essence) {
            out.push(essence);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_dropped_lower_cased_bad_and_duplicate_entries_dropped() {
        let raw: Vec<String> = [
            "Application/JSON; charset=utf-8",
            "text/plain",
            "nonsense",
            "a/b/c",
            "/x",
            "application/json",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(media_list(&raw), vec!["application/json", "text/plain"]);
        assert!(media_list(&Vec::new()).is_empty());
    }
}
