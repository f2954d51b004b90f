//! Query strings of the JSON endpoints: each endpoint names the parameters it takes, and
//! anything else (an unknown or repeated parameter, a malformed number) is a 400 with a
//! message saying what is wrong, never ignored.

use percent_encoding::percent_decode_str;

use super::ApiError;

/// Items a page holds when `limit` is not given.
pub(super) const PAGE_LIMIT_DEFAULT: usize = 100;
/// The largest `limit` accepted.
pub(super) const PAGE_LIMIT_MAX: usize = 1_000;
/// The longest query string accepted, in bytes.
const QUERY_MAX_BYTES: usize = 4_096;

/// The parameters of one request.
#[derive(Debug, Default)]
pub(super) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses `raw` (without the `?`), accepting only the names in `allowed`.
    pub(super) fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self, ApiError> {
        let raw = raw.unwrap_or("");
        if raw.len() > QUERY_MAX_BYTES {
            return Err(ApiError::bad_request(format!(
                "the query string is longer than {QUERY_MAX_BYTES} bytes"
            )));
        }
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            let (key, value) = (decode(key)?, decode(value)?);
            if !allowed.contains(&key.as_str()) {
                let allowed = if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                };
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter '{key}' (this endpoint takes: {allowed})"
                )));
            }
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(ApiError::bad_request(format!(
                    "query parameter '{key}' is given twice"
                )));
            }
            pairs.push((key, value));
        }
        Ok(Self { pairs })
    }

    /// The value of `key`, if given.
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `offset` and `limit`.
    pub(super) fn page(&self) -> Result<Page, ApiError> {
        let offset = match self.get("offset") {
            None => 0,
            Some(text) => number(text, "offset")?,
        };
        let limit = match self.get("limit") {
            None => PAGE_LIMIT_DEFAULT,
            Some(text) => number(text, "limit")?,
        };
        if limit == 0 || limit > PAGE_LIMIT_MAX {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {PAGE_LIMIT_MAX}, not {limit}"
            )));
        }
        Ok(Page { offset, limit })
    }
}

fn number(text: &str, name: &str) -> Result<usize, ApiError> {
    let valid = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    valid.then(|| text.parse().ok()).flatten().ok_or_else(|| {
        ApiError::bad_request(format!(
            "{name} must be a non-negative integer, not '{text}'"
        ))
    })
}

/// Percent-decodes one key or value (`+` is a space, as HTML forms send it).
fn decode(text: &str) -> Result<String, ApiError> {
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::bad_request("the query string is not valid UTF-8"))
}

/// Which slice of a listing to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Page {
    /// Items skipped.
    pub(super) offset: usize,
    /// Items answered at most.
    pub(super) limit: usize,
}

impl Page {
    /// The page's items of `items` (already in their stable order), and the total.
    pub(super) fn take<T>(&self, items: Vec<T>) -> (usize, Vec<T>) {
        let total = items.len();
        let page = items
            .into_iter()
            .skip(self.offset)
            .take(self.limit)
            .collect();
        (total, page)
    }

    /// The listing's JSON: `total`, `offset`, `limit` and the items under `key`.
    pub(super) fn body(
        &self,
        key: &str,
        total: usize,
        items: Vec<serde_json::Value>,
    ) -> serde_json::Value {
        let mut body = serde_json::json!({
            "total": total,
            "offset": self.offset,
            "limit": self.limit,
        });
        body[key] = serde_json::Value::Array(items);
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(result: Result<impl std::fmt::Debug, ApiError>) -> String {
        result.expect_err("an error").message
    }

    #[test]
    fn pages_default_and_bounds() {
        let page = Params::parse(None, &["offset", "limit"])
            .unwrap()
            .page()
            .unwrap();
        assert_eq!((page.offset, page.limit), (0, PAGE_LIMIT_DEFAULT));
        let page = Params::parse(Some("offset=5&limit=2"), &["offset", "limit"])
            .unwrap()
            .page()
            .unwrap();
        assert_eq!(page.take((0..10).collect()), (10, vec![5, 6]));
        assert_eq!(
            page.take(vec![1, 2]),
            (2, Vec::<i32>::new()),
            "past the end"
        );
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=-1",
            "offset=x",
            "offset=",
            "limit=1.5",
            "offset=99999999999999999999999",
        ] {
            let params = Params::parse(Some(bad), &["offset", "limit"]).unwrap();
            let message = error(params.page());
            assert!(
                message.contains("limit") || message.contains("offset"),
                "{bad}: {message}"
            );
        }
    }

    #[test]
    fn unknown_repeated_and_undecodable_parameters_are_refused() {
        let message = error(Params::parse(Some("offest=1"), &["offset", "limit"]));
        assert!(
            message.contains("'offest'") && message.contains("offset, limit"),
            "{message}"
        );
        let message = error(Params::parse(Some("a=1"), &[]));
        assert!(message.contains("takes: none"), "{message}");
        let message = error(Params::parse(Some("limit=1&limit=2"), &["limit"]));
        assert!(message.contains("twice"), "{message}");
        let message = error(Params::parse(Some("prefix=%FF"), &["prefix"]));
        assert!(message.contains("UTF-8"), "{message}");
        let long = format!("prefix={}", "a".repeat(QUERY_MAX_BYTES));
        assert!(error(Params::parse(Some(&long), &["prefix"])).contains("longer"));
    }

    #[test]
    fn values_are_percent_decoded() {
        let params = Params::parse(Some("prefix=a%2Fb+c&realm="), &["prefix", "realm"]).unwrap();
        assert_eq!(params.get("prefix"), Some("a/b c"));
        assert_eq!(params.get("realm"), Some(""));
        assert_eq!(params.get("other"), None);
    }
}
