//! Embeds the customer portal's build (`portal/dist`, made by `make portal`) into the
//! `portal` function: `$OUT_DIR/portal_files.rs` defines
//! `PORTAL_FILES: Option<&[(&str, &[u8])]>`, one `include_bytes!` per file (paths relative to
//! `portal/dist`, `/`-separated), or `None` when there is no `portal/dist/index.html` at build
//! time (the function then answers 503 saying so).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        // Regular files and directories only: a symlink is never followed into the artifact.
        if kind.is_dir() {
            walk(&path, base, out);
        } else if kind.is_file() {
            let rel = path
                .strip_prefix(base)
                .expect("under the build")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, path));
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let portal = manifest.join("../portal");
    let dist = portal.join("dist");
    println!("cargo::rerun-if-changed=build.rs");
    let mut code = String::from("/// The portal's build, embedded by build.rs.\n");
    if dist.join("index.html").is_file() {
        println!("cargo::rerun-if-changed={}", dist.display());
        let mut files = Vec::new();
        walk(&dist, &dist, &mut files);
        files.sort();
        code.push_str("pub static PORTAL_FILES: Option<&[(&str, &[u8])]> = Some(&[\n");
        for (rel, path) in &files {
            let abs = path.canonicalize().expect("canonical path");
            writeln!(
                code,
                "    ({rel:?}, include_bytes!({:?})),",
                abs.display().to_string()
            )
            .expect("write");
        }
        code.push_str("]);\n");
    } else {
        // Without a build, watch portal/ (a missing path would rerun this on every build,
        // and rebuild every binary): `make portal` creating dist/ changes it.
        if portal.is_dir() {
            println!("cargo::rerun-if-changed={}", portal.display());
        }
        code.push_str("pub static PORTAL_FILES: Option<&[(&str, &[u8])]> = None;\n");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("portal_files.rs");
    std::fs::write(out, code).expect("write portal_files.rs");
}
