//! The customer portal's static files under `/portal/`, as `capy serve` serves them: the built
//! single-page app from `CAPY_PORTAL_DIR` (default `portal/dist`, built by `make portal`), its
//! `index.html` for `/portal/` and every screen's path, and the security headers it needs
//! (a CSP with no inline script, `frame-ancestors` from `PORTAL_FRAME_ANCESTORS`). The rules
//! are `capy_shared::portal_assets`'s, shared with the `portal` Lambda function; this file is
//! their file lookup on disk.

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use capy_shared::portal_assets::{self, Reply};
use http::{HeaderValue, Method, StatusCode};
use http_body_util::Full;

const DEFAULT_DIR: &str = "portal/dist";

/// The file a request path names inside the portal directory, or `None` when the path could
/// leave it (`portal_assets::is_safe`). Only `Normal` components are joined, so the result is
/// always under `root`.
pub fn resolve(root: &Path, rel: &str) -> Option<PathBuf> {
    if !portal_assets::is_safe(rel) {
        return None;
    }
    let mut out = root.to_path_buf();
    for seg in rel.split('/') {
        let mut comps = Path::new(seg).components();
        match (comps.next(), comps.next()) {
            (Some(Component::Normal(c)), None) => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

/// The regular file at `rel` under `root`, read; `None` when it is missing, not a file, or
/// (defence in depth: symlinks resolved) not inside the real root.
fn read_under(root: &Path, rel: &str) -> Option<Bytes> {
    let file = resolve(root, rel)?;
    if !file.is_file() {
        return None;
    }
    let inside = match (std::fs::canonicalize(&file), std::fs::canonicalize(root)) {
        (Ok(f), Ok(r)) => f.starts_with(r),
        _ => false,
    };
    if !inside {
        return None;
    }
    match std::fs::read(&file) {
        Ok(b) => Some(Bytes::from(b)),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "portal file unreadable");
            None
        }
    }
}

/// Serves one request for `/portal` or `/portal/...` from the directory `root`, by the
/// shared rules (`capy_shared::portal_assets`).
pub fn serve_from(root: &Path, method: &Method, path: &str, frame_ancestors: &str) -> Reply {
    portal_assets::serve(
        method,
        path,
        frame_ancestors,
        |rel| read_under(root, rel),
        || {
            Reply::json_error(
                StatusCode::NOT_FOUND,
                &format!(
                    "the portal is not built: run `make portal` (looked for {})",
                    root.join("index.html").display()
                ),
            )
        },
    )
}

/// `serve_http`'s entry for `/portal` and `/portal/...`.
pub fn serve(method: &Method, path: &str) -> hyper::Response<Full<Bytes>> {
    let root = std::env::var("CAPY_PORTAL_DIR")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_DIR.into());
    let frame_ancestors = portal_assets::frame_ancestors_from_env();
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
    use http::header;

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
}
