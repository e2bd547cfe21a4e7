//! `docs/openapi.yaml` against the routes the code serves (`ticketbound::http::api::ROUTES`), both ways.

use std::collections::BTreeSet;
use std::path::Path;

use serde_yaml::Value;
use ticketbound::http::api::ROUTES;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn openapi() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.yaml");
    let text = std::fs::read_to_string(&path).expect("docs/openapi.yaml exists");
    serde_yaml::from_str(&text).expect("docs/openapi.yaml parses")
}

fn documented(spec: &Value) -> BTreeSet<(String, String)> {
    let paths = spec["paths"].as_mapping().expect("paths");
    let mut routes = BTreeSet::new();
    for (path, item) in paths {
        let path = path.as_str().expect("path").to_owned();
        for (key, _) in item.as_mapping().expect("path item") {
            let key = key.as_str().expect("key");
            if METHODS.contains(&key) {
                routes.insert((key.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

fn set(routes: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    routes
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

#[test]
fn the_description_documents_exactly_the_served_routes() {
    let spec = openapi();
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "OpenAPI 3.1"
    );
    let documented = documented(&spec);
    let served = set(ROUTES);
    let expected = served;
    assert_eq!(
        documented,
        expected,
        "docs/openapi.yaml differs from the router: undocumented {:?}, documented but not served {:?}",
        expected.difference(&documented).collect::<Vec<_>>(),
        documented.difference(&expected).collect::<Vec<_>>(),
    );
}

#[test]
fn every_operation_documents_its_errors_with_the_error_body() {
    let spec = openapi();
    for (method, path) in documented(&spec) {
        let operation = &spec["paths"][path.as_str()][method.to_lowercase().as_str()];
        let responses = operation["responses"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{method} {path}: responses"));
        let codes: BTreeSet<&str> = responses.keys().filter_map(Value::as_str).collect();
        assert!(
            codes.iter().any(|c| c.starts_with('2')),
            "{method} {path}: a success status"
        );
        assert!(
            codes.contains("401") && codes.contains("default"),
            "{method} {path}: 401 and default (500) are documented, has {codes:?}"
        );
        for (code, response) in responses {
            let code = code.as_str().unwrap_or_default();
            if code.starts_with('2') || code == "304" {
                continue;
            }
            let reference = response["$ref"].as_str().unwrap_or_default();
            assert!(
                reference.starts_with("#/components/responses/"),
                "{method} {path} {code}: errors use a shared response with the error body"
            );
            let name = reference.rsplit('/').next().unwrap();
            let schema = &spec["components"]["responses"][name]["content"]["application/json"]["schema"]
                ["$ref"];
            assert_eq!(
                schema.as_str(),
                Some("#/components/schemas/Error"),
                "{method} {path} {code}"
            );
        }
    }
}

#[test]
fn the_documented_audit_event_kinds_are_exactly_the_ones_the_code_records() {
    let spec = openapi();
    let documented: BTreeSet<String> =
        spec["components"]["schemas"]["AuditEvent"]["properties"]["kind"]["enum"]
            .as_sequence()
            .expect("AuditEvent.kind has an enum")
            .iter()
            .map(|v| v.as_str().expect("a kind").to_owned())
            .collect();

    let recorded: BTreeSet<String> = ticketbound::domain::AuditKind::ALL
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();

    assert_eq!(documented, recorded);
}
