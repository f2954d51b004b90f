//! `GET /`: the status page, one static HTML file (`status.html`: inline CSS and JS, no
//! external resource) embedded in the binary. It holds no data: the browser fetches it from
//! `/api/v1/events` (live) or `/api/v1/status` (polled), and `/api/v1/sessions`, with the
//! token when one is configured. So the page itself is served without the token.
//!
//! The Content-Security-Policy allows exactly the page's one `<script>` and one `<style>`
//! (by their SHA-256, computed once from the embedded file), requests to this listener
//! only, and no framing.

use std::sync::{Arc, OnceLock};

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::Admin;

/// The page.
const PAGE: &str = include_str!("status.html");

/// The routes of this module (open: the page holds no data).
pub(super) fn routes() -> axum::Router<Arc<Admin>> {
    axum::Router::new().route("/", get(page))
}

/// `GET /`.
async fn page() -> Response {
    let mut response = PAGE.into_response();
    let headers = response.headers_mut();
    let fixed = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if let Ok(policy) = HeaderValue::from_str(content_security_policy()) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

/// The page's policy (computed on first use).
fn content_security_policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        let script = element_hash(PAGE, "script");
        let style = element_hash(PAGE, "style");
        format!(
            "default-src 'none'; script-src '{script}'; style-src '{style}'; \
             connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'"
        )
    })
}

/// `sha256-<base64>` of the text of the first `<tag>` element of `html` (what a CSP hash
/// source covers); of nothing when there is none (the policy then blocks it, loudly).
fn element_hash(html: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let text = html
        .split_once(open.as_str())
        .and_then(|(_, rest)| rest.split_once(close.as_str()))
        .map_or("", |(text, _)| text);
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_one_script_and_one_style_and_no_outside_resource() {
        for tag in ["script", "style"] {
            assert_eq!(PAGE.matches(&format!("<{tag}")).count(), 1, "{tag}");
        }
        for outside in [
            "http://",
            "https://",
            "//cdn",
            "src=\"",
            "<link rel=\"stylesheet",
        ] {
            assert!(!PAGE.contains(outside), "{outside}");
        }
    }

    #[test]
    fn the_policy_names_the_hashes_of_the_script_and_the_style() {
        let policy = content_security_policy();
        let empty = element_hash("", "script");
        assert_ne!(element_hash(PAGE, "script"), empty);
        assert_ne!(element_hash(PAGE, "style"), empty);
        assert!(policy.contains(&element_hash(PAGE, "script")), "{policy}");
        assert!(policy.contains(&element_hash(PAGE, "style")), "{policy}");
        let tiny = "<style>a{}</style><script>x()</script>";
        let expected = Sha256::digest(b"x()");
        let expected = base64::engine::general_purpose::STANDARD.encode(expected);
        assert_eq!(element_hash(tiny, "script"), format!("sha256-{expected}"));
    }
}
