//! How the customer portal's built files are served under `/portal/`, by `capy serve` (from
//! `portal/dist` on disk) and by the `portal` Lambda function (from the files embedded in its
//! binary) alike: pure functions of (method, path, a file lookup) → status, headers, body.
//!
//! - `/portal` → 308 to `/portal/` (the `#token=…` fragment survives it);
//! - `/portal/` and `/portal/index.html` → `index.html`, `Cache-Control: no-cache`;
//! - `/portal/assets/…` (Vite's content-hashed names) → the file,
//!   `public, max-age=31536000, immutable`;
//! - any other sub-path without a dot in its last segment (the app's own screens,
//!   `/portal/events/evt_1`) → `index.html`; a missing file (`…/gone.js`, `robots.txt`) → 404,
//!   never the HTML page in its place;
//! - a path that could leave the build (`..`, `.`, empty or hidden segments, `\`, `%`, NUL) → 404;
//! - every file answer carries the CSP (no inline script, `frame-ancestors` from
//!   `PORTAL_FRAME_ANCESTORS`), `X-Content-Type-Options: nosniff` and
//!   `Referrer-Policy: no-referrer`.

use bytes::Bytes;
use http::{Method, StatusCode, header};

pub const PREFIX: &str = "/portal/";

/// The CSP: scripts, styles and API calls from this origin only, no plugins, no forms posting
/// elsewhere, no `<base>`; images only from here or `data:` (the favicon placeholder).
pub fn content_security_policy(frame_ancestors: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors {frame_ancestors}"
    )
}

/// `PORTAL_FRAME_ANCESTORS` (e.g. `https://dashboard.example.com`), default `'none'`. A value
/// that could end the directive or the header (`;`, `,`, control characters) is refused in
/// favour of `'none'`.
pub fn frame_ancestors_setting(raw: Option<&str>) -> String {
    let v = raw.map(str::trim).unwrap_or("");
    if v.is_empty() {
        return "'none'".into();
    }
    if v.chars().any(|c| c == ';' || c == ',' || c.is_control()) {
        tracing::warn!(
            "PORTAL_FRAME_ANCESTORS holds ';', ',' or a control character; using 'none'"
        );
        return "'none'".into();
    }
    v.to_owned()
}

/// [`frame_ancestors_setting`] of this process's `PORTAL_FRAME_ANCESTORS`.
pub fn frame_ancestors_from_env() -> String {
    frame_ancestors_setting(std::env::var("PORTAL_FRAME_ANCESTORS").ok().as_deref())
}

/// The content type of a file, by its name's extension.
pub fn content_type(rel: &str) -> &'static str {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Whether a content type is text a JSON string can carry as is (the Lambda answers those as
/// text, everything else base64-encoded).
pub fn is_text(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || content_type.starts_with("application/json")
        || content_type.starts_with("image/svg+xml")
}

/// Whether a path relative to the build (`assets/index-abc.js`) is one the build could hold:
/// no `..`, `.` or empty segments, no hidden files, no backslashes, no percent-escapes (the
/// build's names never need one), no NUL, no drive or root prefix. Only such a path is ever
/// looked up, so a lookup that joins it to a directory stays inside that directory.
pub fn is_safe(rel: &str) -> bool {
    if rel.is_empty() || rel.contains(['\\', '%', '\0', ':']) {
        return false;
    }
    rel.split('/')
        .all(|seg| !seg.is_empty() && !seg.starts_with('.'))
}

/// What a portal request is answered with, before it becomes a hyper or Lambda response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(header::HeaderName, String)>,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &header::HeaderName) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `{"error": msg}` with `status`.
    pub fn json_error(status: StatusCode, msg: &str) -> Self {
        Self {
            status,
            headers: vec![(header::CONTENT_TYPE, "application/json".into())],
            body: Bytes::from(serde_json::json!({ "error": msg }).to_string()),
        }
    }
}

fn is_hashed_asset(rel: &str) -> bool {
    rel.starts_with("assets/")
}

/// Serves one request for `/portal` or `/portal/...`.
///
/// `file(rel)` is the build's file at `rel` (always a path [`is_safe`] accepted; `None` for
/// anything that is not a regular file of the build). When the build has no `index.html`,
/// the answer is `not_built()`.
pub fn serve(
    method: &Method,
    path: &str,
    frame_ancestors: &str,
    file: impl Fn(&str) -> Option<Bytes>,
    not_built: impl FnOnce() -> Reply,
) -> Reply {
    if method != Method::GET && method != Method::HEAD {
        let mut r = Reply::json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "the portal's files take GET or HEAD",
        );
        r.headers.push((header::ALLOW, "GET, HEAD".into()));
        return r;
    }
    if path == "/portal" {
        // The fragment (#token=…) survives a redirect without one in Location.
        return Reply {
            status: StatusCode::PERMANENT_REDIRECT,
            headers: vec![
                (header::LOCATION, PREFIX.into()),
                (header::CACHE_CONTROL, "no-cache".into()),
            ],
            body: Bytes::new(),
        };
    }
    let Some(rel) = path.strip_prefix(PREFIX) else {
        return Reply::json_error(StatusCode::NOT_FOUND, "no such route");
    };
    let Some(index) = file("index.html") else {
        return not_built();
    };
    let rel = rel.trim_end_matches('/');
    // A file the build made, or index.html for the app's own screens (/portal/events/evt_1).
    // A missing asset is a 404, never the HTML page in its place.
    let (name, body) = if rel.is_empty() || rel == "index.html" {
        ("index.html", index)
    } else if !is_safe(rel) {
        return Reply::json_error(StatusCode::NOT_FOUND, "no such file");
    } else {
        match file(rel) {
            Some(body) => (rel, body),
            None if is_hashed_asset(rel)
                || rel.rsplit('/').next().is_some_and(|s| s.contains('.')) =>
            {
                return Reply::json_error(StatusCode::NOT_FOUND, "no such file");
            }
            None => ("index.html", index),
        }
    };
    let cache = if name != "index.html" && is_hashed_asset(name) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let headers = vec![
        (header::CONTENT_TYPE, content_type(name).into()),
        (header::CACHE_CONTROL, cache.into()),
        (
            header::CONTENT_SECURITY_POLICY,
            content_security_policy(frame_ancestors),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
        (header::REFERRER_POLICY, "no-referrer".into()),
    ];
    Reply {
        status: StatusCode::OK,
        headers,
        body: if method == Method::HEAD {
            Bytes::new()
        } else {
            body
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A build in memory: an index and two hashed assets.
    fn files(rel: &str) -> Option<Bytes> {
        match rel {
            "index.html" => Some(Bytes::from_static(b"<!doctype html><title>portal</title>")),
            "assets/index-abc123.js" => Some(Bytes::from_static(b"console.log(1)")),
            "assets/index-abc123.css" => Some(Bytes::from_static(b"body{}")),
            "favicon.png" => Some(Bytes::from_static(b"\x89PNG")),
            _ => None,
        }
    }

    fn not_built() -> Reply {
        Reply::json_error(StatusCode::SERVICE_UNAVAILABLE, "not built")
    }

    fn get(path: &str) -> Reply {
        serve(&Method::GET, path, "'none'", files, not_built)
    }

    #[test]
    fn index_assets_and_app_paths() {
        let r = get("/portal/");
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.header(&header::CONTENT_TYPE),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(r.header(&header::CACHE_CONTROL), Some("no-cache"));
        assert!(r.body.starts_with(b"<!doctype html>"));
        let csp = r.header(&header::CONTENT_SECURITY_POLICY).expect("csp");
        assert_eq!(
            csp,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        );
        assert_eq!(r.header(&header::X_CONTENT_TYPE_OPTIONS), Some("nosniff"));
        assert_eq!(r.header(&header::REFERRER_POLICY), Some("no-referrer"));

        let js = get("/portal/assets/index-abc123.js");
        assert_eq!(js.status, StatusCode::OK);
        assert_eq!(
            js.header(&header::CONTENT_TYPE),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            js.header(&header::CACHE_CONTROL),
            Some("public, max-age=31536000, immutable")
        );
        assert!(js.header(&header::CONTENT_SECURITY_POLICY).is_some());
        assert_eq!(&js.body[..], b"console.log(1)");
        assert_eq!(
            get("/portal/assets/index-abc123.css").header(&header::CONTENT_TYPE),
            Some("text/css; charset=utf-8")
        );
        let png = get("/portal/favicon.png");
        assert_eq!(png.header(&header::CONTENT_TYPE), Some("image/png"));
        assert_eq!(png.header(&header::CACHE_CONTROL), Some("no-cache"));

        // The app's own screens get index.html; a missing asset is a 404, not HTML.
        for p in [
            "/portal/endpoints/ep_1",
            "/portal/events/evt_1/",
            "/portal/index.html",
        ] {
            let r = get(p);
            assert_eq!(r.status, StatusCode::OK, "{p}");
            assert!(r.body.starts_with(b"<!doctype html>"), "{p}");
            assert_eq!(r.header(&header::CACHE_CONTROL), Some("no-cache"), "{p}");
        }
        for p in ["/portal/assets/gone-123.js", "/portal/robots.txt"] {
            let r = get(p);
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{p}");
            assert_eq!(
                r.header(&header::CONTENT_TYPE),
                Some("application/json"),
                "{p}"
            );
        }
        assert_eq!(get("/v1/x").status, StatusCode::NOT_FOUND);

        let redirect = get("/portal");
        assert_eq!(redirect.status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(redirect.header(&header::LOCATION), Some("/portal/"));

        let head = serve(&Method::HEAD, "/portal/", "'none'", files, not_built);
        assert_eq!(head.status, StatusCode::OK);
        assert!(head.body.is_empty());
        let post = serve(&Method::POST, "/portal/", "'none'", files, not_built);
        assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.header(&header::ALLOW), Some("GET, HEAD"));
    }

    #[test]
    fn unsafe_paths_are_never_looked_up() {
        let looked_up = std::cell::RefCell::new(Vec::<String>::new());
        let spy = |rel: &str| {
            looked_up.borrow_mut().push(rel.to_owned());
            files(rel)
        };
        for p in [
            "/portal/../secret.txt",
            "/portal/assets/../../secret.txt",
            "/portal/./index.html",
            "/portal/%2e%2e/secret.txt",
            "/portal/..%2fsecret.txt",
            "/portal/%2E%2E%2Fsecret.txt",
            "/portal/..\\secret.txt",
            "/portal/assets/..\\..\\secret.txt",
            "/portal//etc/passwd",
            "/portal/assets//../../secret.txt",
            "/portal/.hidden",
            "/portal/...",
            "/portal/\0",
            "/portal/C:/x",
        ] {
            let r = serve(&Method::GET, p, "'none'", spy, not_built);
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{p}");
        }
        assert!(
            looked_up.borrow().iter().all(|rel| rel == "index.html"),
            "{:?}",
            looked_up.borrow()
        );
        assert!(is_safe("assets/x.js"));
        assert!(!is_safe("/etc/passwd"));
        assert!(!is_safe("a/../../b"));
        assert!(!is_safe(""));
    }

    #[test]
    fn a_build_without_index_answers_not_built() {
        let r = serve(&Method::GET, "/portal/", "'none'", |_| None, not_built);
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        // The redirect and the method check do not need the build.
        let r = serve(&Method::GET, "/portal", "'none'", |_| None, not_built);
        assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    }

    #[test]
    fn frame_ancestors_from_the_setting() {
        assert_eq!(frame_ancestors_setting(None), "'none'");
        assert_eq!(frame_ancestors_setting(Some("  ")), "'none'");
        assert_eq!(
            frame_ancestors_setting(Some("https://dash.example.com")),
            "https://dash.example.com"
        );
        assert_eq!(
            frame_ancestors_setting(Some("'self'; script-src *")),
            "'none'"
        );
        assert_eq!(
            frame_ancestors_setting(Some("a\r\nSet-Cookie: x")),
            "'none'"
        );
        assert!(
            content_security_policy("https://d.example")
                .ends_with("frame-ancestors https://d.example")
        );
        let r = serve(
            &Method::GET,
            "/portal/",
            "https://d.example",
            files,
            not_built,
        );
        assert!(
            r.header(&header::CONTENT_SECURITY_POLICY)
                .is_some_and(|c| c.ends_with("frame-ancestors https://d.example"))
        );
    }

    #[test]
    fn content_types_and_text() {
        assert_eq!(content_type("a/b.WOFF2"), "font/woff2");
        assert_eq!(content_type("noext"), "application/octet-stream");
        assert_eq!(content_type("x.y/z"), "application/octet-stream");
        assert!(is_text(content_type("a.js")) && is_text(content_type("a.svg")));
        assert!(!is_text(content_type("a.png")));
    }
}
