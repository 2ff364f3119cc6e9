//! The customer portal's static files under `/portal/`, as `capy serve` serves them: the built
//! single-page app from `CAPY_PORTAL_DIR` (default `portal/dist`, built by `make portal`), its
//! `index.html` for `/portal/` and every screen's path, and the security headers it needs
//! (a CSP with no inline script, `frame-ancestors` from `PORTAL_FRAME_ANCESTORS`).

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::Full;

const PREFIX: &str = "/portal/";
const DEFAULT_DIR: &str = "portal/dist";

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

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
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

/// The file a request path names inside the portal directory, or `None` when the path could
/// leave it or names something the portal never holds: no `..`, `.` or empty segments, no
/// hidden files, no backslashes, no percent-escapes (the build's names never need one), no
/// NUL. Only `Normal` components are joined, so the result is always under `root`.
pub fn resolve(root: &Path, rel: &str) -> Option<PathBuf> {
    if rel.contains(['\\', '%', '\0']) {
        return None;
    }
    let mut out = root.to_path_buf();
    for seg in rel.split('/') {
        if seg.is_empty() || seg.starts_with('.') {
            return None;
        }
        let mut comps = Path::new(seg).components();
        match (comps.next(), comps.next()) {
            (Some(Component::Normal(c)), None) => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

/// What `serve` answers, before it becomes a hyper response (so tests read it directly).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(header::HeaderName, String)>,
    pub body: Bytes,
}

#[cfg(test)]
impl Reply {
    pub fn header(&self, name: &header::HeaderName) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn json_error(status: StatusCode, msg: &str) -> Reply {
    Reply {
        status,
        headers: vec![(header::CONTENT_TYPE, "application/json".into())],
        body: Bytes::from(serde_json::json!({ "error": msg }).to_string()),
    }
}

fn is_hashed_asset(rel: &str) -> bool {
    rel.starts_with("assets/")
}

/// Serves one request for `/portal` or `/portal/...` from `root`.
pub fn serve_from(root: &Path, method: &Method, path: &str, frame_ancestors: &str) -> Reply {
    if method != Method::GET && method != Method::HEAD {
        let mut r = json_error(
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
        return json_error(StatusCode::NOT_FOUND, "no such route");
    };
    let index = root.join("index.html");
    if !index.is_file() {
        return json_error(
            StatusCode::NOT_FOUND,
            &format!(
                "the portal is not built: run `make portal` (looked for {})",
                index.display()
            ),
        );
    }
    let rel = rel.trim_end_matches('/');
    // A file the build made, or index.html for the app's own screens (/portal/events/evt_1).
    // A missing asset is a 404, never the HTML page in its place.
    let file = if rel.is_empty() || rel == "index.html" {
        index.clone()
    } else {
        match resolve(root, rel) {
            None => return json_error(StatusCode::NOT_FOUND, "no such file"),
            Some(p) if p.is_file() => p,
            Some(_)
                if is_hashed_asset(rel)
                    || rel.rsplit('/').next().is_some_and(|s| s.contains('.')) =>
            {
                return json_error(StatusCode::NOT_FOUND, "no such file");
            }
            Some(_) => index.clone(),
        }
    };
    // Defence in depth: the real path (symlinks resolved) stays inside the real root.
    let inside = match (std::fs::canonicalize(&file), std::fs::canonicalize(root)) {
        (Ok(f), Ok(r)) => f.starts_with(r),
        _ => false,
    };
    if !inside {
        return json_error(StatusCode::NOT_FOUND, "no such file");
    }
    let body = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "portal file unreadable");
            return json_error(StatusCode::NOT_FOUND, "no such file");
        }
    };
    let cache = if file != index && is_hashed_asset(rel) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let headers = vec![
        (header::CONTENT_TYPE, content_type(&file).into()),
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
            Bytes::from(body)
        },
    }
}

/// `serve_http`'s entry for `/portal` and `/portal/...`.
pub fn serve(method: &Method, path: &str) -> hyper::Response<Full<Bytes>> {
    let root = std::env::var("CAPY_PORTAL_DIR")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_DIR.into());
    let frame_ancestors =
        frame_ancestors_setting(std::env::var("PORTAL_FRAME_ANCESTORS").ok().as_deref());
    let reply = serve_from(Path::new(&root), method, path, &frame_ancestors);
    let mut resp = hyper::Response::new(Full::new(reply.body));
    *resp.status_mut() = reply.status;
    for (name, value) in reply.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A portal directory with an index, an asset and a secret file beside (outside) it.
    fn fixture() -> (PathBuf, PathBuf) {
        let base = std::env::temp_dir().join(format!(
            "capy-portal-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let root = base.join("dist");
        std::fs::create_dir_all(root.join("assets")).expect("mkdir");
        std::fs::write(
            root.join("index.html"),
            "<!doctype html><title>portal</title>",
        )
        .expect("index");
        std::fs::write(root.join("assets/index-abc123.js"), "console.log(1)").expect("js");
        std::fs::write(root.join("assets/index-abc123.css"), "body{}").expect("css");
        std::fs::write(root.join(".hidden"), "hidden").expect("hidden");
        std::fs::write(base.join("secret.txt"), "TOP SECRET").expect("secret");
        (base, root)
    }

    fn get(root: &Path, path: &str) -> Reply {
        serve_from(root, &Method::GET, path, "'none'")
    }

    #[test]
    fn index_assets_and_app_paths() {
        let (base, root) = fixture();
        let r = get(&root, "/portal/");
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.header(&header::CONTENT_TYPE),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(r.header(&header::CACHE_CONTROL), Some("no-cache"));
        assert!(r.body.starts_with(b"<!doctype html>"));
        let csp = r.header(&header::CONTENT_SECURITY_POLICY).expect("csp");
        assert!(csp.contains("script-src 'self'") && csp.ends_with("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe"));
        assert_eq!(r.header(&header::X_CONTENT_TYPE_OPTIONS), Some("nosniff"));
        assert_eq!(r.header(&header::REFERRER_POLICY), Some("no-referrer"));

        let js = get(&root, "/portal/assets/index-abc123.js");
        assert_eq!(js.status, StatusCode::OK);
        assert_eq!(
            js.header(&header::CONTENT_TYPE),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            js.header(&header::CACHE_CONTROL),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(&js.body[..], b"console.log(1)");
        assert_eq!(
            get(&root, "/portal/assets/index-abc123.css").header(&header::CONTENT_TYPE),
            Some("text/css; charset=utf-8")
        );

        // The app's own screens get index.html; a missing asset is a 404, not HTML.
        for p in [
            "/portal/endpoints/ep_1",
            "/portal/events/evt_1/",
            "/portal/index.html",
        ] {
            let r = get(&root, p);
            assert_eq!(r.status, StatusCode::OK, "{p}");
            assert!(r.body.starts_with(b"<!doctype html>"), "{p}");
        }
        assert_eq!(
            get(&root, "/portal/assets/gone-123.js").status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(&root, "/portal/robots.txt").status,
            StatusCode::NOT_FOUND
        );

        let redirect = get(&root, "/portal");
        assert_eq!(redirect.status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(redirect.header(&header::LOCATION), Some("/portal/"));

        let head = serve_from(&root, &Method::HEAD, "/portal/", "'none'");
        assert_eq!(head.status, StatusCode::OK);
        assert!(head.body.is_empty());
        let post = serve_from(&root, &Method::POST, "/portal/", "'none'");
        assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
        let _ = std::fs::remove_dir_all(base);
    }

    #[test]
    fn no_path_traversal() {
        let (base, root) = fixture();
        let attempts = [
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
        ];
        for p in attempts {
            let r = get(&root, p);
            assert!(
                !String::from_utf8_lossy(&r.body).contains("TOP SECRET")
                    && !String::from_utf8_lossy(&r.body).contains("hidden"),
                "{p} leaked a file"
            );
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{p}");
        }
        assert!(resolve(&root, "/etc/passwd").is_none());
        assert!(resolve(&root, "a/../../b").is_none());
        assert_eq!(
            resolve(&root, "assets/x.js"),
            Some(root.join("assets").join("x.js"))
        );

        // A symlink in the directory that points outside it is not followed out.
        #[cfg(unix)]
        {
            let link = root.join("assets/link.txt");
            if std::os::unix::fs::symlink(base.join("secret.txt"), &link).is_ok() {
                let r = get(&root, "/portal/assets/link.txt");
                assert_eq!(r.status, StatusCode::NOT_FOUND);
            }
        }
        let _ = std::fs::remove_dir_all(base);
    }

    #[test]
    fn missing_build_says_how_to_build_it() {
        let r = get(Path::new("/nonexistent/capy-portal-dist"), "/portal/");
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.header(&header::CONTENT_TYPE), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        assert!(
            body["error"]
                .as_str()
                .expect("error")
                .contains("make portal")
        );
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
    }
}
