//! Middleware on the request path: compiled per endpoint group when the table is built, as a
//! plain list of a closed enum — no per-request lookups, no dynamic registration.
//!
//! The chain is empty in this build: `api-key-auth`, `rate-limit` and `response-cache` are
//! refused by the configuration gate until they are built, so an empty chain never lets a
//! request through that a configured middleware would have stopped.

use http::request::Parts;

use crate::error::GatewayError;

/// One middleware of a chain. Closed: each builder of SPEC §10 becomes a variant as it is
/// built.
#[derive(Debug, Clone)]
pub(crate) enum Middleware {}

/// The middleware an endpoint group runs, in `middleware-chain` order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chain {
    entries: Vec<Middleware>,
}

impl Chain {
    /// Runs every entry on the request's head: `Ok` hands the request on, `Err` answers it.
    pub(crate) fn apply(&self, _parts: &mut Parts) -> Result<(), GatewayError> {
        // No variant exists yet, so there is nothing to run; each builder adds its arm here.
        if let Some(entry) = self.entries.first() {
            match *entry {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_chain_hands_every_request_on() {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        assert!(Chain::default().apply(&mut parts).is_ok());
    }
}
