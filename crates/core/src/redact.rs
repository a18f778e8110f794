//! Secrets out of URLs before they are shown or logged.
//!
//! Webhook URLs often carry a secret: the `?code=` of an Azure Function, a token in the
//! query, a `user:password@` before the host. Event Grid shows such an endpoint as its
//! `endpointBaseUrl`, the URL without query; the full URL is given only on request. The
//! same cut applies to any text that may quote a URL (an HTTP client's error, a log
//! line), so that a message about an endpoint never carries its secret.
//!
//! ```
//! use mlgrid_core::redact::{endpoint_base_url, redact_urls};
//!
//! assert_eq!(
//!     endpoint_base_url("https://fn.example/api/hook?code=s3cret"),
//!     "https://fn.example/api/hook"
//! );
//! assert_eq!(
//!     redact_urls("error sending request for url (https://u:pw@x.example/h?code=1): refused"),
//!     "error sending request for url (https://x.example/h): refused"
//! );
//! ```

/// The URL without its query, fragment and userinfo: scheme, host, port and path, as
/// written. Text that is not an absolute URL loses its query and fragment all the same.
pub fn endpoint_base_url(url: &str) -> String {
    let url = url.trim();
    // Query and fragment end the path; whatever follows them is dropped.
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..end];
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find('/')
        .map_or(url.len(), |i| authority_start + i);
    // The last `@` of the authority ends the userinfo (a password may hold another `@`).
    match url[authority_start..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..authority_start], &url[authority_start + at + 1..]),
        None => url.to_owned(),
    }
}

/// `text` with every http or https URL in it cut to its [`endpoint_base_url`]. A URL
/// runs from its scheme to the first whitespace, quote, angle bracket, backtick or
/// closing parenthesis.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = find_url(rest) {
        out.push_str(&rest[..start]);
        let url = &rest[start..];
        let len = url
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | ')'))
            .unwrap_or(url.len());
        out.push_str(&endpoint_base_url(&url[..len]));
        rest = &url[len..];
    }
    out.push_str(rest);
    out
}

/// Where the first `http://` or `https://` (in any case) starts.
fn find_url(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    [lower.find("http://"), lower.find("https://")]
        .into_iter()
        .flatten()
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_url_keeps_scheme_host_port_and_path() {
        for (url, base) in [
            (
                "https://fn.example/api/hook?code=abc==&clientId=x",
                "https://fn.example/api/hook",
            ),
            ("http://127.0.0.1:8080/hook#frag", "http://127.0.0.1:8080/hook"),
            ("https://user:p@ss@r.example:8443/a/b?x", "https://r.example:8443/a/b"),
            ("https://user@r.example", "https://r.example"),
            ("https://r.example/path@with-at?q=1", "https://r.example/path@with-at"),
            ("https://[::1]:9000/h?code=1", "https://[::1]:9000/h"),
            ("https://r.example/plain", "https://r.example/plain"),
            ("not a url?secret=1", "not a url"),
        ] {
            assert_eq!(endpoint_base_url(url), base, "{url}");
        }
    }

    #[test]
    fn urls_in_text_lose_their_secrets_and_the_rest_stays() {
        for (text, redacted) in [
            (
                "error sending request for url (https://fn.example/h?code=s3cret)",
                "error sending request for url (https://fn.example/h)",
            ),
            (
                "`HTTPS://a.example/x?k=1` and \"http://u:p@b.example/y?k=2\" failed",
                "`HTTPS://a.example/x` and \"http://b.example/y\" failed",
            ),
            ("no URL here? none", "no URL here? none"),
            ("ends with http://c.example/?t=1", "ends with http://c.example/"),
            ("", ""),
        ] {
            assert_eq!(redact_urls(text), redacted, "{text}");
        }
    }

    #[test]
    fn redaction_never_leaves_a_query_behind() {
        let secret = "code=TOPSECRET";
        for text in [
            format!("http://x/?{secret}"),
            format!("see https://x/a?{secret} and https://y/b?{secret}"),
            format!("https://x/a#{secret}"),
            format!("https://{secret}@x/a"),
        ] {
            assert!(!redact_urls(&text).contains("TOPSECRET"), "{text}");
        }
    }
}
