//! A small builder for Swagger 2.0 documents served by fake upstreams.

use serde_json::{json, Map, Value};

/// Builds a Swagger 2.0 document operation by operation.
#[derive(Debug, Clone)]
pub struct Swagger2Doc {
    title: String,
    version: String,
    base_path: Option<String>,
    consumes: Vec<String>,
    produces: Vec<String>,
    paths: Map<String, Value>,
}

impl Swagger2Doc {
    /// An empty document with `info.title` and `info.version`.
    pub fn new(title: &str, version: &str) -> Self {
        Swagger2Doc {
            title: title.to_owned(),
            version: version.to_owned(),
            base_path: None,
            consumes: Vec::new(),
            produces: Vec::new(),
            paths: Map::new(),
        }
    }

    /// Sets `basePath`.
    pub fn base_path(mut self, base_path: &str) -> Self {
        self.base_path = Some(base_path.to_owned());
        self
    }

    /// Sets root-level `consumes` and `produces`.
    pub fn media(mut self, consumes: &[&str], produces: &[&str]) -> Self {
        self.consumes = consumes.iter().map(|s| s.to_string()).collect();
        self.produces = produces.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Declares root-level `produces: ["application/json"]`.
    pub fn produces_json(mut self) -> Self {
        self.produces = vec!["application/json".to_owned()];
        self
    }

    /// Adds an operation with no declared media types.
    pub fn op(self, method: &str, path: &str) -> Self {
        self.op_with(method, path, json!({}))
    }

    /// Adds an operation whose object is `extra` merged with a default `responses`.
    pub fn op_with(mut self, method: &str, path: &str, extra: Value) -> Self {
        let mut operation = Map::new();
        operation.insert("responses".into(), json!({"200": {"description": "ok"}}));
        if let Value::Object(fields) = extra {
            operation.extend(fields);
        }
        let item = self
            .paths
            .entry(path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(item) = item {
            item.insert(method.to_ascii_lowercase(), Value::Object(operation));
        }
        self
    }

    /// The document as a JSON value.
    pub fn to_value(&self) -> Value {
        let mut doc = json!({
            "swagger": "2.0",
            "info": {"title": self.title, "version": self.version},
            "paths": self.paths,
        });
        if let Some(base_path) = &self.base_path {
            doc["basePath"] = json!(base_path);
        }
        if !self.consumes.is_empty() {
            doc["consumes"] = json!(self.consumes);
        }
        if !self.produces.is_empty() {
            doc["produces"] = json!(self.produces);
        }
        doc
    }

    /// The document as JSON text.
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }
}
