//! The domain's `kvstores`, built once per configuration: a store whose settings did not
//! change is kept from the previous configuration (its Redis connection, its memory
//! contents), so a reload neither reconnects nor forgets limits and cached responses.

use std::collections::BTreeMap;
use std::time::Duration;

use buckler_config::{KvStoreSpec, MiddlewareBuilder, MiddlewareSpec};
use buckler_kv::{MemoryStore, RedisStore, Store};

use super::MiddlewareError;

/// Bound of a middleware's private memory store (no `kvstore` named): SPEC's default
/// `max-bytes`.
const PRIVATE_MEMORY_BYTES: usize = 64 * 1024 * 1024;
/// How long one Redis call may take (connecting included) before it counts as failed. The
/// middleware's `sla` usually cuts it shorter.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// The stores of one domain: the named ones, and a private memory store per middleware that
/// names none.
#[derive(Debug, Default)]
pub(crate) struct Stores {
    named: BTreeMap<String, (KvStoreSpec, Store)>,
    /// By middleware id (lower-cased).
    private: BTreeMap<String, Store>,
}

impl Stores {
    pub(crate) fn build(
        specs: &BTreeMap<String, KvStoreSpec>,
        chain: &[MiddlewareSpec],
        previous: Option<&Stores>,
    ) -> Result<Stores, MiddlewareError> {
        let mut named = BTreeMap::new();
        for (name, spec) in specs {
            let kept = previous
                .and_then(|p| p.named.get(name))
                .filter(|(old, _)| old == spec)
                .map(|(_, store)| store.clone());
            let store = match kept {
                Some(store) => store,
                None => build_store(spec).map_err(|reason| MiddlewareError::Store {
                    name: name.clone(),
                    reason,
                })?,
            };
            named.insert(name.clone(), (spec.clone(), store));
        }
        let mut private = BTreeMap::new();
        for spec in chain {
            let names_none = match &spec.builder {
                MiddlewareBuilder::RateLimit { kvstore, .. }
                | MiddlewareBuilder::ResponseCache { kvstore, .. } => kvstore.is_none(),
                MiddlewareBuilder::ApiKeyAuth { .. } => false,
            };
            if names_none {
                let store = previous
                    .and_then(|p| p.private.get(&spec.id))
                    .cloned()
                    .unwrap_or_else(|| Store::Memory(MemoryStore::new(PRIVATE_MEMORY_BYTES)));
                private.insert(spec.id.clone(), store);
            }
        }
        Ok(Stores { named, private })
    }

    /// The store middleware `id` uses: the named one, else its private memory store. Names
    /// are checked by the configuration; an unknown one falls back to a private store.
    pub(crate) fn for_middleware(&self, id: &str, kvstore: Option<&str>) -> Store {
        kvstore
            .and_then(|name| self.named.get(name))
            .map(|(_, store)| store.clone())
            .or_else(|| self.private.get(id).cloned())
            .unwrap_or_else(|| Store::Memory(MemoryStore::new(PRIVATE_MEMORY_BYTES)))
    }
}

fn build_store(spec: &KvStoreSpec) -> Result<Store, String> {
    match spec {
        KvStoreSpec::Memory { max_bytes } => Ok(Store::Memory(MemoryStore::new(
            usize::try_from(*max_bytes).unwrap_or(usize::MAX),
        ))),
        KvStoreSpec::Redis { url } => RedisStore::new(url, REDIS_TIMEOUT)
            .map(Store::Redis)
            .map_err(|e| e.to_string()),
    }
}
