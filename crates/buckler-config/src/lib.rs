//! Buckler's configuration: the file model (JSON5 with kebab-case keys), Upstream Service
//! Objects (strict JSON, camelCase keys as in Shield), validation that reports every problem
//! at once as `FILE:LINE:COL: key: message`, and the JSON Schema generated from the same key
//! tables the validator uses. The only I/O is [`load`] reading the one file.

mod errors;
mod json5;
mod model;
mod schema;
pub mod support;
mod upstream;
mod validate;

use std::path::Path;

pub use errors::{ConfigError, ConfigErrors};
pub use model::*;
pub use schema::json_schema;

/// Reads and validates a configuration file, refusing keys that are not built ([`parse`]).
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(error) => Err(ConfigErrors(vec![ConfigError {
            file: path.display().to_string(),
            line: 1,
            column: 1,
            key: String::new(),
            message: format!("cannot read the file: {error}"),
        }])),
    }
}

/// Validates configuration text; `file` names it in errors and anchors relative paths.
/// Keys this build does not act on are refused ([`support`]), so every caller (`check`,
/// `run`, a reload) accepts exactly the same files.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
    parse_gated(text, file, true)
}

/// [`parse`], with the [`support`] gate applied or not (the model's own tests cover keys that
/// are not built yet).
pub(crate) fn parse_gated(text: &str, file: &Path, gate: bool) -> Result<Config, ConfigErrors> {
    let name = file.display().to_string();
    let mut ctx = errors::Ctx::new(&name);
    let Some(document) = read_document(&mut ctx, text, false) else {
        return ctx.finish(None);
    };
    let config = validate::config(&mut ctx, &document, file);
    if gate {
        support::gate(&mut ctx, &document);
    }
    let warnings = ctx.take_warnings();
    ctx.finish(config)
        .map(|config| Config { warnings, ..config })
}

/// Validates a strict-JSON array of Upstream Service Objects (an `upstreams-file`, an etcd
/// value, an admin request body). Any bad entry rejects the whole list, with every error.
pub fn parse_upstreams(
    json: &str,
    source: &str,
    defaults: &LambdaDefaults,
) -> Result<Vec<UpstreamSpec>, ConfigErrors> {
    let mut ctx = errors::Ctx::new(source);
    let Some(document) = read_document(&mut ctx, json, true) else {
        return ctx.finish(None);
    };
    let specs = upstream::upstream_list(&mut ctx, &document, "", defaults);
    ctx.finish(specs)
}

/// Parses JSON5 (or strict JSON) and reports every repeated key of an object at its position:
/// `None` only on a syntax error; duplicates leave a document to validate (every problem is
/// listed at once) but fail the whole.
fn read_document(ctx: &mut errors::Ctx, text: &str, strict: bool) -> Option<json5::Value> {
    match json5::parse(text, strict) {
        Ok(document) => {
            for (path, key) in json5::duplicate_keys(&document) {
                ctx.error_key(key, &path, "duplicate key");
            }
            Some(document)
        }
        Err(error) => {
            ctx.error_pos(error.line, error.column, "", error.message);
            None
        }
    }
}

#[cfg(test)]
mod tests;
