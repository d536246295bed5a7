//! docs/fleets.md's configuration is a valid configuration of an etcd-watched domain.

use std::path::Path;

use buckler_config::UpstreamWatcher;

/// What the validator says of keys whose feature is still being wired (etcd, middleware and
/// kvstores, as of this test's writing). Once they are all served, this test takes no excuse:
/// drop the filter below.
const NOT_YET: &str = "not supported yet";

#[test]
fn the_fleet_guides_configuration_is_valid() {
    let guide = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/fleets.md");
    let text = std::fs::read_to_string(&guide).unwrap();
    let start = text.find("```json5\n").expect("a json5 block") + "```json5\n".len();
    let end = start + text[start..].find("```").expect("the block's end");
    match buckler_config::parse(&text[start..end], &guide) {
        Ok(config) => assert_eq!(
            config.domains[0].upstream_watcher,
            UpstreamWatcher::Etcd {
                endpoints: vec!["http://127.0.0.1:2379".to_owned()],
                key: "/buckler/api.example.org/upstreams".to_owned(),
            }
        ),
        Err(errors) => {
            let wrong: Vec<String> = errors
                .0
                .iter()
                .filter(|e| e.message != NOT_YET)
                .map(ToString::to_string)
                .collect();
            assert!(
                wrong.is_empty(),
                "docs/fleets.md's config is invalid:\n{}",
                wrong.join("\n")
            );
        }
    }
}
