//! Content negotiation inside an endpoint group: which candidates can take the request's
//! body (`Content-Type`) and produce something the client accepts (`Accept`).

/// A media type, lower-cased, parameters dropped. Declared types may be wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaType {
    full: String,
    slash: usize,
}

impl MediaType {
    /// Parses `type/subtype[; params]`; `None` when it is not of that shape.
    pub fn parse(input: &str) -> Option<MediaType> {
        let essence = input.split(';').next()?.trim().to_ascii_lowercase();
        let slash = essence.find('/')?;
        let (kind, subtype) = (&essence[..slash], &essence[slash + 1..]);
        let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
        if !token(kind) || !token(subtype) || (kind == "*" && subtype != "*") {
            return None;
        }
        Some(MediaType {
            full: essence,
            slash,
        })
    }

    /// `type/subtype`.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    fn kind(&self) -> &str {
        &self.full[..self.slash]
    }

    fn subtype(&self) -> &str {
        &self.full[self.slash + 1..]
    }

    /// The structured-syntax suffix (`json` in `vnd.api+json`).
    fn suffix(&self) -> Option<&str> {
        self.subtype().rsplit_once('+').map(|(_, s)| s)
    }

    /// Does this declared type (possibly a wildcard) accept the concrete `actual` type?
    /// `application/json` also accepts `application/<anything>+json` (likewise `+xml`).
    fn accepts(&self, actual: &MediaType) -> bool {
        if self.kind() == "*" {
            return true;
        }
        if self.kind() != actual.kind() {
            return false;
        }
        self.subtype() == "*"
            || self.subtype() == actual.subtype()
            || actual.suffix() == Some(self.subtype())
    }
}

/// A candidate's declared media types; empty slices mean "declares nothing" (anything goes).
pub trait Negotiable {
    fn consumes(&self) -> &[MediaType];
    fn produces(&self) -> &[MediaType];
}

/// The candidates that survive negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every candidate (no allocation on this, the common, path).
    All,
    /// These indices into the candidate slice, ascending.
    Subset(Vec<usize>),
}

/// Why no candidate is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NegotiationError {
    /// The body's media type is consumed by no candidate: 415.
    UnsupportedMediaType,
    /// Nothing any candidate produces is acceptable: 406.
    NotAcceptable,
}

/// One `Accept` range with its quality.
struct Range {
    media: MediaType,
    q: f32,
}

impl Range {
    /// 0 for `*/*`, 1 for `type/*`, 2 for a concrete type: the most specific range decides.
    fn precision(&self) -> u8 {
        match (self.media.kind(), self.media.subtype()) {
            ("*", _) => 0,
            (_, "*") => 1,
            _ => 2,
        }
    }
}

fn parse_accept(accept: &str) -> Vec<Range> {
    accept
        .split(',')
        .filter_map(|item| {
            let media = MediaType::parse(item)?;
            // A malformed q counts as 1, as most servers do; q is clamped to [0, 1].
            let q = item
                .split(';')
                .skip(1)
                .filter_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .or_else(|| p.trim().strip_prefix("Q="))
                })
                .find_map(|v| v.trim().parse::<f32>().ok())
                .map_or(1.0, |q| q.clamp(0.0, 1.0));
            Some(Range { media, q })
        })
        .collect()
}

/// The quality the client gives `produced` (a declared type, possibly a wildcard): from the
/// most specific matching range, or 0.
fn quality(ranges: &[Range], produced: &MediaType) -> f32 {
    ranges
        .iter()
        .filter(|r| r.media.accepts(produced) || produced.accepts(&r.media))
        .max_by(|a, b| a.precision().cmp(&b.precision()).then(a.q.total_cmp(&b.q)))
        .map_or(0.0, |r| r.q)
}

/// Narrows `candidates` by the request's body type and `Accept` header.
///
/// - A bodyless request skips the body check; so does a body without `Content-Type`.
/// - A candidate that declares no consumes accepts any body; one that does must accept the
///   media type (parameters such as charset ignored; declared wildcards and `+json` /
///   `+xml` suffixes honoured). None left → [`NegotiationError::UnsupportedMediaType`].
/// - No or empty `Accept` keeps every remaining candidate. Otherwise each candidate scores the
///   best quality among what it produces (one that declares nothing scores the header's
///   highest quality) and the best-scoring candidates (score > 0) are kept, so ties keep
///   weighting among all equally good ones. None → [`NegotiationError::NotAcceptable`].
pub fn negotiate<C: Negotiable>(
    candidates: &[C],
    content_type: Option<&str>,
    has_body: bool,
    accept: Option<&str>,
) -> Result<Selection, NegotiationError> {
    let mut kept: Option<Vec<usize>> = None;
    if has_body {
        if let Some(actual) = content_type.and_then(MediaType::parse) {
            let consumers: Vec<usize> = candidates
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    c.consumes().is_empty() || c.consumes().iter().any(|d| d.accepts(&actual))
                })
                .map(|(i, _)| i)
                .collect();
            if consumers.is_empty() {
                return Err(NegotiationError::UnsupportedMediaType);
            }
            if consumers.len() < candidates.len() {
                kept = Some(consumers);
            }
        }
    }
    let accept = accept.map(str::trim).filter(|a| !a.is_empty());
    if let Some(accept) = accept {
        let ranges = parse_accept(accept);
        if !ranges.is_empty() {
            let top = ranges.iter().map(|r| r.q).fold(0.0f32, f32::max);
            let indices: Vec<usize> = kept
                .clone()
                .unwrap_or_else(|| (0..candidates.len()).collect());
            let scores: Vec<(usize, f32)> = indices
                .iter()
                .map(|&i| {
                    let produces = candidates[i].produces();
                    let score = if produces.is_empty() {
                        top
                    } else {
                        produces
                            .iter()
                            .map(|p| quality(&ranges, p))
                            .fold(0.0f32, f32::max)
                    };
                    (i, score)
                })
                .collect();
            let best = scores.iter().map(|(_, s)| *s).fold(0.0f32, f32::max);
            if best <= 0.0 {
                return Err(NegotiationError::NotAcceptable);
            }
            let winners: Vec<usize> = scores
                .iter()
                .filter(|(_, s)| *s == best)
                .map(|(i, _)| *i)
                .collect();
            if winners.len() < candidates.len() {
                kept = Some(winners);
            } else {
                kept = None;
            }
        }
    }
    Ok(match kept {
        Some(indices) => Selection::Subset(indices),
        None => Selection::All,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct C(Vec<MediaType>, Vec<MediaType>);

    impl Negotiable for C {
        fn consumes(&self) -> &[MediaType] {
            &self.0
        }
        fn produces(&self) -> &[MediaType] {
            &self.1
        }
    }

    fn m(list: &[&str]) -> Vec<MediaType> {
        list.iter().map(|s| MediaType::parse(s).unwrap()).collect()
    }

    fn c(consumes: &[&str], produces: &[&str]) -> C {
        C(m(consumes), m(produces))
    }

    #[test]
    fn media_types_parse_and_match() {
        assert_eq!(
            MediaType::parse("Application/JSON; charset=utf-8")
                .unwrap()
                .as_str(),
            "application/json"
        );
        assert!(MediaType::parse("json").is_none());
        assert!(MediaType::parse("*/json").is_none());
        let json = MediaType::parse("application/json").unwrap();
        assert!(json.accepts(&MediaType::parse("application/vnd.api+json").unwrap()));
        assert!(MediaType::parse("application/*").unwrap().accepts(&json));
        assert!(!MediaType::parse("text/*").unwrap().accepts(&json));
    }

    #[test]
    fn consumes_rules() {
        let group = [
            c(&["application/json"], &[]),
            c(&[], &[]),
            c(&["text/*"], &[]),
        ];
        assert_eq!(
            negotiate(&group, Some("application/json; charset=utf-8"), true, None),
            Ok(Selection::Subset(vec![0, 1]))
        );
        assert_eq!(
            negotiate(&group, Some("text/plain"), true, None),
            Ok(Selection::Subset(vec![1, 2]))
        );
        assert_eq!(
            negotiate(&group, Some("image/png"), false, None),
            Ok(Selection::All),
            "bodyless skips"
        );
        assert_eq!(
            negotiate(&group, None, true, None),
            Ok(Selection::All),
            "no content type skips"
        );
        let strict = [c(&["application/json"], &[])];
        assert_eq!(
            negotiate(&strict, Some("text/plain"), true, None),
            Err(NegotiationError::UnsupportedMediaType)
        );
        assert_eq!(
            negotiate(&strict, Some("application/problem+json"), true, None),
            Ok(Selection::All)
        );
    }

    #[test]
    fn accept_rules() {
        let group = [
            c(&[], &["application/json"]),
            c(&[], &["application/xml"]),
            c(&[], &[]),
        ];
        assert_eq!(negotiate(&group, None, false, None), Ok(Selection::All));
        assert_eq!(negotiate(&group, None, false, Some("")), Ok(Selection::All));
        assert_eq!(
            negotiate(&group, None, false, Some("*/*")),
            Ok(Selection::All),
            "all tie"
        );
        assert_eq!(
            negotiate(&group, None, false, Some("application/xml")),
            Ok(Selection::Subset(vec![1, 2]))
        );
        assert_eq!(
            negotiate(
                &group,
                None,
                false,
                Some("application/xml;q=0.5, application/json")
            ),
            Ok(Selection::Subset(vec![0, 2]))
        );
        let declared = [c(&[], &["application/json"])];
        assert_eq!(
            negotiate(&declared, None, false, Some("text/html")),
            Err(NegotiationError::NotAcceptable)
        );
        assert_eq!(
            negotiate(
                &declared,
                None,
                false,
                Some("text/html, application/*;q=0.1")
            ),
            Ok(Selection::All)
        );
        assert_eq!(
            negotiate(&declared, None, false, Some("application/json;q=0")),
            Err(NegotiationError::NotAcceptable)
        );
        assert_eq!(
            negotiate(
                &declared,
                None,
                false,
                Some("application/*;q=0, application/json")
            ),
            Ok(Selection::All),
            "the most specific range decides"
        );
    }
}
