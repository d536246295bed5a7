//! Upstream Service Objects: `{"serviceType", "serviceLocation", "weight"}` (camelCase keys, as
//! Shield had them), validated exactly; a list with any bad entry is rejected whole.

use std::collections::HashMap;

use crate::errors::Ctx;
use crate::json5::{Kind, Value};
use crate::model::{
    HttpLocation, LambdaDefaults, LambdaLocation, Scheme, ServiceLocation, ServiceType,
    UpstreamSpec,
};
use crate::schema::UPSTREAM_FIELDS;

/// Heaviest weight accepted.
const MAX_WEIGHT: u64 = 1_000_000;

/// Validates a list of upstream objects; every problem is reported, duplicates included.
pub(crate) fn upstream_list(
    ctx: &mut Ctx,
    value: &Value,
    path: &str,
    defaults: &LambdaDefaults,
) -> Option<Vec<UpstreamSpec>> {
    let items = ctx.array(value, path)?;
    let before = ctx.error_count();
    let mut specs: Vec<UpstreamSpec> = Vec::new();
    // Identity → index of its first appearance: a hash, not a scan, so a list of thousands
    // validates in linear time.
    let mut first_at: HashMap<String, usize> = HashMap::new();
    for (index, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{index}]");
        if let Some(spec) = upstream(ctx, item, &item_path, defaults) {
            if let Some(&first) = first_at.get(spec.identity()) {
                ctx.error_at(
                    item,
                    &item_path,
                    format!(
                        "duplicate upstream {:?} (also at index {first})",
                        spec.identity()
                    ),
                );
            }
            first_at.entry(spec.identity().to_owned()).or_insert(index);
            specs.push(spec);
        }
    }
    (ctx.error_count() == before).then_some(specs)
}

fn upstream(
    ctx: &mut Ctx,
    value: &Value,
    path: &str,
    defaults: &LambdaDefaults,
) -> Option<UpstreamSpec> {
    let fields = ctx.object(value, path, UPSTREAM_FIELDS)?;
    let service_type = fields.get("serviceType").and_then(|v| {
        let name = ctx.string(v, &format!("{path}.serviceType"))?;
        let parsed = ServiceType::parse(&name);
        if parsed.is_none() {
            ctx.error_at(
                v,
                &format!("{path}.serviceType"),
                format!(
                    "unknown service type {name:?}; valid: {}",
                    ServiceType::NAMES.join(", ")
                ),
            );
        }
        parsed
    });
    let location_value = fields.get("serviceLocation");
    let location_text =
        location_value.and_then(|v| ctx.string(v, &format!("{path}.serviceLocation")));
    let weight = match fields.get("weight") {
        None => Some(1),
        Some(v) => weight(ctx, v, &format!("{path}.weight")),
    };
    // The location is checked even when the type is invalid, so every problem is reported;
    // an unknown type is checked as an HTTP location.
    let location_path = format!("{path}.serviceLocation");
    let location = match (&location_text, location_value) {
        (Some(text), Some(value)) => {
            let checked = match service_type {
                Some(ServiceType::Lambda) => {
                    lambda_location(text, defaults).map(ServiceLocation::Lambda)
                }
                _ => http_location(text).map(ServiceLocation::Http),
            };
            match checked {
                Ok(location) => Some(location),
                Err(problem) => {
                    ctx.error_at(value, &location_path, format!("{text:?}: {problem}"));
                    None
                }
            }
        }
        _ => None,
    };
    let (service_type, location) = (service_type?, location?);
    Some(UpstreamSpec {
        service_type,
        location,
        weight: weight?,
    })
}

fn weight(ctx: &mut Ctx, value: &Value, path: &str) -> Option<u32> {
    match &value.kind {
        Kind::Number {
            text,
            value: number,
        } => {
            let integral = !text.contains(['.', 'e', 'E']) && number.fract() == 0.0;
            if !integral {
                ctx.error_at(
                    value,
                    path,
                    format!("{text} is not an integer; weights are non-negative integers"),
                );
                None
            } else if *number < 0.0 {
                ctx.error_at(
                    value,
                    path,
                    format!("{text} is negative; weights are non-negative integers"),
                );
                None
            } else if *number > MAX_WEIGHT as f64 {
                ctx.error_at(
                    value,
                    path,
                    format!("{text} is above the maximum weight {MAX_WEIGHT}"),
                );
                None
            } else {
                Some(*number as u32)
            }
        }
        other => {
            ctx.error_at(
                value,
                path,
                format!(
                    "expected a non-negative integer, found {}",
                    other.describe()
                ),
            );
            None
        }
    }
}

/// Validates and normalises an http(s) location (SPEC §3, Shield's exact rules).
pub(crate) fn http_location(text: &str) -> Result<HttpLocation, String> {
    if text.is_empty() {
        return Err("empty location; expected http(s)://host[:port]".to_owned());
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err("not an absolute URI; expected http(s)://host[:port]".to_owned());
    };
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(format!("scheme {other:?} is not http or https")),
    };
    if rest.contains('#') {
        return Err("a fragment is not allowed (not even an empty `#`)".to_owned());
    }
    if rest.contains('?') {
        return Err("a query is not allowed (not even an empty `?`)".to_owned());
    }
    if rest.contains('/') {
        return Err("a path is not allowed (not even `/`)".to_owned());
    }
    if rest.contains('@') {
        return Err("user-info is not allowed".to_owned());
    }
    let (host, port) = if let Some(stripped) = rest.strip_prefix('[') {
        let (inside, after) = stripped.split_once(']').ok_or("unclosed IPv6 literal")?;
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 address {inside:?}"));
        }
        (
            format!("[{}]", inside.to_ascii_lowercase()),
            after.strip_prefix(':'),
        )
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host.to_ascii_lowercase(), Some(port)),
            None => (rest.to_ascii_lowercase(), None),
        }
    };
    if host.is_empty() {
        return Err("missing host".to_owned());
    }
    if !host.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        return Err(format!("invalid host {host:?}"));
    }
    let port = match port {
        None => None,
        Some(port) => Some(
            port.parse::<u16>()
                .map_err(|_| format!("invalid port {port:?}"))?,
        ),
    };
    let scheme_text = match scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    };
    let normalized = match port {
        Some(port) => format!("{scheme_text}://{host}:{port}"),
        None => format!("{scheme_text}://{host}"),
    };
    Ok(HttpLocation {
        scheme,
        host,
        port,
        normalized,
    })
}

/// A Lambda ARN `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`, or a bare function
/// name with `lambda.region` set.
pub(crate) fn lambda_location(
    text: &str,
    defaults: &LambdaDefaults,
) -> Result<LambdaLocation, String> {
    let valid_name = |name: &str| {
        !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let valid_qualifier = |q: &str| {
        q == "$LATEST"
            || (!q.is_empty()
                && q.len() <= 128
                && q.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    };
    if text.starts_with("arn:") {
        let parts: Vec<&str> = text.split(':').collect();
        if parts.len() < 7 || parts.len() > 8 || parts[2] != "lambda" || parts[5] != "function" {
            return Err(
                "expected arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]".to_owned(),
            );
        }
        let region = parts[3];
        let region_ok = region.split('-').count() >= 3
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !region_ok {
            return Err(format!("invalid region {region:?}"));
        }
        if parts[4].len() != 12 || !parts[4].chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("invalid account {:?} (12 digits)", parts[4]));
        }
        if !valid_name(parts[6]) {
            return Err(format!("invalid function name {:?}", parts[6]));
        }
        let qualifier = parts.get(7).map(|q| q.to_string());
        if let Some(q) = &qualifier {
            if !valid_qualifier(q) {
                return Err(format!("invalid qualifier {q:?}"));
            }
        }
        return Ok(LambdaLocation {
            function_name: parts[..7].join(":"),
            qualifier,
            region: region.to_owned(),
            account: Some(parts[4].to_owned()),
            identity: text.to_owned(),
        });
    }
    let (name, qualifier) = match text.split_once(':') {
        Some((name, q)) => (name, Some(q.to_owned())),
        None => (text, None),
    };
    if !valid_name(name) {
        return Err(
            "expected a Lambda function ARN or name ([A-Za-z0-9-_], at most 64)".to_owned(),
        );
    }
    if let Some(q) = &qualifier {
        if !valid_qualifier(q) {
            return Err(format!("invalid qualifier {q:?}"));
        }
    }
    let region = defaults
        .region
        .clone()
        .ok_or("a bare function name needs `lambda.region` (or use the function ARN)")?;
    Ok(LambdaLocation {
        function_name: name.to_owned(),
        qualifier,
        region,
        account: None,
        identity: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_locations_follow_shields_rules() {
        let ok = http_location("HTTPs://EXamPLE.edu").unwrap();
        assert_eq!(ok.normalized, "https://example.edu");
        assert_eq!(ok.port, None);
        assert_eq!(ok.port_or_default(), 443);
        assert_eq!(
            http_location("http://example.edu:8080").unwrap().port,
            Some(8080)
        );
        assert_eq!(
            http_location("https://example.edu:443").unwrap().normalized,
            "https://example.edu:443"
        );
        assert_eq!(
            http_location("http://[::1]:9000").unwrap().normalized,
            "http://[::1]:9000"
        );
        for bad in [
            "",
            "/foobar",
            "example.edu",
            "ftp://example.edu",
            "mailto://example.edu",
            "http://example.edu/",
            "http://example.edu/path",
            "http://example.edu?",
            "http://example.edu?a=1",
            "http://example.edu#",
            "http://example.edu#frag",
            "http://:@example.edu",
            "http://foo:bar@example.edu",
            "http://example.edu:notaport",
            "http://",
        ] {
            assert!(http_location(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn lambda_locations() {
        let defaults = LambdaDefaults::default();
        let arn = lambda_location(
            "arn:aws:lambda:us-east-1:123456789012:function:orders:live",
            &defaults,
        )
        .unwrap();
        assert_eq!(arn.region, "us-east-1");
        assert_eq!(arn.qualifier.as_deref(), Some("live"));
        assert_eq!(
            arn.function_name,
            "arn:aws:lambda:us-east-1:123456789012:function:orders"
        );
        assert!(lambda_location("orders", &defaults)
            .unwrap_err()
            .contains("lambda.region"));
        let with_region = LambdaDefaults {
            region: Some("eu-west-1".into()),
            endpoint_url: None,
        };
        assert_eq!(
            lambda_location("orders", &with_region).unwrap().region,
            "eu-west-1"
        );
        assert!(
            lambda_location("arn:aws:lambda:us-east-1:123:function:orders", &defaults).is_err()
        );
        assert!(lambda_location(
            "arn:aws:s3:us-east-1:123456789012:function:orders",
            &defaults
        )
        .is_err());
        assert!(lambda_location("bad name", &with_region).is_err());
    }
}
