//! Parsed docs shared by content. The upstreams of a fleet are mostly instances of a few
//! services, each instance serving the same document: parsing it once per instance made
//! adding a thousand of them parse a thousand copies on the requests' thread. Documents are
//! identified by the SHA-256 of their bytes (and the format they were parsed as), so two
//! different documents never share an entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::upstream::{DocsDigest, UpstreamDocs};

/// Docs by digest, held weakly: an entry lives as long as some upstream uses its docs.
#[derive(Debug, Default)]
pub struct DocsCache {
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    by_digest: HashMap<DocsDigest, Weak<UpstreamDocs>, foldhash::fast::RandomState>,
    /// Size at which dead entries are next swept out.
    sweep_at: usize,
}

/// Fewest entries before the first sweep.
const FIRST_SWEEP: usize = 64;

impl DocsCache {
    /// The docs some upstream already holds for this digest.
    pub fn get(&self, digest: &DocsDigest) -> Option<Arc<UpstreamDocs>> {
        self.lock().by_digest.get(digest).and_then(Weak::upgrade)
    }

    /// Shares `docs`, or the docs another loader parsed from the same document meanwhile.
    pub fn share(&self, docs: UpstreamDocs) -> Arc<UpstreamDocs> {
        let mut entries = self.lock();
        if let Some(existing) = entries.by_digest.get(&docs.digest).and_then(Weak::upgrade) {
            return existing;
        }
        let docs = Arc::new(docs);
        entries.by_digest.insert(docs.digest, Arc::downgrade(&docs));
        if entries.by_digest.len() >= entries.sweep_at {
            entries.by_digest.retain(|_, docs| docs.strong_count() > 0);
            // Doubling keeps the sweeps' cost linear in the inserts.
            entries.sweep_at = (entries.by_digest.len() * 2).max(FIRST_SWEEP);
        }
        docs
    }

    /// Entries kept, dead ones not yet swept included.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().by_digest.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Every change leaves the map consistent: a panic elsewhere cannot corrupt it.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(digest: DocsDigest, title: &str) -> UpstreamDocs {
        UpstreamDocs {
            title: title.to_owned(),
            version: "1".to_owned(),
            endpoints: Vec::new(),
            digest,
        }
    }

    #[test]
    fn digests_tell_formats_parts_and_bytes_apart() {
        let base = DocsDigest::of("swagger2", &[b"{}"]);
        assert_eq!(base, DocsDigest::of("swagger2", &[b"{}"]));
        assert_ne!(base, DocsDigest::of("openapi3", &[b"{}"]));
        assert_ne!(base, DocsDigest::of("swagger2", &[b"{ }"]));
        assert_ne!(
            DocsDigest::of("swagger1", &[b"ab", b"c"]),
            DocsDigest::of("swagger1", &[b"a", b"bc"])
        );
    }

    #[test]
    fn one_document_is_shared_and_forgotten_when_unused() {
        let cache = DocsCache::default();
        let digest = DocsDigest::of("swagger2", &[b"one"]);
        assert!(cache.get(&digest).is_none());
        let first = cache.share(docs(digest, "first"));
        // A loader that parsed the same document meanwhile gets the shared copy.
        let second = cache.share(docs(digest, "second"));
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(cache.get(&digest).unwrap().title, "first");
        let other = DocsDigest::of("swagger2", &[b"two"]);
        assert_eq!(cache.share(docs(other, "two")).title, "two");
        drop((first, second));
        assert!(cache.get(&digest).is_none(), "held by no upstream");
        let fresh = cache.share(docs(digest, "again"));
        assert_eq!(fresh.title, "again");
    }

    #[test]
    fn dead_entries_are_swept() {
        let cache = DocsCache::default();
        let mut kept = Vec::new();
        for i in 0..1000u32 {
            let shared = cache.share(docs(DocsDigest::of("swagger2", &[&i.to_le_bytes()]), ""));
            if i % 100 == 0 {
                kept.push(shared);
            }
        }
        assert!(cache.len() < 2 * FIRST_SWEEP, "{} entries", cache.len());
        for shared in &kept {
            assert!(Arc::ptr_eq(&cache.get(&shared.digest).unwrap(), shared));
        }
    }
}
