//! Which declared templates the gateway's own endpoints hide.

use crate::PathTemplate;

/// The pairs (local path, template) where a request for `local_path` (`/healthcheck`,
/// `/metrics`: answered by the gateway before any routing) matches a template an upstream
/// declares, so the upstream never sees it. A template that only matches other paths too
/// (`/{x}`) is listed: it loses exactly that path. Local endpoints answer on the path alone, so
/// a template's query part does not save it (`/metrics?verbose` is hidden too). Order: local paths as given, then
/// templates as given; empty when nothing is hidden.
pub fn shadowed_templates<'a>(
    templates: impl IntoIterator<Item = &'a PathTemplate>,
    local_paths: &[&str],
) -> Vec<(String, &'a PathTemplate)> {
    let templates: Vec<&PathTemplate> = templates.into_iter().collect();
    let mut out = Vec::new();
    for local in local_paths {
        for template in &templates {
            if template.matches_path(local) {
                out.push(((*local).to_owned(), *template));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_endpoints_hide_the_templates_that_match_them() {
        let declared: Vec<PathTemplate> = [
            "/metrics",
            "/healthcheck/{+rest}",
            "/{x}",
            "/users",
            "/metrics?verbose",
        ]
        .iter()
        .map(|t| PathTemplate::parse(t).unwrap())
        .collect();
        let hidden: Vec<(String, String)> =
            shadowed_templates(&declared, &["/healthcheck", "/metrics"])
                .into_iter()
                .map(|(local, t)| (local, t.canonical().to_owned()))
                .collect();
        let pairs: Vec<(&str, &str)> = hidden
            .iter()
            .map(|(l, t)| (l.as_str(), t.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("/healthcheck", "/healthcheck/{+}"),
                ("/healthcheck", "/{}"),
                ("/metrics", "/metrics"),
                ("/metrics", "/{}"),
                ("/metrics", "/metrics?verbose"),
            ]
        );
        assert!(shadowed_templates(&declared[3..4], &["/metrics"]).is_empty());
    }
}
