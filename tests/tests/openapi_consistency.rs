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

/// `value`, following a local `$ref` (`#/components/...`).
fn resolve<'a>(spec: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let mut target = spec;
            for part in reference.trim_start_matches("#/").split('/') {
                target = &target[part];
            }
            assert!(!target.is_null(), "{reference} resolves");
            resolve(spec, target)
        }
        None => value,
    }
}

/// Every schema reachable from `schema` (itself included), through references, combinators, properties and items.
fn walk<'a>(
    spec: &'a Value,
    schema: &'a Value,
    seen: &mut Vec<*const Value>,
    out: &mut Vec<&'a Value>,
) {
    let schema = resolve(spec, schema);
    if !schema.is_mapping() || seen.contains(&(schema as *const Value)) {
        return;
    }
    seen.push(schema);
    out.push(schema);
    for key in ["allOf", "oneOf", "anyOf"] {
        for branch in schema[key].as_sequence().into_iter().flatten() {
            walk(spec, branch, seen, out);
        }
    }
    for (_, property) in schema["properties"].as_mapping().into_iter().flatten() {
        walk(spec, property, seen, out);
    }
    walk(spec, &schema["items"], seen, out);
    walk(spec, &schema["additionalProperties"], seen, out);
}

fn operations(spec: &Value) -> Vec<(String, String, &Value)> {
    documented(spec)
        .into_iter()
        .map(|(method, path)| {
            let operation = &spec["paths"][path.as_str()][method.to_lowercase().as_str()];
            (method, path, operation)
        })
        .collect()
}

#[test]
fn no_answer_documents_a_write_only_field() {
    // A credential the server answers masked is a field of its own (`"********"`), not the write-only one a
    // client sends: a validator reading answers against the description would otherwise refuse every connection.
    let spec = openapi();
    for (method, path, operation) in operations(&spec) {
        for (code, response) in operation["responses"].as_mapping().expect("responses") {
            let response = resolve(&spec, response);
            let schema = &response["content"]["application/json"]["schema"];
            let mut reachable = Vec::new();
            walk(&spec, schema, &mut Vec::new(), &mut reachable);
            for schema in reachable {
                for (name, property) in schema["properties"].as_mapping().into_iter().flatten() {
                    let property = resolve(&spec, property);
                    assert_ne!(
                        property["writeOnly"].as_bool(),
                        Some(true),
                        "{method} {path} {code:?}: `{}` is answered but documented write-only",
                        name.as_str().unwrap_or_default()
                    );
                }
            }
        }
    }
}

#[test]
fn every_request_body_object_refuses_unknown_fields_as_the_server_does() {
    // The server refuses unknown fields (400); a description that allowed them would call those requests valid.
    let spec = openapi();
    let mut checked = 0;
    for (method, path, operation) in operations(&spec) {
        let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
        if schema.is_null() {
            continue;
        }
        let mut reachable = Vec::new();
        walk(&spec, schema, &mut Vec::new(), &mut reachable);
        for schema in reachable {
            // An object with named fields, not a map (`people`) or a combinator of closed branches.
            if schema["properties"].is_mapping() {
                assert_eq!(
                    schema["additionalProperties"].as_bool(),
                    Some(false),
                    "{method} {path}: an object of the body allows unknown fields: {schema:?}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "request body objects were found ({checked})");
}

#[test]
fn the_local_identity_header_is_a_security_scheme_beside_the_jwt() {
    let spec = openapi();
    let scheme = &spec["components"]["securitySchemes"]["localIdentity"];
    assert_eq!(scheme["type"].as_str(), Some("apiKey"));
    assert_eq!(scheme["in"].as_str(), Some("header"));
    assert_eq!(
        scheme["name"].as_str().map(str::to_lowercase).as_deref(),
        Some(ticketbound::http::extract::USER_HEADER),
        "the header the local server reads"
    );
    let security: Vec<String> = spec["security"]
        .as_sequence()
        .expect("security")
        .iter()
        .flat_map(|requirement| requirement.as_mapping().expect("requirement").keys())
        .map(|k| k.as_str().expect("scheme").to_owned())
        .collect();
    assert_eq!(security, ["jwt", "localIdentity"], "either identity");
}

#[test]
fn every_cursor_parameter_is_the_opaque_cursor_a_list_gives_out() {
    let spec = openapi();
    let cursor = &spec["components"]["schemas"]["Cursor"];
    let pattern = cursor["pattern"].as_str().expect("Cursor has a pattern");
    assert_eq!(
        pattern, "^[A-Za-z0-9_-]{1,4096}$",
        "URL-safe base64 without padding"
    );
    let mut found = 0;
    for (method, path, operation) in operations(&spec) {
        for parameter in operation["parameters"].as_sequence().into_iter().flatten() {
            let parameter = resolve(&spec, parameter);
            if parameter["name"].as_str() == Some("cursor") {
                assert_eq!(
                    parameter["schema"]["$ref"].as_str(),
                    Some("#/components/schemas/Cursor"),
                    "{method} {path}: `cursor` is the documented cursor, not a free string"
                );
                found += 1;
            }
        }
    }
    assert_eq!(
        found, 6,
        "the five lists (grants, events, connections, the connection directory, resources) and the ticket search take a cursor"
    );
}
