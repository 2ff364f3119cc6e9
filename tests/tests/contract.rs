//! One route table (DESIGN §2, issue 4): template.yaml's HttpApi events, the router's
//! `Route::ALL` and openapi.yaml's operations are the same list; every function in the
//! template has a binary in functions/src/bin/ (and every binary is deployed): `api`, with
//! its CAPY_ROUTE, for each route; every function has an events/ fixture, and
//! events/env.json's `Parameters` cover what the functions point at.
//!
//! One table schema (issue 9): template.yaml's table is the one defined in
//! `capy_shared::adapters::dynamo::schema`, and the one `Table::ensure` (`capy serve`)
//! creates on moto.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use capy_shared::adapters::dynamo::{Table, schema};
use capy_shared::api::Route;
use serde_yaml::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// The one binary behind every route function.
const API_BINARY: &str = "api";

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
    /// The route an `api` function serves (its `CAPY_ROUTE`).
    route: Option<String>,
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
        let route =
            s(&res["Properties"]["Environment"]["Variables"]["CAPY_ROUTE"]).map(str::to_owned);
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
            route,
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

/// The one exception to "HttpApi events = `Route::ALL`": the customer portal's static files,
/// served by `PortalFunction` from its own binary (no `Route`, no openapi.yaml operation).
const PORTAL_STATIC_ROUTES: [(&str, &str); 2] = [("GET", "/portal"), ("GET", "/portal/{proxy+}")];

#[test]
fn template_routes_equal_router_routes() {
    let portal: BTreeSet<(String, String)> = PORTAL_STATIC_ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let mut template = BTreeSet::new();
    for f in template_functions() {
        for route in &f.http {
            assert!(
                template.insert(route.clone()),
                "{route:?} is served by two functions"
            );
        }
    }
    assert!(
        portal.is_subset(&template),
        "template.yaml serves the portal's {portal:?}"
    );
    let template: BTreeSet<_> = template.difference(&portal).cloned().collect();
    assert_eq!(
        template,
        router_routes(),
        "template.yaml HttpApi events (the portal's static routes aside) vs Route::ALL"
    );
}

#[test]
fn the_portal_static_routes_are_portal_functions_and_no_routes() {
    let functions = template_functions();
    let f = functions
        .iter()
        .find(|f| f.logical_id == "PortalFunction")
        .expect("template.yaml has PortalFunction");
    assert_eq!(f.binary, "portal");
    let mut served = f.http.clone();
    served.sort();
    let mut expected: Vec<(String, String)> = PORTAL_STATIC_ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    expected.sort();
    assert_eq!(served, expected, "PortalFunction's HttpApi events");
    let routes = router_routes();
    for route in &expected {
        assert!(!routes.contains(route), "{route:?} is also a Route");
    }
    // Read-only: no policy of its own (only the log permissions SAM gives every role).
    let t = yaml("template.yaml");
    let res = &t["Resources"]["PortalFunction"];
    assert!(
        res["Properties"]["Policies"].is_null(),
        "PortalFunction has policies"
    );
    assert!(
        res["Properties"]["Role"].is_null(),
        "PortalFunction has a role"
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
            (f.binary.as_str(), f.route.as_deref()),
            (API_BINARY, Some(route.function())),
            "{key:?} is served by {}",
            f.logical_id
        );
        assert_eq!(f.http.len(), 1, "{}: one route per function", f.logical_id);
    }
}

#[test]
fn every_template_function_has_a_binary_and_every_binary_is_deployed() {
    let functions = template_functions();
    let deployed: BTreeSet<String> = functions.iter().map(|f| f.binary.clone()).collect();
    assert_eq!(
        deployed,
        bins(),
        "template.yaml Binary names vs functions/src/bin/*.rs"
    );
    // `api` serves routes only, each function its own; every other binary one function.
    let mut routes = BTreeSet::new();
    for f in &functions {
        if f.binary == API_BINARY {
            let route = f
                .route
                .as_deref()
                .unwrap_or_else(|| panic!("{}: runs api without CAPY_ROUTE", f.logical_id));
            assert!(
                Route::from_function(route).is_some(),
                "{}: CAPY_ROUTE {route:?} is no route",
                f.logical_id
            );
            assert!(routes.insert(route), "two functions serve {route}");
        } else {
            assert_eq!(f.route, None, "{}: CAPY_ROUTE outside api", f.logical_id);
            assert_eq!(
                functions.iter().filter(|g| g.binary == f.binary).count(),
                1,
                "{} shares its binary",
                f.binary
            );
        }
    }
    assert_eq!(routes.len(), Route::ALL.len(), "a route without a function");
}

/// `sam local` reads events/env.json; its `Parameters` apply to every function (each gets the
/// ones its template entry declares), so a new function needs no entry of its own.
#[test]
fn every_function_has_a_fixture_and_env_json_covers_what_it_points_at() {
    let env: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("events/env.json"))
            .expect("events/env.json"),
    )
    .expect("env.json is JSON");
    let parameters = env["Parameters"].as_object().expect("env.json Parameters");
    let t = yaml("template.yaml");
    for f in template_functions() {
        let name = f.route.as_deref().unwrap_or(&f.binary);
        let fixture = workspace_root().join("events").join(format!("{name}.json"));
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
        // What names a resource of the stack (a queue, the table) must point at the local one.
        let vars = t["Resources"][f.logical_id.as_str()]["Properties"]["Environment"]["Variables"]
            .as_mapping()
            .cloned()
            .unwrap_or_default();
        for (var, value) in vars {
            let var = s(&var).expect("variable name");
            if s(&value).is_none() && (var.ends_with("_URL") || var.ends_with("_NAME")) {
                assert!(
                    parameters.contains_key(var),
                    "{}: events/env.json Parameters has no {var}",
                    f.logical_id
                );
            }
        }
    }
    let globals = t["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .expect("Globals variables");
    for var in [
        "TABLE_NAME",
        "DELIVERY_QUEUE_URL",
        "AWS_ENDPOINT_URL",
        "SECRETS_LOCAL_KEY",
    ] {
        assert!(globals.contains_key(var), "Globals has no {var}");
        assert!(
            parameters.contains_key(var),
            "env.json Parameters has no {var}"
        );
    }
    assert_eq!(
        env.as_object().expect("env.json object").len(),
        1,
        "events/env.json: Parameters only"
    );
}

/// A table's schema, in the terms CloudFormation and DescribeTable share.
#[derive(Debug, PartialEq, Eq)]
struct TableShape {
    billing_mode: String,
    /// (attribute, HASH|RANGE) in order.
    key_schema: Vec<(String, String)>,
    /// attribute → S|N|B
    attributes: BTreeMap<String, String>,
    indexes: BTreeMap<String, IndexShape>,
    local_indexes: usize,
    /// (attribute, enabled)
    ttl: (String, bool),
}

#[derive(Debug, PartialEq, Eq)]
struct IndexShape {
    key_schema: Vec<(String, String)>,
    projection_type: String,
    non_key_attributes: BTreeSet<String>,
}

fn yaml_keys(v: &Value, what: &str) -> Vec<(String, String)> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("{what}: a list"))
        .iter()
        .map(|k| {
            (
                s(&k["AttributeName"]).expect("AttributeName").to_owned(),
                s(&k["KeyType"]).expect("KeyType").to_owned(),
            )
        })
        .collect()
}

fn template_table() -> TableShape {
    let t = yaml("template.yaml");
    let tables: Vec<&Value> = t["Resources"]
        .as_mapping()
        .expect("Resources")
        .values()
        .filter(|r| s(&r["Type"]) == Some("AWS::DynamoDB::Table"))
        .collect();
    assert_eq!(tables.len(), 1, "template.yaml has one table");
    let p = &tables[0]["Properties"];
    let attributes = p["AttributeDefinitions"]
        .as_sequence()
        .expect("AttributeDefinitions")
        .iter()
        .map(|a| {
            (
                s(&a["AttributeName"]).expect("AttributeName").to_owned(),
                s(&a["AttributeType"]).expect("AttributeType").to_owned(),
            )
        })
        .collect();
    let indexes = p["GlobalSecondaryIndexes"]
        .as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|i| {
            let name = s(&i["IndexName"]).expect("IndexName").to_owned();
            let projection = &i["Projection"];
            let shape = IndexShape {
                key_schema: yaml_keys(&i["KeySchema"], &name),
                projection_type: s(&projection["ProjectionType"])
                    .expect("ProjectionType")
                    .to_owned(),
                non_key_attributes: projection["NonKeyAttributes"]
                    .as_sequence()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|a| s(a).expect("attribute name").to_owned())
                    .collect(),
            };
            (name, shape)
        })
        .collect();
    let ttl = &p["TimeToLiveSpecification"];
    TableShape {
        billing_mode: s(&p["BillingMode"]).expect("BillingMode").to_owned(),
        key_schema: yaml_keys(&p["KeySchema"], "KeySchema"),
        attributes,
        indexes,
        local_indexes: p["LocalSecondaryIndexes"].as_sequence().map_or(0, Vec::len),
        ttl: (
            s(&ttl["AttributeName"])
                .expect("TimeToLiveSpecification.AttributeName")
                .to_owned(),
            ttl["Enabled"]
                .as_bool()
                .expect("TimeToLiveSpecification.Enabled"),
        ),
    }
}

fn hash_range(pk: &str, sk: &str) -> Vec<(String, String)> {
    vec![(pk.into(), "HASH".into()), (sk.into(), "RANGE".into())]
}

/// What `capy_shared::adapters::dynamo::schema` defines.
fn schema_table() -> TableShape {
    TableShape {
        billing_mode: schema::BILLING_MODE.as_str().to_owned(),
        key_schema: hash_range(schema::PARTITION_KEY, schema::SORT_KEY),
        attributes: schema::key_attributes()
            .into_iter()
            .map(|a| (a.to_owned(), "S".to_owned()))
            .collect(),
        indexes: schema::INDEXES
            .iter()
            .map(|i| {
                (
                    i.name.to_owned(),
                    IndexShape {
                        key_schema: hash_range(i.partition_key, i.sort_key),
                        projection_type: if i.non_key_attributes.is_empty() {
                            "KEYS_ONLY"
                        } else {
                            "INCLUDE"
                        }
                        .to_owned(),
                        non_key_attributes: i
                            .non_key_attributes
                            .iter()
                            .map(|a| (*a).to_owned())
                            .collect(),
                    },
                )
            })
            .collect(),
        local_indexes: 0,
        ttl: (schema::TTL_ATTRIBUTE.to_owned(), true),
    }
}

#[test]
fn template_table_equals_the_schema_in_code() {
    let schema = schema_table();
    // The schema names the index the sweeper reads, with what it needs to rebuild a message.
    assert_eq!(
        schema.indexes[schema::SWEEP_INDEX.name].non_key_attributes,
        BTreeSet::from(["endpoint_id", "organization_id", "event_id"].map(String::from)),
    );
    assert_eq!(
        template_table(),
        schema,
        "template.yaml's Table vs shared/src/adapters/dynamo/schema.rs"
    );
    // Index permissions name indexes of the schema (the sweeper's Query on `sweep`).
    let text = std::fs::read_to_string(workspace_root().join("template.yaml")).expect("template");
    let named: BTreeSet<&str> = text
        .split("${Table.Arn}/index/")
        .skip(1)
        .map(|rest| {
            rest.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
                .next()
                .unwrap_or("")
        })
        .collect();
    assert_eq!(
        named,
        BTreeSet::from([schema::SWEEP_INDEX.name]),
        "template.yaml's index ARNs vs the schema's indexes"
    );
}

fn key_shape(keys: &[aws_sdk_dynamodb::types::KeySchemaElement]) -> Vec<(String, String)> {
    keys.iter()
        .map(|k| {
            (
                k.attribute_name().to_owned(),
                k.key_type().as_str().to_owned(),
            )
        })
        .collect()
}

/// The table `Table::ensure` creates (what `capy serve` runs), as DynamoDB (moto) describes it.
async fn ensured_table() -> TableShape {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .endpoint_url(&capy_tests::moto().endpoint)
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(conf);
    let name = format!("capy-contract-{:016x}", rand::random::<u64>());
    let table = Table::new(client.clone(), &name);
    table.ensure().await.expect("ensure creates the table");
    // A second call finds it and changes nothing.
    table.ensure().await.expect("ensure is idempotent");
    let d = client
        .describe_table()
        .table_name(&name)
        .send()
        .await
        .expect("DescribeTable")
        .table
        .expect("table");
    let ttl = client
        .describe_time_to_live()
        .table_name(&name)
        .send()
        .await
        .expect("DescribeTimeToLive")
        .time_to_live_description
        .expect("TTL description");
    TableShape {
        billing_mode: d
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .expect("BillingModeSummary")
            .as_str()
            .to_owned(),
        key_schema: key_shape(d.key_schema()),
        attributes: d
            .attribute_definitions()
            .iter()
            .map(|a| {
                (
                    a.attribute_name().to_owned(),
                    a.attribute_type().as_str().to_owned(),
                )
            })
            .collect(),
        indexes: d
            .global_secondary_indexes()
            .iter()
            .map(|i| {
                let p = i.projection().expect("projection");
                (
                    i.index_name().expect("index name").to_owned(),
                    IndexShape {
                        key_schema: key_shape(i.key_schema()),
                        projection_type: p
                            .projection_type()
                            .expect("projection type")
                            .as_str()
                            .to_owned(),
                        non_key_attributes: p
                            .non_key_attributes()
                            .iter()
                            .map(String::to_owned)
                            .collect(),
                    },
                )
            })
            .collect(),
        local_indexes: d.local_secondary_indexes().len(),
        ttl: (
            ttl.attribute_name().expect("TTL attribute").to_owned(),
            ttl.time_to_live_status()
                .is_some_and(|s| s.as_str() == "ENABLED"),
        ),
    }
}

#[tokio::test]
async fn the_table_capy_serve_creates_is_the_templates() {
    assert_eq!(
        ensured_table().await,
        template_table(),
        "Table::ensure on moto vs template.yaml's Table"
    );
}

/// Every `.rs` file under `dir`, as text.
fn sources(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(std::fs::read_to_string(&path).expect("source"));
        }
    }
}

/// A misspelt variable in the template is silently ignored by the functions (they fall back
/// to defaults), so every name the template sets must be one the code reads.
#[test]
fn every_variable_the_template_sets_is_read_by_the_code() {
    let t = yaml("template.yaml");
    let mut names = BTreeSet::new();
    let mut collect = |vars: &Value| {
        for k in vars.as_mapping().into_iter().flat_map(|m| m.keys()) {
            names.insert(s(k).expect("variable name").to_owned());
        }
    };
    collect(&t["Globals"]["Function"]["Environment"]["Variables"]);
    for res in t["Resources"].as_mapping().expect("Resources").values() {
        if s(&res["Type"]) == Some("AWS::Serverless::Function") {
            collect(&res["Properties"]["Environment"]["Variables"]);
        }
    }
    let mut code = Vec::new();
    for dir in ["shared/src", "functions/src"] {
        sources(&workspace_root().join(dir), &mut code);
    }
    // STAGE is for people reading a function's configuration and tags; no code reads it.
    let unread: Vec<&String> = names
        .iter()
        .filter(|n| n.as_str() != "STAGE")
        .filter(|n| !code.iter().any(|src| src.contains(&format!("\"{n}\""))))
        .collect();
    assert!(
        names.len() > 20,
        "found the template's variables: {names:?}"
    );
    assert!(
        unread.is_empty(),
        "template.yaml sets variables no code reads: {unread:?}"
    );
}

/// The actions a route function's inline policies allow.
fn policy_actions(function: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for policy in function["Properties"]["Policies"]
        .as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        for st in policy["Statement"]
            .as_sequence()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            match &st["Action"] {
                Value::String(a) => {
                    out.insert(a.clone());
                }
                Value::Sequence(list) => {
                    out.extend(list.iter().filter_map(|a| s(a).map(str::to_owned)));
                }
                other => panic!("unexpected Action {other:?}"),
            }
        }
    }
    out
}

/// Least privilege by construction: a GET route only reads the table; only a route that
/// sends deliveries (or queues a job) may send to a queue; no route function has a role of
/// its own or a wildcard action.
#[test]
fn route_functions_get_only_what_their_kind_of_route_needs() {
    let t = yaml("template.yaml");
    let resources = t["Resources"].as_mapping().expect("Resources");
    let functions = template_functions();
    let reads: BTreeSet<&str> = [
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:BatchGetItem",
    ]
    .into_iter()
    .collect();
    for route in Route::ALL {
        let key = (route.method().as_str().to_owned(), route.path());
        let f = functions
            .iter()
            .find(|f| f.http.contains(&key))
            .expect("every route has a function (checked above)");
        let res = resources
            .iter()
            .find(|(id, _)| s(id) == Some(f.logical_id.as_str()))
            .map(|(_, r)| r)
            .expect("function resource");
        assert!(
            res["Properties"]["Role"].is_null(),
            "{}: a route function takes the policies SAM attaches, not a shared role",
            f.logical_id
        );
        let actions = policy_actions(res);
        assert!(
            actions.iter().all(|a| !a.contains('*')),
            "{}: wildcard action in {actions:?}",
            f.logical_id
        );
        assert!(
            actions.contains("dynamodb:GetItem"),
            "{}: every route reads its credential",
            f.logical_id
        );
        if route.method() == http::Method::GET {
            let extra: Vec<&String> = actions
                .iter()
                .filter(|a| !reads.contains(a.as_str()))
                .collect();
            assert!(
                extra.is_empty(),
                "{}: a read route may {extra:?}",
                f.logical_id
            );
        }
        let sends = actions.iter().any(|a| a.starts_with("sqs:"));
        assert_eq!(
            sends,
            route.enqueues() || route == Route::ReplayEndpoint,
            "{}: SQS actions {actions:?}",
            f.logical_id
        );
    }
}
