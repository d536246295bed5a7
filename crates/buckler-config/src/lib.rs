//! Buckler's configuration: the file model (JSON5 with kebab-case keys), Upstream Service
//! Objects (strict JSON, camelCase keys as in Shield), validation that reports every problem
//! at once as `FILE:LINE:COL: key: message`, and the JSON Schema generated from the same key
//! tables the validator uses. The only I/O is [`load`] reading the one file.

mod errors;
mod json5;
mod model;
mod schema;
mod upstream;
mod validate;

use std::path::Path;

pub use errors::{ConfigError, ConfigErrors};
pub use model::*;
pub use schema::json_schema;

/// Reads and validates a configuration file.
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
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
    let name = file.display().to_string();
    let mut ctx = errors::Ctx::new(&name);
    let document = match json5::parse(text, false) {
        Ok(document) => document,
        Err(error) => {
            ctx.error_pos(error.line, error.column, "", error.message);
            return ctx.finish(None);
        }
    };
    let config = validate::config(&mut ctx, &document, file);
    ctx.finish(config)
}

/// Validates a strict-JSON array of Upstream Service Objects (an `upstreams-file`, an etcd
/// value, an admin request body). Any bad entry rejects the whole list, with every error.
pub fn parse_upstreams(
    json: &str,
    source: &str,
    defaults: &LambdaDefaults,
) -> Result<Vec<UpstreamSpec>, ConfigErrors> {
    let mut ctx = errors::Ctx::new(source);
    let document = match json5::parse(json, true) {
        Ok(document) => document,
        Err(error) => {
            ctx.error_pos(error.line, error.column, "", error.message);
            return ctx.finish(None);
        }
    };
    let specs = upstream::upstream_list(&mut ctx, &document, "", defaults);
    ctx.finish(specs)
}

#[cfg(test)]
mod tests;
