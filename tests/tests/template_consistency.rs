//! `template.yaml` against the code: the environment each function reads, where each function's code is, the
//! API routes, and the table's keys, indexes and TTL. A drift between the SAM template and the crate fails here
//! rather than at deploy time (or, worse, at the first request).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::Request;
use serde_yaml::Value;
use ticketbound::adapters::dynamodb::{INDEXES, TTL_ATTRIBUTE};
use ticketbound::config::{API_VARS, COMMON_VARS, EXPIRY_VARS};
use ticketbound::http::api::ROUTES;
use ticketbound::http::portal::ROUTES as PORTAL_ROUTES;
use ticketbound::http::{AppState, IdentitySource, Portal, api_router_with_portal};
use tower::ServiceExt;

/// The webhook routes: served by their own functions, not by the `/v1` router, and without the JWT authorizer.
const WEBHOOK_ROUTES: &[(&str, &str, &str)] = &[
    (
        "POST",
        ticketbound::http::webhooks::JIRA_ROUTE,
        "functions/jira-webhook",
    ),
    (
        "POST",
        ticketbound::http::webhooks::FRESHSERVICE_ROUTE,
        "functions/freshservice-webhook",
    ),
    (
        "POST",
        ticketbound::http::webhooks::GENERIC_ROUTE,
        "functions/webhook",
    ),
];
/// The function that serves `/v1`.
const API_CODE_URI: &str = "functions/api";
/// The function EventBridge Scheduler invokes.
const EXPIRY_CODE_URI: &str = "functions/expiry";
/// Workspace members that are not deployed Lambda functions (the floor is the cold-start baseline of
/// BENCHMARKS.md, never deployed).
const NOT_LAMBDAS: &[&str] = &["shared", "tests", "functions/local", "functions/floor"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

fn template() -> Value {
    let text = std::fs::read_to_string(root().join("template.yaml")).expect("template.yaml exists");
    serde_yaml::from_str(&text).expect("template.yaml parses (short tags included)")
}

/// `value` without its CloudFormation short tag (`!Ref x` → `x`).
fn untagged(value: &Value) -> &Value {
    match value {
        Value::Tagged(tagged) => untagged(&tagged.value),
        other => other,
    }
}

fn get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    untagged(value).get(key).map(untagged)
}

fn string(value: &Value) -> &str {
    untagged(value)
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, found {value:?}"))
}

fn strings(value: &Value) -> Vec<String> {
    untagged(value)
        .as_sequence()
        .unwrap_or_else(|| panic!("expected a list, found {value:?}"))
        .iter()
        .map(|v| string(v).to_owned())
        .collect()
}

fn resources_of_type<'a>(template: &'a Value, kind: &str) -> BTreeMap<String, &'a Value> {
    get(template, "Resources")
        .and_then(Value::as_mapping)
        .expect("Resources")
        .iter()
        .filter(|(_, r)| get(r, "Type").map(string) == Some(kind))
        .map(|(name, r)| (string(name).to_owned(), r))
        .collect()
}

/// Every `AWS::Serverless::Function`, by logical id.
fn functions(template: &Value) -> BTreeMap<String, &Value> {
    resources_of_type(template, "AWS::Serverless::Function")
}

/// A function's property, falling back to `Globals.Function` as SAM does.
fn property<'a>(template: &'a Value, function: &'a Value, key: &str) -> Option<&'a Value> {
    get(function, "Properties")
        .and_then(|p| get(p, key))
        .or_else(|| {
            get(template, "Globals")
                .and_then(|g| get(g, "Function"))
                .and_then(|f| get(f, key))
        })
}

fn code_uri(function: &Value) -> String {
    string(
        get(function, "Properties")
            .and_then(|p| get(p, "CodeUri"))
            .expect("every function has a CodeUri"),
    )
    .trim_end_matches('/')
    .to_owned()
}

fn function_with_code_uri<'a>(template: &'a Value, uri: &str) -> (String, &'a Value) {
    functions(template)
        .into_iter()
        .find(|(_, f)| code_uri(f) == uri)
        .unwrap_or_else(|| panic!("no function in template.yaml has CodeUri {uri}"))
}

/// The environment SAM gives a function: `Globals.Function.Environment.Variables` merged with its own.
fn environment(template: &Value, function: &Value) -> BTreeMap<String, Value> {
    let variables = |env: Option<&Value>| -> Vec<(String, Value)> {
        env.and_then(|e| get(e, "Variables"))
            .and_then(Value::as_mapping)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (string(k).to_owned(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let global = get(template, "Globals")
        .and_then(|g| get(g, "Function"))
        .and_then(|f| get(f, "Environment"));
    let own = get(function, "Properties").and_then(|p| get(p, "Environment"));
    variables(global)
        .into_iter()
        .chain(variables(own))
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn manifest(dir: &Path) -> toml::Table {
    let text = std::fs::read_to_string(dir.join("Cargo.toml"))
        .unwrap_or_else(|e| panic!("{}/Cargo.toml: {e}", dir.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{}/Cargo.toml: {e}", dir.display()))
}

fn workspace_members() -> BTreeSet<String> {
    let root = manifest(&root());
    root["workspace"]["members"]
        .as_array()
        .expect("workspace.members")
        .iter()
        .map(|m| m.as_str().expect("member path").to_owned())
        .collect()
}

/// `(METHOD, path)` of every `HttpApi` event, with the CodeUri of the function it invokes and its `Auth`.
fn template_routes(template: &Value) -> Vec<(String, String, String, Option<Value>)> {
    let mut routes = Vec::new();
    for function in functions(template).values() {
        let Some(events) = get(function, "Properties")
            .and_then(|p| get(p, "Events"))
            .and_then(Value::as_mapping)
        else {
            continue;
        };
        for event in events.values() {
            if get(event, "Type").map(string) != Some("HttpApi") {
                continue;
            }
            let props = get(event, "Properties").expect("HttpApi event properties");
            routes.push((
                string(get(props, "Method").expect("Method")).to_uppercase(),
                string(get(props, "Path").expect("Path")).to_owned(),
                code_uri(function),
                get(props, "Auth").cloned(),
            ));
        }
    }
    routes
}

// ----- (a) environment ---------------------------------------------------------------------------------------

#[test]
fn every_function_gets_exactly_the_variables_its_configuration_reads() {
    let template = template();
    for (name, function) in functions(&template) {
        let expected: BTreeSet<String> = if code_uri(function) == API_CODE_URI {
            names(COMMON_VARS)
                .union(&names(API_VARS))
                .cloned()
                .collect()
        } else if code_uri(function) == EXPIRY_CODE_URI {
            names(COMMON_VARS)
                .union(&names(EXPIRY_VARS))
                .cloned()
                .collect()
        } else {
            names(COMMON_VARS)
        };
        let actual: BTreeSet<String> = environment(&template, function).into_keys().collect();
        assert_eq!(
            actual,
            expected,
            "{name}: template sets {:?} but the code reads {:?} (missing: {:?}, unused: {:?})",
            actual,
            expected,
            expected.difference(&actual).collect::<Vec<_>>(),
            actual.difference(&expected).collect::<Vec<_>>(),
        );
    }
}

#[test]
fn a_recurring_schedule_runs_reconciliation_on_the_expiry_function_and_an_alarm_watches_what_it_finds()
 {
    let template = template();
    let yaml = |v: &Value| serde_yaml::to_string(v).unwrap();
    let schedules = resources_of_type(&template, "AWS::Scheduler::Schedule");
    assert_eq!(schedules.len(), 1, "one recurring schedule: {schedules:?}");
    let schedule = schedules.values().next().unwrap();
    let props = get(schedule, "Properties").expect("Properties");
    let target = get(props, "Target").expect("Target");
    // Exactly the job the expiry handler recognises (anything more is ignored there as junk).
    let input: serde_json::Value =
        serde_json::from_str(string(get(target, "Input").expect("Input"))).expect("JSON Input");
    assert_eq!(
        input,
        serde_json::json!({"job": ticketbound::service::RECONCILE_JOB})
    );
    assert!(yaml(get(target, "Arn").unwrap()).contains("ExpiryFunction.Arn"));
    assert!(yaml(get(target, "RoleArn").unwrap()).contains("SchedulerRole.Arn"));
    assert!(
        yaml(get(get(target, "DeadLetterConfig").unwrap(), "Arn").unwrap())
            .contains("ScheduleDlq.Arn")
    );
    assert!(yaml(get(props, "GroupName").unwrap()).contains("ScheduleGroup"));
    let rate = yaml(get(props, "ScheduleExpression").unwrap());
    assert!(
        rate.contains("rate(${ReconcileEveryMinutes} minutes)"),
        "{rate}"
    );
    // The interval the function is told is the schedule's, and both are off together.
    assert_eq!(get(schedule, "Condition").map(string), Some("ReconcileOn"));
    let (_, expiry) = function_with_code_uri(&template, EXPIRY_CODE_URI);
    let env = yaml(
        environment(&template, expiry)
            .get("RECONCILE_EVERY")
            .unwrap(),
    );
    assert!(
        env.contains("ReconcileOn")
            && env.contains("PT${ReconcileEveryMinutes}M")
            && env.contains("off"),
        "{env}"
    );

    // Every kind of finding a run reports has an alarm, on the metric the code emits.
    let alarms = resources_of_type(&template, "AWS::CloudWatch::Alarm");
    let source = std::fs::read_to_string(root().join("shared/src/service/reconcile.rs")).unwrap();
    for metric in [
        "ClosingsFoundByReconciliation",
        "AccessRemovedByReconciliation",
        "ProvisionerReconcileFailures",
    ] {
        let watched = alarms.values().any(|a| {
            let p = get(a, "Properties").unwrap();
            get(p, "Namespace").map(string) == Some("Ticketbound")
                && get(p, "MetricName").map(string) == Some(metric)
                && get(a, "Condition").map(string) == Some("ReconcileOn")
        });
        assert!(
            watched,
            "an alarm on {metric}, present when reconciliation is"
        );
        assert!(
            source.contains(&format!("metric(\"{metric}\"")),
            "the code emits the metric the alarm watches: {metric}"
        );
    }
}

#[test]
fn expiry_function_arn_names_the_expiry_function_and_the_scheduler_role_may_invoke_only_it() {
    let template = template();
    let (_, expiry) = function_with_code_uri(&template, EXPIRY_CODE_URI);
    let function_name = string(property(&template, expiry, "FunctionName").expect(
        "the expiry function needs an explicit FunctionName so its ARN can be built without a cycle",
    ))
    .to_owned();
    let arn = |name: &str| {
        format!(
            "arn:${{AWS::Partition}}:lambda:${{AWS::Region}}:${{AWS::AccountId}}:function:{name}"
        )
    };
    for (name, function) in functions(&template) {
        let env = environment(&template, function);
        let value = env.get("EXPIRY_FUNCTION_ARN").expect("EXPIRY_FUNCTION_ARN");
        assert_eq!(
            string(value),
            arn(&function_name),
            "{name}: EXPIRY_FUNCTION_ARN must be the expiry function's ARN"
        );
    }
    let role = &resources_of_type(&template, "AWS::IAM::Role")["SchedulerRole"];
    let text = serde_yaml::to_string(role).expect("serializes");
    let invoke: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(":function:"))
        .map(str::trim)
        .collect();
    assert!(
        !invoke.is_empty(),
        "the scheduler role must invoke the expiry function"
    );
    for line in invoke {
        assert!(
            line.contains(&format!(":function:{function_name}")),
            "the scheduler role may invoke only the expiry function, found {line}"
        );
    }
}

// ----- (b) code ----------------------------------------------------------------------------------------------

#[test]
fn every_code_uri_is_a_workspace_member_with_the_binary_sam_builds() {
    let template = template();
    let members = workspace_members();
    let mut lambdas = BTreeSet::new();
    for (name, function) in functions(&template) {
        let uri = code_uri(function);
        assert!(
            members.contains(&uri),
            "{name}: CodeUri {uri} is not a workspace member ({members:?})"
        );
        let metadata = get(function, "Metadata").expect("Metadata");
        assert_eq!(
            get(metadata, "BuildMethod").map(string),
            Some("rust-cargolambda"),
            "{name}"
        );
        let binary = get(metadata, "BuildProperties")
            .and_then(|b| get(b, "Binary"))
            .map(string)
            .unwrap_or_else(|| panic!("{name}: Metadata.BuildProperties.Binary names the binary"));
        let manifest = manifest(&root().join(&uri));
        let bins: Vec<&str> = manifest
            .get("bin")
            .and_then(|b| b.as_array())
            .map(|bins| bins.iter().filter_map(|b| b["name"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            bins.contains(&binary),
            "{name}: {uri}/Cargo.toml has no [[bin]] named {binary} (it has {bins:?})"
        );
        assert_eq!(
            manifest["package"]["name"].as_str(),
            Some(binary),
            "{name}: the package and its binary share the name (DESIGN §3)"
        );
        for (key, expected) in [("Handler", "bootstrap"), ("Runtime", "provided.al2023")] {
            let value = property(&template, function, key).map(string);
            assert_eq!(value, Some(expected), "{name}: {key}");
        }
        let architectures = property(&template, function, "Architectures").map(strings);
        assert_eq!(
            architectures,
            Some(vec!["arm64".to_owned()]),
            "{name}: Architectures"
        );
        lambdas.insert(uri);
    }
    let expected: BTreeSet<String> = members
        .into_iter()
        .filter(|m| !NOT_LAMBDAS.contains(&m.as_str()))
        .collect();
    assert_eq!(
        lambdas, expected,
        "every Lambda member of the workspace is deployed, once"
    );
}

// ----- (c) routes --------------------------------------------------------------------------------------------

#[test]
fn the_template_routes_are_exactly_the_router_routes_and_the_webhooks() {
    let template = template();
    let mut expected: BTreeSet<(String, String, String)> = ROUTES
        .iter()
        .chain(PORTAL_ROUTES)
        .map(|(m, p)| (m.to_string(), p.to_string(), API_CODE_URI.to_owned()))
        .collect();
    expected.extend(
        WEBHOOK_ROUTES
            .iter()
            .map(|(m, p, f)| (m.to_string(), p.to_string(), f.to_string())),
    );
    let actual: Vec<(String, String, String)> = template_routes(&template)
        .into_iter()
        .map(|(m, p, f, _)| (m, p, f))
        .collect();
    let actual_set: BTreeSet<_> = actual.iter().cloned().collect();
    assert_eq!(actual.len(), actual_set.len(), "a route is declared twice");
    assert_eq!(
        actual_set,
        expected,
        "template routes (method, path, function) differ from the code: only in the template {:?}, only in the code {:?}",
        actual_set.difference(&expected).collect::<Vec<_>>(),
        expected.difference(&actual_set).collect::<Vec<_>>(),
    );
}

#[test]
fn v1_routes_require_the_jwt_authorizer_and_webhooks_slack_and_the_portal_page_do_not() {
    let template = template();
    let apis = resources_of_type(&template, "AWS::Serverless::HttpApi");
    assert_eq!(apis.len(), 1, "one HTTP API");
    let auth = get(apis.values().next().unwrap(), "Properties")
        .and_then(|p| get(p, "Auth"))
        .expect("HttpApi Auth");
    let default = string(get(auth, "DefaultAuthorizer").expect("a default authorizer"));
    let authorizer = get(auth, "Authorizers")
        .and_then(|a| get(a, default))
        .expect("the default authorizer is defined");
    assert!(
        get(authorizer, "JwtConfiguration").is_some(),
        "the default authorizer is a JWT authorizer"
    );
    for (method, path, _, route_auth) in template_routes(&template) {
        let named = route_auth
            .as_ref()
            .and_then(|a| get(a, "Authorizer"))
            .map(string);
        if path.starts_with("/v1/") {
            assert!(
                named.is_none() || named == Some(default),
                "{method} {path} must use the JWT authorizer, has {named:?}"
            );
        } else if PORTAL_ROUTES.contains(&(method.as_str(), path.as_str())) {
            assert_eq!(
                named,
                Some("NONE"),
                "{method} {path}: the portal page loads before anyone signs in"
            );
        } else if path == ticketbound::http::slack::INTERACTIONS_ROUTE {
            assert_eq!(
                named,
                Some("NONE"),
                "{method} {path}: Slack cannot send JWTs; its requests carry the app's signature"
            );
        } else {
            assert!(
                path.starts_with("/webhooks/"),
                "{method} {path}: unexpected route"
            );
            assert_eq!(
                named,
                Some("NONE"),
                "{method} {path}: ticket systems cannot send JWTs"
            );
        }
    }
}

/// `ROUTES` and `PORTAL_ROUTES` are what the API function's router serves: each entry reaches a handler (not
/// the JSON 404/405 fallbacks).
#[tokio::test]
async fn every_listed_route_is_served_by_the_router() {
    let dir = std::env::temp_dir().join(format!("ticketbound-routes-{}", std::process::id()));
    let (app, _scheduler) =
        ticketbound::wiring::local_app(&dir, Default::default()).expect("local app");
    let roles = Default::default();
    let portal = Portal::aws(None, &roles, "email", "groups");
    let router = api_router_with_portal(
        AppState {
            app,
            identity: IdentitySource::TrustedHeaders,
            roles,
        },
        portal,
    );
    for (method, path) in ROUTES.iter().chain(PORTAL_ROUTES) {
        let uri = path
            .replace("{id}", "no-such-id")
            .replace("{file}", "app.js");
        let response = router
            .clone()
            .oneshot(
                Request::builder()
                    .method(*method)
                    .uri(&uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(
            status != 405 && !body.contains("no_such_route"),
            "{method} {path} is in ROUTES but the router does not serve it ({status} {body})"
        );
    }
    let missing = router
        .oneshot(
            Request::builder()
                .uri("/v1/nothing-here")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = axum::body::to_bytes(missing.into_body(), 1 << 20)
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&body).contains("no_such_route"),
        "the probe above can tell a missing route"
    );
    let _ = std::fs::remove_dir_all(dir);
}

// ----- least privilege ---------------------------------------------------------------------------------------

/// Every `(action, resource as YAML)` pair a function's inline policies allow.
fn allowed(function: &Value) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let policies = get(function, "Properties")
        .and_then(|p| get(p, "Policies"))
        .and_then(|p| untagged(p).as_sequence().cloned())
        .unwrap_or_default();
    for policy in &policies {
        let statements = get(policy, "Statement")
            .and_then(|s| untagged(s).as_sequence().cloned())
            .expect("inline policies only: Statement lists");
        for statement in &statements {
            assert_eq!(get(statement, "Effect").map(string), Some("Allow"));
            let actions = match get(statement, "Action").expect("Action") {
                Value::String(a) => vec![a.clone()],
                other => strings(other),
            };
            let resource =
                serde_yaml::to_string(get(statement, "Resource").expect("Resource")).unwrap();
            assert!(
                !resource.trim().ends_with("'*'") && !resource.contains("- '*'"),
                "no statement allows every resource: {actions:?}"
            );
            for action in actions {
                assert!(!action.contains('*'), "no wildcard actions: {action}");
                pairs.push((action, resource.clone()));
            }
        }
    }
    pairs
}

#[test]
fn functions_get_only_scoped_permissions_and_only_the_api_writes_secrets() {
    let template = template();
    for (name, function) in functions(&template) {
        let is_api = code_uri(function) == API_CODE_URI;
        for (action, resource) in allowed(function) {
            let service = action.split(':').next().unwrap();
            match service {
                "secretsmanager" => {
                    assert!(
                        resource.contains(":secret:${SecretPrefix}*"),
                        "{name}: {action} must be limited to the SecretPrefix, is {resource}"
                    );
                    if !is_api {
                        assert_eq!(
                            action, "secretsmanager:GetSecretValue",
                            "{name}: only the API manages connection secrets"
                        );
                    }
                }
                "scheduler" => assert!(
                    resource.contains(":schedule/${ScheduleGroup}/*"),
                    "{name}: {action} must be limited to the stack's schedule group, is {resource}"
                ),
                "iam" => {
                    assert_eq!(action, "iam:PassRole", "{name}");
                    assert!(resource.contains("SchedulerRole"), "{name}: {resource}");
                }
                "dynamodb" => {
                    assert!(resource.contains("Table"), "{name}: {resource}");
                    assert!(
                        is_api || action != "dynamodb:DeleteItem",
                        "{name}: only the API deletes items"
                    );
                    assert!(
                        ![
                            "dynamodb:Scan",
                            "dynamodb:DeleteTable",
                            "dynamodb:UpdateTable"
                        ]
                        .contains(&action.as_str()),
                        "{name}: {action} is never needed"
                    );
                }
                // E-mail notifications: only the expiry function sends, from this account's identities.
                "ses" => {
                    assert_eq!(action, "ses:SendEmail", "{name}");
                    assert!(resource.contains(":identity/*"), "{name}: {resource}");
                    assert_eq!(
                        code_uri(function),
                        "functions/expiry",
                        "{name}: only the expiry function sends e-mail"
                    );
                }
                // The IAM Identity Center provisioner: the stack's instance (its permission sets, and the
                // accounts assignments name) and the stack's identity store (its users, groups, memberships).
                "sso" => assert!(
                    resource.contains(":sso:::instance/${IdentityCenterInstanceId}")
                        && resource.contains(":sso:::permissionSet/${IdentityCenterInstanceId}/*")
                        && !resource.contains("instance/*"),
                    "{name}: {action} must be limited to the stack's Identity Center instance, is {resource}"
                ),
                "identitystore" => assert!(
                    resource.contains(":identitystore/${IdentityStoreId}"),
                    "{name}: {action} must be limited to the stack's identity store, is {resource}"
                ),
                other => panic!("{name}: unexpected service {other} ({action})"),
            }
        }
    }
}

// ----- (d) table ---------------------------------------------------------------------------------------------

fn key_schema(value: &Value) -> (String, String) {
    let mut hash = None;
    let mut range = None;
    for element in untagged(value).as_sequence().expect("KeySchema") {
        let name = string(get(element, "AttributeName").unwrap()).to_owned();
        match string(get(element, "KeyType").unwrap()) {
            "HASH" => hash = Some(name),
            "RANGE" => range = Some(name),
            other => panic!("unknown KeyType {other}"),
        }
    }
    (hash.expect("a HASH key"), range.expect("a RANGE key"))
}

#[test]
fn the_table_has_the_keys_indexes_and_ttl_the_store_uses() {
    let template = template();
    let tables = resources_of_type(&template, "AWS::DynamoDB::Table");
    assert_eq!(tables.len(), 1, "one table");
    let table = get(tables.values().next().unwrap(), "Properties").unwrap();

    assert_eq!(
        get(table, "BillingMode").map(string),
        Some("PAY_PER_REQUEST")
    );
    assert_eq!(
        key_schema(get(table, "KeySchema").unwrap()),
        ("pk".to_owned(), "sk".to_owned())
    );

    let indexes: BTreeSet<(String, String, String)> =
        untagged(get(table, "GlobalSecondaryIndexes").unwrap())
            .as_sequence()
            .unwrap()
            .iter()
            .map(|index| {
                assert_eq!(
                    get(index, "Projection")
                        .and_then(|p| get(p, "ProjectionType"))
                        .map(string),
                    Some("ALL"),
                    "{index:?}: the store reads whole items from indexes"
                );
                let (hash, range) = key_schema(get(index, "KeySchema").unwrap());
                (
                    string(get(index, "IndexName").unwrap()).to_owned(),
                    hash,
                    range,
                )
            })
            .collect();
    let expected: BTreeSet<(String, String, String)> = INDEXES
        .iter()
        .map(|(n, h, r)| (n.to_string(), h.to_string(), r.to_string()))
        .collect();
    assert_eq!(indexes, expected, "GSIs differ from INDEXES");

    let attributes: BTreeMap<String, String> =
        untagged(get(table, "AttributeDefinitions").unwrap())
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    string(get(a, "AttributeName").unwrap()).to_owned(),
                    string(get(a, "AttributeType").unwrap()).to_owned(),
                )
            })
            .collect();
    let mut key_attributes: BTreeSet<String> = names(&["pk", "sk"]);
    for (_, h, r) in INDEXES {
        key_attributes.insert(h.to_owned());
        key_attributes.insert(r.to_owned());
    }
    assert_eq!(
        attributes.keys().cloned().collect::<BTreeSet<_>>(),
        key_attributes,
        "AttributeDefinitions must list exactly the key attributes"
    );
    assert!(
        attributes.values().all(|t| t == "S"),
        "every key is a string: {attributes:?}"
    );

    let ttl = get(table, "TimeToLiveSpecification").expect("TTL");
    assert_eq!(get(ttl, "AttributeName").map(string), Some(TTL_ATTRIBUTE));
    assert_eq!(get(ttl, "Enabled").and_then(Value::as_bool), Some(true));
    let pitr = get(table, "PointInTimeRecoverySpecification")
        .and_then(|p| get(p, "PointInTimeRecoveryEnabled"))
        .and_then(Value::as_bool);
    assert_eq!(pitr, Some(true), "point-in-time recovery is on");
}
