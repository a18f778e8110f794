//! What every request to a receiver shares, deliveries and validation handshakes alike:
//! the guarded client, answers read only so far, errors told without the URL.

use std::time::Duration;

/// How much of a receiver's answer the delivery log keeps.
pub(crate) const EXCERPT_BYTES: usize = 512;
/// How much of a receiver's answer is read at most (the excerpt, a `validationResponse`);
/// the rest is never read: the connection is dropped with it.
pub(crate) const ANSWER_BYTES: usize = 4096;

/// The HTTP client receivers are reached with: every connection's address checked by
/// the policy (DNS rebinding included), no redirects followed.
pub(crate) fn client(policy: crate::AddressPolicy, idle_per_host: usize) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .dns_resolver(crate::address_guard::GuardedResolver::shared(policy))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(idle_per_host)
        .build()
}

/// Reads at most `limit` bytes of an answer's body, for at most `wait`, and drops the
/// rest unread (and the connection with it): a receiver that streams without end, or
/// never finishes, costs no more than that.
pub(crate) async fn read_answer(mut response: reqwest::Response, limit: usize, wait: Duration) -> String {
    let mut body = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while body.len() < limit {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// What went wrong with a request that got no answer, with the whole chain of causes
/// (refused, reset, or the address guard), without the URL: its query may hold a secret.
pub(crate) fn describe(error: reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("no answer within {} s", timeout.as_secs_f64());
    }
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    message
}

/// The start of a receiver's answer, cut at a character boundary.
pub(crate) fn excerpt(text: &str) -> &str {
    let mut end = text.len().min(EXCERPT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
