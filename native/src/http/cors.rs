//! CORS for the Engine.IO paths: which browser origins may call the server, and the
//! response headers that say so.
//!
//! Three policies. No configured origin: no CORS headers at all, so only same-origin pages
//! can use the polling transport (WebSocket is not subject to CORS). `*`: any origin, but
//! without credentials, as the CORS rules demand of a wildcard. A list: the request's
//! `Origin` is echoed when it is on the list, with credentials allowed and `Vary: Origin`
//! so caches keep answers for different origins apart.

use hyper::header::{
    HeaderMap, HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    HOST, ORIGIN, VARY,
};

/// Methods a browser may use on the Engine.IO path.
const ALLOW_METHODS: &str = "GET, POST, OPTIONS";
/// How long a browser may cache a preflight answer, in seconds (browsers cap it lower).
const MAX_AGE: &str = "86400";

/// Which origins may make cross-origin requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Cors {
    /// No CORS headers: same-origin pages only.
    #[default]
    SameOrigin,
    /// `Access-Control-Allow-Origin: *`, without credentials.
    Any,
    /// These origins (`scheme://host[:port]`), with credentials.
    Origins(Vec<String>),
}

impl Cors {
    /// The policy for the configured `--cors-origin` values: none → same origin only,
    /// any `*` → any origin, else exactly the list. A trailing `/` is ignored, since
    /// browsers never send one in `Origin`.
    #[must_use]
    pub fn from_origins(origins: &[String]) -> Cors {
        let list: Vec<String> =
            origins.iter().map(|o| o.trim().trim_end_matches('/').to_owned()).filter(|o| !o.is_empty()).collect();
        if list.iter().any(|o| o == "*") {
            Cors::Any
        } else if list.is_empty() {
            Cors::SameOrigin
        } else {
            Cors::Origins(list)
        }
    }

    /// Whether a WebSocket upgrade with these headers may go on: one without `Origin` (not
    /// from a browser), from the server's own origin (`Origin`'s host is the `Host`), or
    /// from an origin the policy allows.
    pub fn allows_websocket(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(ORIGIN) else { return true };
        if matches!(self, Cors::Any) {
            return true;
        }
        let Ok(text) = origin.to_str() else { return false };
        let host = headers.get(HOST).and_then(|h| h.to_str().ok());
        let authority = text.split_once("://").map(|(_, rest)| rest);
        if authority.is_some_and(|a| host.is_some_and(|h| a.eq_ignore_ascii_case(h))) {
            return true;
        }
        self.allow_origin(Some(origin)).is_some()
    }

    /// The value of `Access-Control-Allow-Origin` for a request from `origin`, if allowed.
    fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match self {
            Cors::SameOrigin => None,
            Cors::Any => Some(HeaderValue::from_static("*")),
            Cors::Origins(list) => {
                let origin = origin?;
                let text = origin.to_str().ok()?;
                // Scheme and host are case-insensitive; browsers send them lower-case anyway.
                list.iter().any(|o| o.eq_ignore_ascii_case(text)).then(|| origin.clone())
            }
        }
    }

    /// Adds the CORS headers for an actual (non-preflight) request to `response`.
    pub fn apply(&self, request: &HeaderMap, response: &mut HeaderMap) {
        if let Cors::Origins(_) = self {
            response.append(VARY, HeaderValue::from_static("Origin"));
        }
        let Some(allow) = self.allow_origin(request.get(ORIGIN)) else {
            return;
        };
        response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        if let Cors::Origins(_) = self {
            response.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
    }

    /// Adds the headers that answer a preflight `OPTIONS` request to `response`.
    pub fn apply_preflight(&self, request: &HeaderMap, response: &mut HeaderMap) {
        if let Cors::Origins(_) = self {
            response.append(VARY, HeaderValue::from_static("Origin, Access-Control-Request-Headers"));
        }
        if self.allow_origin(request.get(ORIGIN)).is_none() {
            return;
        }
        self.apply(request, response);
        response.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOW_METHODS));
        if let Some(asked) = request.get(ACCESS_CONTROL_REQUEST_HEADERS) {
            response.insert(ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
        }
        response.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origin: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(o) = origin {
            h.insert(ORIGIN, HeaderValue::from_static(o));
        }
        h
    }

    fn list(items: &[&str]) -> Cors {
        Cors::from_origins(&items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn no_configured_origin_sends_no_cors_headers() {
        let mut resp = HeaderMap::new();
        Cors::SameOrigin.apply(&request(Some("https://a.example")), &mut resp);
        Cors::SameOrigin.apply_preflight(&request(Some("https://a.example")), &mut resp);
        assert!(resp.is_empty());
    }

    #[test]
    fn star_allows_any_origin_without_credentials() {
        let cors = list(&["*"]);
        assert_eq!(cors, Cors::Any);
        let mut resp = HeaderMap::new();
        cors.apply(&request(Some("https://a.example")), &mut resp);
        assert_eq!(resp[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(resp.get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        assert!(resp.get(VARY).is_none());
    }

    #[test]
    fn listed_origin_is_echoed_with_credentials_and_vary() {
        let cors = list(&["https://a.example/", "https://b.example"]);
        let mut resp = HeaderMap::new();
        cors.apply(&request(Some("https://A.example")), &mut resp);
        assert_eq!(resp[ACCESS_CONTROL_ALLOW_ORIGIN], "https://A.example");
        assert_eq!(resp[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(resp[VARY], "Origin");
    }

    #[test]
    fn unlisted_or_missing_origin_gets_only_vary() {
        let cors = list(&["https://a.example"]);
        for origin in [Some("https://evil.example"), None] {
            let mut resp = HeaderMap::new();
            cors.apply(&request(origin), &mut resp);
            assert!(resp.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
            assert_eq!(resp[VARY], "Origin");
        }
    }

    #[test]
    fn preflight_echoes_requested_headers_and_lists_methods() {
        let cors = list(&["https://a.example"]);
        let mut req = request(Some("https://a.example"));
        req.insert(ACCESS_CONTROL_REQUEST_HEADERS, HeaderValue::from_static("content-type, x-token"));
        let mut resp = HeaderMap::new();
        cors.apply_preflight(&req, &mut resp);
        assert_eq!(resp[ACCESS_CONTROL_ALLOW_ORIGIN], "https://a.example");
        assert_eq!(resp[ACCESS_CONTROL_ALLOW_METHODS], "GET, POST, OPTIONS");
        assert_eq!(resp[ACCESS_CONTROL_ALLOW_HEADERS], "content-type, x-token");
        assert_eq!(resp[ACCESS_CONTROL_MAX_AGE], "86400");
        assert_eq!(resp[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    }

    #[test]
    fn preflight_from_unlisted_origin_allows_nothing() {
        let cors = list(&["https://a.example"]);
        let mut resp = HeaderMap::new();
        cors.apply_preflight(&request(Some("https://evil.example")), &mut resp);
        assert!(resp.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert!(resp.get(ACCESS_CONTROL_ALLOW_METHODS).is_none());
    }

    #[test]
    fn empty_entries_mean_same_origin() {
        assert_eq!(list(&[" ", ""]), Cors::SameOrigin);
    }
}
