//! What `buckler check` verifies beyond the file's own text: the files a configuration names
//! are read and checked as a start would read them, so `check` and `run` agree on them.

use std::time::SystemTime;

use buckler_config::Config;
use buckler_tls::TlsTermination;

use crate::listen::tls::wanted;
use crate::upstream_client::check_upstream_ca;

/// Problems with the files `config` names: the `tls` certificate pairs (read, parsed, key
/// matching certificate, not expired) and each domain's `upstream-ca` bundle. One message per
/// problem, each naming the key and the file; empty when a start would accept them all.
/// Blocking reads of small files.
pub fn check_files(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some((set, min_version)) = wanted(config) {
        if let Err(error) = TlsTermination::start(&set, min_version, SystemTime::now()) {
            problems.push(format!("tls: {error}"));
        }
    }
    for domain in &config.domains {
        if let Err(error) = check_upstream_ca(domain) {
            problems.push(format!("domain {}: {error}", domain.domain_name));
        }
    }
    problems
}
