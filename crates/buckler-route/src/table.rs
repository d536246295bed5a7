//! The routing table: templates ranked by specificity, stored in a trie over path segments.
//!
//! A lookup walks only the branches a request path can take (a hash lookup for static
//! segments, plus the variable, pattern and rest branches), noting for every matching template
//! its rank and declared methods, and keeps the best-ranked one that declares the method.
//! Nothing is allocated unless the answer is 405 or a synthetic OPTIONS.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;
use regex::Regex;

use crate::template::{normalize_path, percent_decode, PathTemplate, TrieEdge};

/// Methods listed in `Allow`, in this order; others follow alphabetically.
const ALLOW_ORDER: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// Collects endpoint groups by (template, method) before the table is built.
#[derive(Debug)]
pub struct RoutingTableBuilder<G> {
    routes: Vec<Route<G>>,
    by_canonical: HashMap<String, usize, foldhash::fast::RandomState>,
}

#[derive(Debug)]
struct Route<G> {
    template: PathTemplate,
    methods: Vec<(Method, G)>,
}

impl<G> Default for RoutingTableBuilder<G> {
    fn default() -> Self {
        RoutingTableBuilder {
            routes: Vec::new(),
            by_canonical: HashMap::default(),
        }
    }
}

impl<G> RoutingTableBuilder<G> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The group for (template, method), created with `make` on first use. Equivalent
    /// templates (same canonical form) share one entry per method.
    pub fn group_mut(
        &mut self,
        template: PathTemplate,
        method: Method,
        make: impl FnOnce() -> G,
    ) -> &mut G {
        let index = match self.by_canonical.get(template.canonical()) {
            Some(index) => *index,
            None => {
                self.by_canonical
                    .insert(template.canonical().to_owned(), self.routes.len());
                self.routes.push(Route {
                    template,
                    methods: Vec::new(),
                });
                self.routes.len() - 1
            }
        };
        let methods = &mut self.routes[index].methods;
        let slot = match methods.iter().position(|(m, _)| *m == method) {
            Some(slot) => slot,
            None => {
                methods.push((method, make()));
                methods.len() - 1
            }
        };
        &mut methods[slot].1
    }

    /// Ranks the templates by specificity and builds the trie.
    pub fn build(mut self) -> RoutingTable<G> {
        self.routes.sort_by(|a, b| a.template.cmp(&b.template));
        let mut root = Node::default();
        let mut fallback = Vec::new();
        for (rank, route) in self.routes.iter().enumerate() {
            let rank = rank as u32;
            if !root.insert(route.template.trie_edges(), rank) {
                debug_assert!(
                    route.template.full_regex().is_some(),
                    "{:?}",
                    route.template
                );
                fallback.push(rank);
            }
        }
        let query_predicates = self
            .routes
            .iter()
            .any(|route| !route.template.query_predicates().is_empty());
        RoutingTable {
            routes: self.routes,
            root,
            fallback,
            query_predicates,
        }
    }
}

/// An immutable routing table.
#[derive(Debug)]
pub struct RoutingTable<G> {
    /// In specificity order: index = rank.
    routes: Vec<Route<G>>,
    root: Node,
    /// Ranks of templates the trie cannot hold (a `{+rest}` inside a compound segment),
    /// matched by their full regex.
    fallback: Vec<u32>,
    /// Whether any template has a query part: only then is a request's query looked at.
    query_predicates: bool,
}

/// The outcome of a lookup.
#[derive(Debug)]
pub enum RouteMatch<'a, G> {
    /// The most specific template that matches the path and declares the method (HEAD falls
    /// back to GET). `method` is the declared method used.
    Matched {
        template: &'a PathTemplate,
        method: &'a Method,
        group: &'a G,
    },
    /// `OPTIONS` on a matching path where no matching template declares it: answer 200.
    Options { allow: String },
    /// The path matches but no matching template declares the method: answer 405.
    MethodNotAllowed { allow: String },
    /// No template matches the path.
    NotFound,
}

impl<G> RoutingTable<G> {
    /// Finds where `method path` goes. `path` is the raw request path, optionally followed by
    /// `?query` (one trailing slash is ignored); see [`RoutingTable::lookup_query`].
    pub fn lookup(&self, method: &Method, path: &str) -> RouteMatch<'_, G> {
        match path.split_once('?') {
            Some((path, query)) => self.lookup_query(method, path, Some(query)),
            None => self.lookup_query(method, path, None),
        }
    }

    /// Finds where `method path?query` goes. `path` is the raw request path without its query
    /// (one trailing slash is ignored). Each path segment is percent-decoded before it is
    /// compared (`/caf%C3%A9` meets the template `/café`); `%2F` stays inside its segment.
    /// `query` (without `?`) is read only when some template has a query part
    /// ([`PathTemplate::query_predicates`]): such a template matches only a request whose
    /// query satisfies every predicate.
    pub fn lookup_query(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
    ) -> RouteMatch<'_, G> {
        let query = QueryCheck {
            enabled: self.query_predicates,
            query,
        };
        let normalized = normalize_path(path);
        if normalized.contains('%') {
            let decoded: Vec<std::borrow::Cow<'_, str>> =
                normalized.split('/').map(percent_decode).collect();
            let segments: Vec<&str> = decoded.iter().map(|s| s.as_ref()).collect();
            // Only templates the trie cannot hold (a `{+rest}` inside a segment) see the
            // joined text, and `{+rest}` spans slashes anyway.
            let joined = segments.join("/");
            return self.lookup_segments(method, &segments, &joined, query);
        }
        // One pass over the path: up to 32 segments on the stack, longer paths on the heap.
        let mut inline: [&str; 32] = [""; 32];
        let heap: Vec<&str>;
        let mut count = 0;
        let mut overflow = false;
        if !normalized.is_empty() {
            for segment in normalized.split('/') {
                match inline.get_mut(count) {
                    Some(slot) => *slot = segment,
                    None => {
                        overflow = true;
                        break;
                    }
                }
                count += 1;
            }
        }
        let segments: &[&str] = if overflow {
            heap = normalized.split('/').collect();
            &heap
        } else {
            &inline[..count]
        };
        self.lookup_segments(method, segments, normalized, query)
    }

    /// The lookup proper, over the path's segments (`normalized` is them joined by `/`).
    fn lookup_segments(
        &self,
        method: &Method,
        segments: &[&str],
        normalized: &str,
        query: QueryCheck<'_>,
    ) -> RouteMatch<'_, G> {
        let mut search = Search {
            routes: &self.routes,
            method,
            query,
            best: None,
            matched_any: false,
        };
        self.root.collect(segments, &mut search);
        for &rank in &self.fallback {
            if self.routes[rank as usize]
                .template
                .full_regex()
                .is_some_and(|full| full.is_match(normalized))
            {
                search.offer(rank);
            }
        }
        if let Some((rank, slot)) = search.best {
            let route = &self.routes[rank as usize];
            let (method, group) = &route.methods[slot];
            return RouteMatch::Matched {
                template: &route.template,
                method,
                group,
            };
        }
        if !search.matched_any {
            return RouteMatch::NotFound;
        }
        let allow = self.allow(segments, normalized, query);
        if *method == Method::OPTIONS {
            RouteMatch::Options { allow }
        } else {
            RouteMatch::MethodNotAllowed { allow }
        }
    }

    /// The `Allow` value: every method declared by any template matching the path.
    fn allow(&self, segments: &[&str], normalized: &str, query: QueryCheck<'_>) -> String {
        let mut ranks = Vec::new();
        self.root.collect_all(segments, &mut ranks);
        ranks.retain(|rank| query.admits(&self.routes[*rank as usize].template));
        for &rank in &self.fallback {
            let template = &self.routes[rank as usize].template;
            if template
                .full_regex()
                .is_some_and(|full| full.is_match(normalized))
                && query.admits(template)
            {
                ranks.push(rank);
            }
        }
        let declared: Vec<&Method> = ranks
            .iter()
            .flat_map(|rank| self.routes[*rank as usize].methods.iter().map(|(m, _)| m))
            .collect();
        let has = |m: &Method| declared.contains(&m);
        let mut allow: Vec<String> = Vec::new();
        for method in &ALLOW_ORDER {
            let listed = has(method) || (*method == Method::HEAD && has(&Method::GET));
            if listed {
                allow.push(method.to_string());
            }
        }
        let mut others: Vec<String> = declared
            .iter()
            .filter(|m| !ALLOW_ORDER.contains(m))
            .map(|m| m.to_string())
            .collect();
        others.sort();
        others.dedup();
        allow.extend(others);
        allow.join(", ")
    }

    /// Every (template, method, group), most specific template first.
    pub fn iter(&self) -> impl Iterator<Item = (&PathTemplate, &Method, &G)> {
        self.routes.iter().flat_map(|route| {
            route
                .methods
                .iter()
                .map(move |(m, g)| (&route.template, m, g))
        })
    }

    /// Number of (template, method) entries.
    pub fn len(&self) -> usize {
        self.routes.iter().map(|r| r.methods.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl PathTemplate {
    /// Does the template match `path` (raw, percent-encoded, optionally with `?query`, which
    /// must satisfy the template's query predicates; one trailing slash is ignored)? Same rules
    /// as a table lookup; for one-off checks, not the hot path.
    pub fn matches(&self, path: &str) -> bool {
        let mut builder = RoutingTableBuilder::new();
        builder.group_mut(self.clone(), Method::GET, || ());
        matches!(
            builder.build().lookup(&Method::GET, path),
            RouteMatch::Matched { .. }
        )
    }

    /// Does the template's path part match `path` (a query in `path` and the template's query
    /// predicates both ignored)? For endpoints that answer on the path alone.
    pub fn matches_path(&self, path: &str) -> bool {
        let mut builder = RoutingTableBuilder::new();
        builder.group_mut(self.clone(), Method::GET, || ());
        let mut table = builder.build();
        table.query_predicates = false;
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        matches!(
            table.lookup_query(&Method::GET, path, None),
            RouteMatch::Matched { .. }
        )
    }
}

/// The request's query, and whether the table has templates that look at it.
#[derive(Clone, Copy)]
struct QueryCheck<'a> {
    enabled: bool,
    query: Option<&'a str>,
}

impl QueryCheck<'_> {
    /// Does the request satisfy the template's query predicates? Without any in the table, no
    /// template is asked: the hot path stays as it was.
    fn admits(&self, template: &PathTemplate) -> bool {
        !self.enabled || template.query_matches(self.query)
    }
}

/// The state of one lookup: the best match declaring the method so far.
struct Search<'a, G> {
    routes: &'a [Route<G>],
    method: &'a Method,
    query: QueryCheck<'a>,
    /// (rank, index into the route's methods).
    best: Option<(u32, usize)>,
    matched_any: bool,
}

impl<G> Search<'_, G> {
    fn offer(&mut self, rank: u32) {
        if self.best.is_some_and(|(best, _)| best <= rank) {
            self.matched_any = true;
            return;
        }
        let route = &self.routes[rank as usize];
        if !self.query.admits(&route.template) {
            return;
        }
        self.matched_any = true;
        let methods = &route.methods;
        let slot = methods
            .iter()
            .position(|(m, _)| m == self.method)
            .or_else(|| {
                (*self.method == Method::HEAD)
                    .then(|| methods.iter().position(|(m, _)| *m == Method::GET))
                    .flatten()
            });
        if let Some(slot) = slot {
            self.best = Some((rank, slot));
        }
    }
}

/// A trie node: one level per path segment.
#[derive(Debug, Default)]
struct Node {
    /// foldhash, not SipHash: a lookup hashes one segment per level, and SipHash was most of
    /// the lookup's time. Keys come from upstream docs, never from requests, so there is no
    /// flooding to defend against; lookups only probe.
    statics: HashMap<Box<str>, Node, foldhash::fast::RandomState>,
    variable: Option<Box<Node>>,
    /// Compound or regex segments, one anchored regex each (deduplicated by source).
    patterns: Vec<(String, Arc<Regex>, Node)>,
    /// A whole-segment `{+rest}`: consumes zero or more segments.
    rest: Option<Box<Node>>,
    /// Ranks of templates ending here.
    terminals: Vec<u32>,
}

impl Node {
    /// Inserts a template; false when it needs the full-regex fallback.
    fn insert(&mut self, edges: &[TrieEdge], rank: u32) -> bool {
        let Some((first, tail)) = edges.split_first() else {
            self.terminals.push(rank);
            return true;
        };
        let child = match first {
            TrieEdge::Static(text) => self.statics.entry(text.clone()).or_default(),
            TrieEdge::Variable => self.variable.get_or_insert_with(Box::default),
            TrieEdge::Rest => self.rest.get_or_insert_with(Box::default),
            TrieEdge::Pattern(regex) => {
                let index = match self
                    .patterns
                    .iter()
                    .position(|(source, _, _)| source == regex.as_str())
                {
                    Some(index) => index,
                    None => {
                        let source = regex.as_str().to_owned();
                        self.patterns
                            .push((source, Arc::clone(regex), Node::default()));
                        self.patterns.len() - 1
                    }
                };
                &mut self.patterns[index].2
            }
            TrieEdge::Unheld => return false,
        };
        child.insert(tail, rank)
    }

    fn children<'a, 's>(
        &'a self,
        segments: &'s [&'s str],
        mut visit: impl FnMut(&'a Node, &'s [&'s str]),
    ) {
        if let Some(rest) = &self.rest {
            for skip in 0..=segments.len() {
                visit(rest, &segments[skip..]);
            }
        }
        let Some((first, tail)) = segments.split_first() else {
            return;
        };
        if let Some(child) = self.statics.get(*first) {
            visit(child, tail);
        }
        if !first.is_empty() {
            if let Some(child) = &self.variable {
                visit(child, tail);
            }
        }
        for (_, regex, child) in &self.patterns {
            if regex.is_match(first) {
                visit(child, tail);
            }
        }
    }

    fn collect<G>(&self, segments: &[&str], search: &mut Search<'_, G>) {
        if segments.is_empty() {
            for &rank in &self.terminals {
                search.offer(rank);
            }
        }
        self.children(segments, |child, tail| child.collect(tail, search));
    }

    fn collect_all(&self, segments: &[&str], out: &mut Vec<u32>) {
        if segments.is_empty() {
            out.extend_from_slice(&self.terminals);
        }
        self.children(segments, |child, tail| child.collect_all(tail, out));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, &str)]) -> RoutingTable<String> {
        let mut builder = RoutingTableBuilder::new();
        for (method, template) in entries {
            let parsed = PathTemplate::parse(template).unwrap();
            let label = format!("{method} {template}");
            builder.group_mut(parsed, method.parse().unwrap(), || label);
        }
        builder.build()
    }

    fn hit(table: &RoutingTable<String>, method: &str, path: &str) -> Option<String> {
        match table.lookup(&method.parse().unwrap(), path) {
            RouteMatch::Matched { group, .. } => Some(group.clone()),
            _ => None,
        }
    }

    #[test]
    fn most_specific_match_wins() {
        let t = table(&[
            ("GET", "/users/{id}"),
            ("GET", "/users/me"),
            ("GET", "/files/{+path}"),
            ("GET", "/files/{+path}/meta"),
            ("GET", "/"),
            ("GET", "/items/{id: [0-9]+}"),
            ("GET", "/items/{id}"),
            ("GET", "/doc{.ext}"),
        ]);
        assert_eq!(hit(&t, "GET", "/users/me").unwrap(), "GET /users/me");
        assert_eq!(hit(&t, "GET", "/users/7").unwrap(), "GET /users/{id}");
        assert_eq!(hit(&t, "GET", "/users/me/").unwrap(), "GET /users/me");
        assert_eq!(hit(&t, "GET", "/files/a/b").unwrap(), "GET /files/{+path}");
        assert_eq!(
            hit(&t, "GET", "/files/a/b/meta").unwrap(),
            "GET /files/{+path}/meta"
        );
        assert_eq!(hit(&t, "GET", "/files/").unwrap(), "GET /files/{+path}");
        assert_eq!(hit(&t, "GET", "/").unwrap(), "GET /");
        assert_eq!(hit(&t, "GET", "/items/42").unwrap(), "GET /items/{id}");
        assert_eq!(hit(&t, "GET", "/doc.json").unwrap(), "GET /doc{.ext}");
        assert_eq!(hit(&t, "GET", "/doc").unwrap(), "GET /doc{.ext}");
        assert!(matches!(
            t.lookup(&Method::GET, "/nope/x"),
            RouteMatch::NotFound
        ));
        assert!(matches!(
            t.lookup(&Method::GET, "/users"),
            RouteMatch::NotFound
        ));
    }

    #[test]
    fn methods_fall_back_to_less_specific_templates_then_405() {
        let t = table(&[
            ("GET", "/users/me"),
            ("DELETE", "/users/me"),
            ("GET", "/users/{id}"),
            ("PUT", "/users/{id}"),
        ]);
        assert_eq!(hit(&t, "PUT", "/users/me").unwrap(), "PUT /users/{id}");
        assert_eq!(hit(&t, "HEAD", "/users/me").unwrap(), "GET /users/me");
        match t.lookup(&Method::POST, "/users/me") {
            RouteMatch::MethodNotAllowed { allow } => assert_eq!(allow, "GET, HEAD, PUT, DELETE"),
            other => panic!("{other:?}"),
        }
        match t.lookup(&Method::OPTIONS, "/users/me") {
            RouteMatch::Options { allow } => assert_eq!(allow, "GET, HEAD, PUT, DELETE"),
            other => panic!("{other:?}"),
        }
        let with_options = table(&[("OPTIONS", "/x"), ("PURGE", "/x")]);
        assert_eq!(hit(&with_options, "OPTIONS", "/x").unwrap(), "OPTIONS /x");
        match with_options.lookup(&Method::GET, "/x") {
            RouteMatch::MethodNotAllowed { allow } => assert_eq!(allow, "OPTIONS, PURGE"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn equivalent_templates_share_a_group() {
        let mut builder: RoutingTableBuilder<Vec<&str>> = RoutingTableBuilder::new();
        builder
            .group_mut(
                PathTemplate::parse("/u/{id}").unwrap(),
                Method::GET,
                Vec::new,
            )
            .push("a");
        builder
            .group_mut(
                PathTemplate::parse("/u/{uid}").unwrap(),
                Method::GET,
                Vec::new,
            )
            .push("b");
        let t = builder.build();
        assert_eq!(t.len(), 1);
        match t.lookup(&Method::GET, "/u/1") {
            RouteMatch::Matched { group, .. } => assert_eq!(group, &vec!["a", "b"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn compound_segments_and_rest_inside_a_segment() {
        let t = table(&[
            ("GET", "/v{ver: [0-9]+}/x"),
            ("GET", "/file-{id}"),
            ("GET", "/pre{+rest}"),
        ]);
        assert_eq!(hit(&t, "GET", "/v2/x").unwrap(), "GET /v{ver: [0-9]+}/x");
        assert!(hit(&t, "GET", "/vx/x").is_none());
        assert_eq!(hit(&t, "GET", "/file-9").unwrap(), "GET /file-{id}");
        assert_eq!(hit(&t, "GET", "/prefix/a/b").unwrap(), "GET /pre{+rest}");
    }

    #[test]
    fn segments_are_compared_decoded_and_an_encoded_slash_stays_in_its_segment() {
        let t = table(&[
            ("GET", "/Your API URL/x"),
            ("GET", "/café"),
            ("GET", "/files/{name}"),
            ("GET", "/files/{a}/{b}"),
            ("GET", "/encoded%20key"),
            ("GET", "/r/{+rest}"),
        ]);
        assert_eq!(
            hit(&t, "GET", "/Your%20API%20URL/x").unwrap(),
            "GET /Your API URL/x"
        );
        assert_eq!(hit(&t, "GET", "/caf%C3%A9").unwrap(), "GET /café");
        assert_eq!(hit(&t, "GET", "/caf%c3%a9?q=%20").unwrap(), "GET /café");
        assert_eq!(hit(&t, "GET", "/files/a%2Fb").unwrap(), "GET /files/{name}");
        assert_eq!(hit(&t, "GET", "/files/a/b").unwrap(), "GET /files/{a}/{b}");
        assert_eq!(
            hit(&t, "GET", "/encoded%20key").unwrap(),
            "GET /encoded%20key"
        );
        assert_eq!(
            hit(&t, "GET", "/encoded key").unwrap(),
            "GET /encoded%20key"
        );
        assert_eq!(hit(&t, "GET", "/r/a%20b/c").unwrap(), "GET /r/{+rest}");
        assert!(hit(&t, "GET", "/caf%FF").is_none());
        match t.lookup(&Method::POST, "/caf%C3%A9") {
            RouteMatch::MethodNotAllowed { allow } => assert_eq!(allow, "GET, HEAD"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_static_suffix_beats_a_variable_suffix() {
        let t = table(&[
            ("GET", "/{z}/{x}/{y}.{format}"),
            ("GET", "/{z}/{x}/{y}.pbf"),
        ]);
        assert_eq!(
            hit(&t, "GET", "/1/2/3.pbf").unwrap(),
            "GET /{z}/{x}/{y}.pbf"
        );
        assert_eq!(
            hit(&t, "GET", "/1/2/3.png").unwrap(),
            "GET /{z}/{x}/{y}.{format}"
        );
    }

    #[test]
    fn iteration_is_in_specificity_order() {
        let t = table(&[
            ("GET", "/{+p}"),
            ("GET", "/a"),
            ("GET", "/{x}"),
            ("POST", "/a"),
        ]);
        let order: Vec<String> = t.iter().map(|(tpl, m, _)| format!("{m} {tpl}")).collect();
        assert_eq!(order, vec!["GET /a", "POST /a", "GET /{}", "GET /{+}"]);
    }

    /// The trie must agree with the definition: sort all templates by `Ord`, take the first
    /// that matches the path and declares the method.
    #[test]
    fn trie_agrees_with_brute_force_reference() {
        let pieces = ["a", "b", "{x}", "{n: [0-9]+}", "{+r}", "c{.e}"];
        let paths = [
            "/", "/a", "/b", "/a/b", "/a/1", "/1/a", "/a/b/c", "/c.json", "/c", "/a/c.x", "/1/2/3",
            "/b/a/1", "/a/b/a/b",
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for _round in 0..100 {
            let mut entries = Vec::new();
            for _ in 0..rng.usize(1..12) {
                let depth = rng.usize(0..4);
                let mut has_rest = false;
                let template: String = (0..depth)
                    .map(|_| {
                        // At most one `{+r}` per template, as the parser requires.
                        let piece = loop {
                            let piece = pieces[rng.usize(..pieces.len())];
                            if piece != "{+r}" || !has_rest {
                                break piece;
                            }
                        };
                        has_rest |= piece == "{+r}";
                        format!("/{piece}")
                    })
                    .collect();
                let method = if rng.bool() { "GET" } else { "POST" };
                entries.push((
                    method,
                    if template.is_empty() {
                        "/".to_owned()
                    } else {
                        template
                    },
                ));
            }
            let borrowed: Vec<(&str, &str)> =
                entries.iter().map(|(m, t)| (*m, t.as_str())).collect();
            let t = table(&borrowed);
            let mut reference: Vec<(PathTemplate, &str, String)> = borrowed
                .iter()
                .map(|(m, tpl)| (PathTemplate::parse(tpl).unwrap(), *m, format!("{m} {tpl}")))
                .collect();
            reference.sort_by(|a, b| a.0.cmp(&b.0));
            for path in paths {
                for method in ["GET", "POST"] {
                    let expected = reference
                        .iter()
                        .find(|(tpl, m, _)| *m == method && tpl.matches(path))
                        .map(|(tpl, _, _)| tpl.canonical().to_owned());
                    let got = match t.lookup(&method.parse().unwrap(), path) {
                        RouteMatch::Matched { template, .. } => {
                            Some(template.canonical().to_owned())
                        }
                        _ => None,
                    };
                    assert_eq!(got, expected, "{method} {path} over {borrowed:?}");
                }
            }
        }
    }

    #[test]
    fn a_query_part_is_a_predicate_more_specific_than_the_bare_path() {
        let t = table(&[
            ("GET", "/{Bucket}"),
            ("GET", "/{Bucket}?acl"),
            ("GET", "/{Bucket}?list-type=2"),
            ("GET", "/{Bucket}?list-type=2&prefix"),
            ("PUT", "/{Bucket}?acl"),
            ("GET", "/{Bucket}/{Key}?versionId={v}"),
        ]);
        assert_eq!(hit(&t, "GET", "/b").unwrap(), "GET /{Bucket}");
        assert_eq!(hit(&t, "GET", "/b?acl").unwrap(), "GET /{Bucket}?acl");
        assert_eq!(hit(&t, "GET", "/b?x=1&acl=").unwrap(), "GET /{Bucket}?acl");
        assert_eq!(
            hit(&t, "GET", "/b?list-type=2").unwrap(),
            "GET /{Bucket}?list-type=2"
        );
        assert_eq!(hit(&t, "GET", "/b?list-type=1").unwrap(), "GET /{Bucket}");
        // Two predicates beat one on the same path.
        assert_eq!(
            hit(&t, "GET", "/b?prefix=a&list-type=2").unwrap(),
            "GET /{Bucket}?list-type=2&prefix"
        );
        assert_eq!(hit(&t, "GET", "/b?%61cl").unwrap(), "GET /{Bucket}?acl");
        assert_eq!(hit(&t, "PUT", "/b?acl").unwrap(), "PUT /{Bucket}?acl");
        assert_eq!(
            hit(&t, "GET", "/b/k?versionId=3").unwrap(),
            "GET /{Bucket}/{Key}?versionId={v}"
        );
        // Without its predicate a template does not match at all: 404, not 405.
        assert!(matches!(
            t.lookup(&Method::GET, "/b/k"),
            RouteMatch::NotFound
        ));
        // `Allow` lists only templates whose predicates hold.
        match t.lookup(&Method::DELETE, "/b") {
            RouteMatch::MethodNotAllowed { allow } => assert_eq!(allow, "GET, HEAD"),
            other => panic!("{other:?}"),
        }
        match t.lookup(&Method::DELETE, "/b?acl") {
            RouteMatch::MethodNotAllowed { allow } => assert_eq!(allow, "GET, HEAD, PUT"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            t.lookup_query(&Method::GET, "/b", Some("acl")),
            RouteMatch::Matched { template, .. } if template.canonical() == "/{}?acl"
        ));
    }

    #[test]
    fn without_query_parts_the_query_is_never_read() {
        let t = table(&[("GET", "/x")]);
        assert!(!t.query_predicates);
        assert_eq!(hit(&t, "GET", "/x?anything=1").unwrap(), "GET /x");
    }

    #[test]
    fn a_fragment_is_dropped_and_its_operations_share_the_path() {
        let mut builder = RoutingTableBuilder::new();
        for template in ["/#X-Amz-Target=A.One", "/#X-Amz-Target=A.Two"] {
            builder
                .group_mut(
                    PathTemplate::parse(template).unwrap(),
                    Method::POST,
                    Vec::new,
                )
                .push(template);
        }
        let t = builder.build();
        match t.lookup(&Method::POST, "/") {
            RouteMatch::Matched {
                group, template, ..
            } => {
                assert_eq!(template.canonical(), "/");
                assert_eq!(group.len(), 2);
            }
            other => panic!("{other:?}"),
        }
    }
}
