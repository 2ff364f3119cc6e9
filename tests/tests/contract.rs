//! One route table (DESIGN §2, issue 4): template.yaml's HttpApi events, the router's
//! `Route::ALL` and openapi.yaml's operations are the same list; every function in the
//! template has a binary in functions/src/bin/ (and every binary is deployed); every
//! function has an events/ fixture and an events/env.json entry.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use capy_shared::api::Route;
use serde_yaml::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn yaml(name: &str) -> Value {
    let text = std::fs::read_to_string(workspace_root().join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A plain string, or `None` for anything else (a `!Ref`/`!Sub` comes through as a tagged value).
fn s(v: &Value) -> Option<&str> {
    v.as_str()
}

struct Function {
    logical_id: String,
    binary: String,
    /// (METHOD, path) of each HttpApi event.
    http: Vec<(String, String)>,
}

fn template_functions() -> Vec<Function> {
    let t = yaml("template.yaml");
    let resources = t["Resources"].as_mapping().expect("Resources");
    let mut out = Vec::new();
    for (id, res) in resources {
        if s(&res["Type"]) != Some("AWS::Serverless::Function") {
            continue;
        }
        let logical_id = s(id).expect("logical id").to_owned();
        assert_eq!(
            s(&res["Metadata"]["BuildMethod"]),
            Some("rust-cargolambda"),
            "{logical_id}: BuildMethod"
        );
        let binary = s(&res["Metadata"]["BuildProperties"]["Binary"])
            .unwrap_or_else(|| panic!("{logical_id}: Metadata.BuildProperties.Binary"))
            .to_owned();
        let mut http = Vec::new();
        if let Some(events) = res["Properties"]["Events"].as_mapping() {
            for (name, ev) in events {
                match s(&ev["Type"]) {
                    Some("HttpApi") => {
                        let p = &ev["Properties"];
                        let method = s(&p["Method"])
                            .unwrap_or_else(|| panic!("{logical_id}.{name:?}: Method"))
                            .to_uppercase();
                        let path = s(&p["Path"])
                            .unwrap_or_else(|| panic!("{logical_id}.{name:?}: Path"))
                            .to_owned();
                        assert_eq!(
                            s(&p["PayloadFormatVersion"]),
                            Some("2.0"),
                            "{logical_id}: payload 2.0 (lambda_http apigw_http)"
                        );
                        http.push((method, path));
                    }
                    Some("Api") => {
                        panic!("{logical_id}: REST `Api` events are not served; use HttpApi")
                    }
                    _ => {}
                }
            }
        }
        out.push(Function {
            logical_id,
            binary,
            http,
        });
    }
    assert!(!out.is_empty(), "template.yaml has functions");
    out
}

fn router_routes() -> BTreeSet<(String, String)> {
    Route::ALL
        .iter()
        .map(|r| (r.method().as_str().to_owned(), r.path()))
        .collect()
}

fn bins() -> BTreeSet<String> {
    let dir = workspace_root().join("functions/src/bin");
    std::fs::read_dir(&dir)
        .expect("functions/src/bin")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| p.file_stem().expect("stem").to_string_lossy().into_owned())
        .collect()
}

#[test]
fn template_routes_equal_router_routes() {
    let mut template = BTreeSet::new();
    for f in template_functions() {
        for route in &f.http {
            assert!(
                template.insert(route.clone()),
                "{route:?} is served by two functions"
            );
        }
    }
    assert_eq!(
        template,
        router_routes(),
        "template.yaml HttpApi events vs Route::ALL"
    );
}

#[test]
fn openapi_operations_equal_router_routes() {
    let doc = yaml("openapi.yaml");
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_mapping().expect("paths") {
        let path = s(path).expect("path");
        for (method, _) in item.as_mapping().expect("path item") {
            let method = s(method).expect("key");
            if HTTP_METHODS.contains(&method) {
                ops.insert((method.to_uppercase(), path.to_owned()));
            }
        }
    }
    assert_eq!(
        ops,
        router_routes(),
        "openapi.yaml operations vs Route::ALL"
    );
}

#[test]
fn each_route_is_served_by_its_own_function() {
    let functions = template_functions();
    for route in Route::ALL {
        let key = (route.method().as_str().to_owned(), route.path());
        let f = functions
            .iter()
            .find(|f| f.http.contains(&key))
            .unwrap_or_else(|| panic!("no function serves {key:?}"));
        assert_eq!(
            f.binary,
            route.function(),
            "{key:?} is served by {} ({})",
            f.logical_id,
            f.binary
        );
        assert_eq!(f.http.len(), 1, "{}: one route per function", f.logical_id);
    }
}

#[test]
fn every_template_function_has_a_binary_and_every_binary_is_deployed() {
    let functions = template_functions();
    let deployed: BTreeSet<String> = functions.iter().map(|f| f.binary.clone()).collect();
    assert_eq!(
        deployed.len(),
        functions.len(),
        "two functions share a binary"
    );
    assert_eq!(
        deployed,
        bins(),
        "template.yaml Binary names vs functions/src/bin/*.rs"
    );
}

#[test]
fn every_function_has_a_fixture_and_an_env_json_entry() {
    let env: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("events/env.json"))
            .expect("events/env.json"),
    )
    .expect("env.json is JSON");
    for f in template_functions() {
        let fixture = workspace_root()
            .join("events")
            .join(format!("{}.json", f.binary));
        let text = std::fs::read_to_string(&fixture)
            .unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
        let event: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
        if let [(method, path)] = f.http.as_slice() {
            assert_eq!(
                event["routeKey"],
                format!("{method} {path}"),
                "{}: fixture routeKey",
                fixture.display()
            );
        }
        assert!(
            env[&f.logical_id].is_object(),
            "events/env.json has no {} entry",
            f.logical_id
        );
    }
}
