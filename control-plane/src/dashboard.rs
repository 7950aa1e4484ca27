//! `GET /dashboard`: the live dashboard, one self-contained HTML page (no
//! external script, style or font) that polls `/v1/graph` and draws the
//! service graph in inline SVG.
//!
//! The page itself holds no data and is served to anyone, like
//! `/v1/health`; everything it shows comes from `/v1/graph`, behind the
//! admin API's read access. A browser cannot put a bearer token on a
//! navigation, so the page takes it from the URL's fragment
//! (`/dashboard#token=...`, which browsers never send to the server nor
//! put in a `Referer`), keeps it in the tab's session storage, removes it
//! from the address bar, and sends it as `Authorization: Bearer` with each
//! poll; without one, it asks. A strict Content-Security-Policy allows
//! only the page's own inline script (by its hash) and requests to its
//! own origin, and the page writes workload-supplied names as text, never
//! as markup.

use crate::admin::Reply;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use std::sync::OnceLock;

const PAGE: &str = include_str!("dashboard.html");

/// The page's Content-Security-Policy, naming its inline script's hash.
fn policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        let script = PAGE
            .split_once("<script>")
            .and_then(|(_, rest)| rest.split_once("</script>"))
            .map_or("", |(script, _)| script);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, script.as_bytes());
        use base64::Engine as _;
        let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        format!(
            "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'"
        )
    })
}

/// The page.
pub(crate) fn page() -> Reply {
    let mut response = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(policy) = HeaderValue::from_str(policy()) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_policy_names_the_inline_script() {
        let policy = super::policy();
        assert!(policy.contains("script-src 'sha256-"), "{policy}");
        assert!(
            !super::PAGE.contains("http://") || super::PAGE.contains("http://www.w3.org/2000/svg")
        );
        assert!(!super::PAGE.contains("https://"), "no external resources");
    }
}
