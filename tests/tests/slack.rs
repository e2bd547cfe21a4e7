//! Deciding from Slack: the Slack app channel against a local fake of Slack's Web API (wiremock, answering as
//! Slack documents: `{"ok": true, ...}`, `{"ok": false, "error": ...}`, 429 with `Retry-After`), and
//! interactions built from Slack's documented `block_actions` and `view_submission` payloads, signed as Slack
//! signs them, through the local router and through an API Gateway event on the Lambda path.
//!
//! The application is the real one (embedded store, the in-process scheduler started, so notification jobs run
//! as they do in `ticketbound-local`).

mod support;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::http::StatusCode;
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sha2::Sha256;
use tower::ServiceExt;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Respond, ResponseTemplate};

use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::adapters::notify::{ChannelOptions, NotifyChannels, NotifyConfig};
use ticketbound::domain::notification::NotifyEvent;
use ticketbound::ports::{Job, SystemClock};
use ticketbound::service::{Ports, Settings, Ticketbound};
use ticketbound_tests::slack::interact;
use ticketbound_tests::*;

const PORTAL: &str = "https://tb.example.com";
const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const BOT_TOKEN: &str = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy";
/// The conversation approval requests are posted to.
const ACCESS_CHANNEL: &str = "C0ACCESS01";
/// The Slack user group mapped to the approver group.
const APPROVERS_GROUP: &str = "S0APPROVERS";
/// The Slack user group mapped to the Ticketbound group `dba`: Alice, Mallory and Bob.
const DBA_GROUP: &str = "S0DBA";
const DBA_MEMBERS: &[&str] = &["U0ALICE", "U0MALLORY", "U0BOB"];
/// The Slack user group mapped to the Ticketbound group `oncall`: [`ONCALL_SIZE`] people.
const ONCALL_GROUP: &str = "S0ONCALL";
const ONCALL_SIZE: usize = 40;
/// The most direct messages one approval request sends, as the operator guide states it.
const MAX_DIRECT_MESSAGES: usize = 25;

/// Slack's people: (user id, e-mail, e-mail confirmed, member of [`APPROVERS_GROUP`]).
const PEOPLE: &[(&str, &str, bool, bool)] = &[
    ("U0BOB", "bob@example.com", true, true),
    ("U0CAROL", "carol@example.com", true, true),
    ("U0ALICE", "alice@example.com", true, false),
    ("U0MALLORY", "mallory@example.com", true, false),
    // In the approvers' Slack group, but Slack has not confirmed the address: not trusted to be anyone.
    ("U0GHOST", "ghost@example.com", false, true),
];

// ------------------------------------------------------------------------------------------ the fake Slack

/// One Web API call as the fake received it: the method, the bearer token and the arguments (JSON, or the form
/// read into a JSON object).
#[derive(Clone, Debug)]
struct Call {
    method: String,
    auth: String,
    args: Value,
}

/// Slack's Web API: records every call, answers scripted responses per method first, then as Slack does.
#[derive(Clone, Default)]
struct FakeSlack {
    calls: Arc<Mutex<Vec<Call>>>,
    script: Arc<Mutex<BTreeMap<String, VecDeque<ResponseTemplate>>>>,
    next_ts: Arc<Mutex<u64>>,
}

fn form(body: &[u8]) -> Value {
    let text = String::from_utf8_lossy(body);
    let mut out = serde_json::Map::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(decode(k), Value::String(decode(v)));
    }
    Value::Object(out)
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Respond for FakeSlack {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let name = request
            .url
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let is_json = request
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let args = if is_json {
            serde_json::from_slice(&request.body).unwrap_or(Value::Null)
        } else {
            form(&request.body)
        };
        let auth = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        self.calls.lock().unwrap().push(Call {
            method: name.clone(),
            auth,
            args: args.clone(),
        });
        if let Some(scripted) = self
            .script
            .lock()
            .unwrap()
            .get_mut(&name)
            .and_then(VecDeque::pop_front)
        {
            return scripted;
        }
        let ok = |extra: Value| {
            let mut body = json!({"ok": true});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            ResponseTemplate::new(200).set_body_json(body)
        };
        let refuse = |error: &str| {
            ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": error}))
        };
        let arg = |k: &str| args[k].as_str().unwrap_or_default().to_owned();
        match name.as_str() {
            "chat.postMessage" => {
                let channel = arg("channel");
                // A message to a user id opens (or reuses) the direct message with them, a `D...` conversation.
                let channel = match channel.strip_prefix('U') {
                    Some(rest) => format!("D{rest}"),
                    None => channel,
                };
                let mut n = self.next_ts.lock().unwrap();
                *n += 1;
                ok(json!({"channel": channel, "ts": format!("1700000000.{:06}", *n)}))
            }
            "chat.update" => ok(json!({"channel": arg("channel"), "ts": arg("ts")})),
            "chat.postEphemeral" => ok(json!({"message_ts": "1700000001.000001"})),
            "views.open" => ok(json!({"view": {"id": "V0DENY"}})),
            "users.lookupByEmail" => match PEOPLE.iter().find(|p| p.1 == arg("email")) {
                Some(p) => ok(json!({"user": {"id": p.0}})),
                None => refuse("users_not_found"),
            },
            "users.info" => match PEOPLE.iter().find(|p| p.0 == arg("user")) {
                Some(p) => ok(json!({"user": {
                    "id": p.0, "deleted": false, "is_bot": false, "is_email_confirmed": p.2,
                    "profile": {"email": p.1, "real_name": p.1}
                }})),
                None => refuse("user_not_found"),
            },
            "usergroups.users.list" if arg("usergroup") == APPROVERS_GROUP => {
                let members: Vec<&str> = PEOPLE.iter().filter(|p| p.3).map(|p| p.0).collect();
                ok(json!({"users": members}))
            }
            "usergroups.users.list" if arg("usergroup") == DBA_GROUP => {
                ok(json!({"users": DBA_MEMBERS}))
            }
            "usergroups.users.list" if arg("usergroup") == ONCALL_GROUP => {
                let members: Vec<String> = (1..=ONCALL_SIZE)
                    .map(|n| format!("U0ONCALL{n:02}"))
                    .collect();
                ok(json!({"users": members}))
            }
            "usergroups.users.list" => refuse("no_such_subteam"),
            _ => refuse("unknown_method"),
        }
    }
}

impl FakeSlack {
    fn calls(&self, method: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    fn answer_next(&self, method: &str, responses: Vec<ResponseTemplate>) {
        self.script
            .lock()
            .unwrap()
            .entry(method.to_owned())
            .or_default()
            .extend(responses);
    }

    async fn wait_for(&self, method: &str, check: impl Fn(&[Call]) -> bool) -> Vec<Call> {
        let ok = eventually(StdDuration::from_secs(15), || async {
            check(&self.calls(method))
        })
        .await;
        let calls = self.calls(method);
        assert!(ok, "{method}: never got there; calls: {calls:#?}");
        calls
    }
}

// ------------------------------------------------------------------------------------------ the harness

/// Every log line of this test binary, at every level.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_logs() -> Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        logs
    })
    .clone()
}

struct Stack {
    app: Ticketbound,
    router: axum::Router,
    slack: FakeSlack,
    _server: MockServer,
    scheduler: LocalScheduler,
    /// This test's turn (a guard on [`TIMING`]): shared with the other tests, or alone for one that times
    /// Ticketbound's answer.
    _turn: Box<dyn std::any::Any + Send + Sync>,
}

/// Tests that time the answer to Slack run alone, so that a busy machine running the others beside them never
/// eats the margin between Ticketbound's deadline and the bound they assert.
static TIMING: std::sync::LazyLock<Arc<tokio::sync::RwLock<()>>> =
    std::sync::LazyLock::new(|| Arc::new(tokio::sync::RwLock::new(())));

/// The application with a Slack app channel pointed at the fake, built through the composition root, its
/// scheduler started, and a resource `prod-db` without a provisioner decided by the approver group. Three Slack
/// user groups are mapped: [`APPROVERS_GROUP`] to the approver group, [`DBA_GROUP`] to `dba` and
/// [`ONCALL_GROUP`] to `oncall`.
async fn stack() -> Stack {
    stack_with(true).await
}

/// The stack, with its scheduler running jobs as they fall due (`run_jobs`) or idle, as a scheduler that
/// fires later than the test looks (AWS's one-time schedules fire seconds to a minute after their time).
async fn stack_with(run_jobs: bool) -> Stack {
    let turn = Box::new(TIMING.clone().read_owned().await);
    stack_in_turn(run_jobs, turn).await
}

/// The stack for a test that times the answer: it runs when no other test of this file does.
async fn timed_stack(run_jobs: bool) -> Stack {
    let turn = Box::new(TIMING.clone().write_owned().await);
    stack_in_turn(run_jobs, turn).await
}

async fn stack_in_turn(run_jobs: bool, turn: Box<dyn std::any::Any + Send + Sync>) -> Stack {
    let _ = captured_logs();
    let server = MockServer::start().await;
    let slack = FakeSlack::default();
    Mock::given(method("POST"))
        .respond_with(slack.clone())
        .mount(&server)
        .await;
    let config = json!({
        "channels": [{
            "id": "slack-app", "kind": "slack_app",
            "bot_token": BOT_TOKEN, "signing_secret": SIGNING_SECRET,
            "channel": ACCESS_CHANNEL, "api_url": format!("{}/api", server.uri()),
            "user_groups": {APPROVERS_GROUP: "ticketbound-approvers", DBA_GROUP: "dba", ONCALL_GROUP: "oncall"},
        }],
        "approver_emails": ["bob@example.com"],
    });
    let config = NotifyConfig::parse(&config.to_string()).expect("a valid configuration");
    let clock = Arc::new(SystemClock);
    let store = embedded_store();
    let scheduler = LocalScheduler::new(store.clone());
    let ports = Ports {
        notifier: Arc::new(
            NotifyChannels::build(
                &config,
                &ChannelOptions {
                    timeout: StdDuration::from_secs(2),
                    ..ChannelOptions::new(clock.clone())
                },
            )
            .expect("channels"),
        ),
        // Real ticket-system clients: a test binds requests to a Jira Cloud issue on wiremock.
        ..ticket_ports(
            Arc::new(store.clone()),
            Arc::new(scheduler.clone()),
            clock,
            &temp_dir("slack").join("secrets.json"),
            quick_policy(),
        )
    };
    let app = Ticketbound::build(
        ports,
        Settings {
            retry: fast_retry(4),
            notifications: config.settings(Some(PORTAL)).expect("settings"),
            ..Settings::default()
        },
    );
    if run_jobs {
        scheduler
            .start(Arc::new(app.clone()))
            .await
            .expect("scheduler");
    }
    let router = local_router(app.clone());
    let reply = resources::put(
        &router,
        "prod-db",
        &json!({"name": "Production database", "provisioner": {"kind": "none"}}),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    Stack {
        app,
        router,
        slack,
        _server: server,
        _turn: turn,
        scheduler,
    }
}

/// Requests `prod-db` as Alice and waits for the request's message in the access channel; the grant id.
async fn requested(s: &Stack) -> String {
    let id = request_grant(&s.router, ALICE, "prod-db", "PT4H").await;
    s.slack
        .wait_for("chat.postMessage", |calls| {
            calls.iter().any(|c| {
                c.args["channel"] == ACCESS_CHANNEL && c.args.to_string().contains(id.as_str())
            })
        })
        .await;
    id
}

fn now() -> String {
    time::OffsetDateTime::now_utc().unix_timestamp().to_string()
}

fn sign(timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SIGNING_SECRET.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Slack's `block_actions` payload for `user` pressing the button `action` (carrying `grant`) in `channel`, as
/// the form body Slack posts.
fn button(user: &str, action: &str, grant: &str, channel: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": "T0TEAM"},
        "api_app_id": "A0APP",
        "token": "deprecated-verification-token",
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": channel, "is_ephemeral": false},
        "trigger_id": "12345.98765.abcd2358fdea",
        "team": {"id": "T0TEAM", "domain": "example"},
        "channel": {"id": channel, "name": "access-requests"},
        "response_url": "https://hooks.slack.com/actions/T0TEAM/1/abc",
        "actions": [{
            "action_id": action, "block_id": "decide", "type": "button", "value": grant,
            "text": {"type": "plain_text", "text": action}, "action_ts": "1700000002.000001"
        }]
    });
    format!("payload={}", encode(&payload.to_string()))
}

/// Slack's `view_submission` payload of the deny dialog, with `comment`.
fn deny_dialog(user: &str, grant: &str, channel: &str, comment: &str) -> String {
    let payload = json!({
        "type": "view_submission",
        "team": {"id": "T0TEAM", "domain": "example"},
        "user": {"id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": "T0TEAM"},
        "api_app_id": "A0APP",
        "trigger_id": "12345.98765.efgh",
        "view": {
            "id": "V0DENY", "type": "modal", "callback_id": "tb_deny",
            "private_metadata": json!({"grant": grant, "channel": channel}).to_string(),
            "state": {"values": {"comment": {"comment": {"type": "plain_text_input", "value": comment}}}},
            "hash": "156772938.1827394"
        }
    });
    format!("payload={}", encode(&payload.to_string()))
}

/// Posts `body` signed now, as Slack does.
async fn signed(router: &axum::Router, body: &str) -> Reply {
    let ts = now();
    interact(router, Some(&ts), Some(&sign(&ts, body)), body).await
}

async fn grant(router: &axum::Router, id: &str) -> Value {
    let reply = grants::get(router, ADMIN, id).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.json
}

async fn audit_kinds(router: &axum::Router, id: &str) -> Vec<String> {
    let reply = grants::events(router, ADMIN, id).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn ephemeral_to(s: &Stack, user: &str) -> Vec<String> {
    s.slack
        .calls("chat.postEphemeral")
        .into_iter()
        .filter(|c| c.args["user"] == user)
        .map(|c| c.args["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The chat messages grant `id` records (conversation, ts), once its approval request was posted.
async fn posted_about(s: &Stack, id: &str) -> Vec<(String, String)> {
    let recorded = eventually(StdDuration::from_secs(15), || async {
        grant(&s.router, id).await["notifications"][0]["state"] == "done"
    })
    .await;
    let shown = grant(&s.router, id).await;
    assert!(recorded, "{shown}");
    shown["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["messages"].as_array().cloned().unwrap_or_default())
        .map(|m| {
            (
                m["channel"].as_str().unwrap().to_owned(),
                m["ts"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits until every message in `at` was updated to say `line`, with no decision button left.
async fn all_updated(s: &Stack, at: &[(String, String)], line: &str) {
    s.slack
        .wait_for("chat.update", |calls| {
            at.iter().all(|(channel, ts)| {
                calls.iter().any(|c| {
                    c.args["channel"] == channel.as_str()
                        && c.args["ts"] == ts.as_str()
                        && c.args["blocks"].to_string().contains(line)
                        && !c.args["blocks"].to_string().contains("\"approve\"")
                })
            })
        })
        .await;
}

// ------------------------------------------------------------------------------------------ the tests

#[tokio::test]
async fn an_approval_request_is_posted_with_its_buttons_to_the_channel_and_the_approver() {
    let s = stack().await;
    let id = requested(&s).await;

    let posts = s
        .slack
        .wait_for("chat.postMessage", |calls| calls.len() >= 2)
        .await;
    let to_channel = posts
        .iter()
        .find(|c| c.args["channel"] == ACCESS_CHANNEL)
        .unwrap();
    let blocks = to_channel.args["blocks"].to_string();
    for expected in [
        "alice@example.com",
        "prod-db",
        "PT4H",
        "INC-7 debugging",
        "Approvals: 0 of 1",
        "\"approve\"",
        "\"deny\"",
        &format!("{PORTAL}/#/grant/{id}"),
    ] {
        assert!(blocks.contains(expected), "{expected} in {blocks}");
    }
    assert!(
        posts.iter().any(|c| c.args["channel"] == "U0BOB"),
        "a direct message to the approver Slack finds by e-mail"
    );
    assert!(
        !posts.iter().any(|c| c.args["channel"] == "U0ALICE"),
        "nothing to the requester"
    );
    assert!(
        posts
            .iter()
            .all(|c| c.auth == format!("Bearer {BOT_TOKEN}"))
    );
    let posted = posted_about(&s, &id).await;
    assert_eq!(
        posted,
        [
            (ACCESS_CHANNEL.to_owned(), "1700000000.000001".to_owned()),
            ("D0BOB".to_owned(), "1700000000.000002".to_owned()),
            // The other members of the Slack group mapped to the approver group (Bob is told once).
            ("D0CAROL".to_owned(), "1700000000.000003".to_owned()),
            ("D0GHOST".to_owned(), "1700000000.000004".to_owned()),
        ],
        "where each message went is kept to update it later"
    );
}

#[tokio::test]
async fn approving_from_slack_grants_as_the_portal_would_and_every_message_says_who_decided() {
    let s = stack().await;
    let id = requested(&s).await;
    let posted = posted_about(&s, &id).await;
    assert_eq!(
        posted.len(),
        4,
        "the channel's and the approvers' (Bob, Carol, Ghost): {posted:?}"
    );

    let reply = signed(&s.router, &button("U0BOB", "approve", &id, ACCESS_CHANNEL)).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let shown = grant(&s.router, &id).await;
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["decided_by"], "bob@example.com");
    let events = grants::events(&s.router, ADMIN, &id).await.json;
    let approved = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "approved")
        .expect("an approved event");
    assert_eq!(approved["actor"], "bob@example.com");
    all_updated(&s, &posted, "Approved by bob@example.com (1 of 1)").await;
    // Alice hears directly, with her own buttons.
    let dm = s
        .slack
        .wait_for("chat.postMessage", |calls| {
            calls.iter().any(|c| c.args["channel"] == "U0ALICE")
        })
        .await
        .into_iter()
        .find(|c| c.args["channel"] == "U0ALICE")
        .unwrap();
    let blocks = dm.args["blocks"].to_string();
    assert!(
        blocks.contains("\"done\"") && blocks.contains("\"extend\""),
        "{blocks}"
    );
}

#[tokio::test]
async fn denying_from_slack_asks_for_a_comment_and_the_submitted_dialog_denies_with_it() {
    let s = stack().await;
    let id = requested(&s).await;
    let posted = posted_about(&s, &id).await;

    let reply = signed(&s.router, &button("U0BOB", "deny", &id, ACCESS_CHANNEL)).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let opened = s.slack.wait_for("views.open", |c| !c.is_empty()).await;
    assert_eq!(opened[0].args["trigger_id"], "12345.98765.abcd2358fdea");
    assert_eq!(
        grant(&s.router, &id).await["status"],
        "pending",
        "the dialog decides nothing"
    );

    let reply = signed(
        &s.router,
        &deny_dialog("U0BOB", &id, ACCESS_CHANNEL, "use the read replica"),
    )
    .await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(reply.text.is_empty(), "an empty 200 closes the dialog");
    let shown = grant(&s.router, &id).await;
    assert_eq!(shown["status"], "denied");
    assert_eq!(shown["decided_by"], "bob@example.com");
    let events = grants::events(&s.router, ADMIN, &id).await.json;
    let denied = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "denied")
        .cloned()
        .unwrap();
    assert_eq!(denied["detail"]["comment"], "use the read replica");
    // Alice's message says who denied and what they said.
    s.slack
        .wait_for("chat.postMessage", |calls| {
            calls.iter().any(|c| {
                c.args["channel"] == "U0ALICE"
                    && c.args["blocks"]
                        .to_string()
                        .contains("They said: \\\"use the read replica\\\"")
            })
        })
        .await;
    all_updated(&s, &posted, "Denied by bob@example.com").await;
}

#[tokio::test]
async fn someone_the_policy_cannot_judge_is_sent_to_the_portal_and_nothing_changes() {
    let s = stack().await;
    let id = requested(&s).await;
    let before = audit_kinds(&s.router, &id).await;

    // Mallory is a Slack member with a confirmed address but no approver; Ghost is in the approvers' Slack
    // group but Slack never confirmed the address; Alice may not approve her own request; Slack does not know
    // U0STRANGER (`user_not_found`).
    for (user, action) in [
        ("U0MALLORY", "approve"),
        ("U0MALLORY", "deny"),
        ("U0GHOST", "approve"),
        ("U0ALICE", "approve"),
        ("U0STRANGER", "approve"),
    ] {
        let reply = signed(&s.router, &button(user, action, &id, ACCESS_CHANNEL)).await;
        assert_eq!(reply.status, StatusCode::OK, "{user}: {}", reply.text);
        let told = ephemeral_to(&s, user);
        assert!(
            told.last()
                .is_some_and(|t| t.contains("portal") && t.contains(&format!("#/grant/{id}"))),
            "{user} {action}: {told:?}"
        );
    }

    assert!(s.slack.calls("views.open").is_empty(), "no dialog for them");
    // A deny dialog's submission is checked again: Mallory's (from a forwarded dialog) denies nothing.
    let reply = signed(
        &s.router,
        &deny_dialog("U0MALLORY", &id, ACCESS_CHANNEL, "mine now"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(
        ephemeral_to(&s, "U0MALLORY")
            .last()
            .is_some_and(|t| t.contains("portal")),
        "{:?}",
        ephemeral_to(&s, "U0MALLORY")
    );
    assert_eq!(grant(&s.router, &id).await["status"], "pending");
    assert_eq!(audit_kinds(&s.router, &id).await, before);
}

/// An interaction that must be refused: what it is, its timestamp and signature headers, its body, and the
/// status and error code expected.
type Refused<'a> = (
    &'a str,
    Option<String>,
    Option<String>,
    String,
    StatusCode,
    &'a str,
);

#[tokio::test]
async fn forged_stale_replayed_malformed_and_oversize_interactions_change_nothing() {
    let s = stack().await;
    let id = requested(&s).await;
    let body = button("U0BOB", "approve", &id, ACCESS_CHANNEL);
    let ts = now();
    let stale = (time::OffsetDateTime::now_utc().unix_timestamp() - 6 * 60).to_string();
    let mut forged = sign(&ts, &body);
    forged.replace_range(forged.len() - 2.., "00");
    let other_body = button(
        "U0BOB",
        "approve",
        "01JD3AAAAAAAAAAAAAAAAAAAAA",
        ACCESS_CHANNEL,
    );
    let oversize = format!("{body}&pad={}", "x".repeat(70 * 1024));
    let malformed = "payload=%7Bnot%20json";
    let unknown = format!(
        "payload={}",
        encode(&json!({"type": "shortcut", "user": {"id": "U0BOB"}}).to_string())
    );

    let cases: Vec<Refused> = vec![
        (
            "no signature",
            Some(ts.clone()),
            None,
            body.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            "no timestamp",
            None,
            Some(sign(&ts, &body)),
            body.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            "a forged signature",
            Some(ts.clone()),
            Some(forged),
            body.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            "another body's signature",
            Some(ts.clone()),
            Some(sign(&ts, &other_body)),
            body.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            "another time's signature",
            Some(ts.clone()),
            Some(sign(&stale, &body)),
            body.clone(),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            "a stale timestamp",
            Some(stale.clone()),
            Some(sign(&stale, &body)),
            body.clone(),
            StatusCode::UNAUTHORIZED,
            "stale_request",
        ),
        (
            "a malformed payload",
            Some(ts.clone()),
            Some(sign(&ts, malformed)),
            malformed.to_owned(),
            StatusCode::BAD_REQUEST,
            "malformed_interaction",
        ),
        (
            "an interaction this app never sends",
            Some(ts.clone()),
            Some(sign(&ts, &unknown)),
            unknown.clone(),
            StatusCode::BAD_REQUEST,
            "malformed_interaction",
        ),
        (
            "an oversize body",
            Some(ts.clone()),
            Some(sign(&ts, &oversize)),
            oversize.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
    ];
    for (what, ts, sig, body, status, code) in cases {
        let reply = interact(&s.router, ts.as_deref(), sig.as_deref(), &body).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.text);
        assert_eq!(reply.json["error"]["code"], code, "{what}: {}", reply.text);
        assert!(reply.json["error"]["message"].is_string(), "{what}");
        assert!(!reply.text.contains(SIGNING_SECRET), "{what}");
        assert_eq!(grant(&s.router, &id).await["status"], "pending", "{what}");
    }
    assert!(
        s.slack.calls("users.info").is_empty(),
        "nothing unverified is even looked up"
    );

    // The genuine request counts once; the same signed request again is a replay.
    let sig = sign(&ts, &body);
    let first = interact(&s.router, Some(&ts), Some(&sig), &body).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let events = audit_kinds(&s.router, &id).await;
    let replayed = interact(&s.router, Some(&ts), Some(&sig), &body).await;
    assert_eq!(
        replayed.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        replayed.text
    );
    assert_eq!(replayed.json["error"]["code"], "replayed_request");
    assert_eq!(audit_kinds(&s.router, &id).await, events);
}

#[tokio::test]
async fn a_slack_decision_racing_a_portal_decision_has_one_winner_and_every_message_shows_it() {
    let s = stack().await;
    let id = requested(&s).await;
    let posted = posted_about(&s, &id).await;
    assert_eq!(
        posted.len(),
        4,
        "the channel's and the approvers' (Bob, Carol, Ghost): {posted:?}"
    );

    let slack_body = button("U0BOB", "approve", &id, ACCESS_CHANNEL);
    let (from_slack, from_portal) = tokio::join!(
        signed(&s.router, &slack_body),
        grants::decide(&s.router, APPROVER2, &id, "deny", Some("not today")),
    );

    assert_eq!(from_slack.status, StatusCode::OK, "{}", from_slack.text);
    let shown = grant(&s.router, &id).await;
    let kinds = audit_kinds(&s.router, &id).await;
    let decisions = kinds
        .iter()
        .filter(|k| *k == "approved" || *k == "denied")
        .count();
    assert_eq!(decisions, 1, "exactly one decision: {kinds:?}");
    let line = if shown["status"] == "active" {
        assert_eq!(shown["decided_by"], "bob@example.com");
        assert_eq!(
            from_portal.status,
            StatusCode::CONFLICT,
            "{}",
            from_portal.text
        );
        assert_eq!(from_portal.json["error"]["code"], "grant_not_pending");
        "Approved by bob@example.com"
    } else {
        assert_eq!(shown["status"], "denied");
        assert_eq!(shown["decided_by"], "carol@example.com");
        assert_eq!(from_portal.status, StatusCode::OK, "{}", from_portal.text);
        let told = ephemeral_to(&s, "U0BOB");
        assert!(
            told.iter()
                .any(|t| t.contains("Too late") && t.contains("Denied by carol@example.com")),
            "Bob is told who won: {told:?}"
        );
        "Denied by carol@example.com"
    };
    all_updated(&s, &posted, line).await;
}

#[tokio::test]
async fn im_done_from_slack_ends_the_requesters_own_grant() {
    let s = stack().await;
    let id = requested(&s).await;
    let reply = signed(&s.router, &button("U0BOB", "approve", &id, ACCESS_CHANNEL)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    let reply = signed(&s.router, &button("U0ALICE", "done", &id, "D0ALICE")).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let shown = grant(&s.router, &id).await;
    assert_eq!(shown["status"], "ended");
    assert_eq!(shown["ended_by"], "alice@example.com");
    // Mallory pressing Alice's button (a forwarded payload) ends nothing of hers.
    let id2 = request_grant(&s.router, ALICE, "prod-db", "PT1H").await;
    grants::decide(&s.router, APPROVER, &id2, "approve", None).await;
    let reply = signed(&s.router, &button("U0MALLORY", "done", &id2, "D0MALLORY")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(grant(&s.router, &id2).await["status"], "active");
}

#[tokio::test]
async fn a_rate_limited_post_is_retried_after_retry_after_and_a_refusal_is_recorded() {
    let s = stack().await;
    s.slack.answer_next(
        "chat.postMessage",
        vec![
            ResponseTemplate::new(429).insert_header("retry-after", "1"),
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": false, "error": "channel_not_found"})),
        ],
    );

    let id = request_grant(&s.router, ALICE, "prod-db", "PT4H").await;

    let settled = eventually(StdDuration::from_secs(15), || async {
        grant(&s.router, &id).await["notifications"][0]["state"] == "failed"
    })
    .await;
    let entry = grant(&s.router, &id).await["notifications"][0].clone();
    assert!(settled, "{entry}");
    assert_eq!(entry["attempts"], 2, "{entry}");
    let error = entry["last_error"].as_str().unwrap();
    assert!(error.contains("channel_not_found"), "{error}");
    assert!(!error.contains(BOT_TOKEN), "{error}");
    let posts = s.slack.calls("chat.postMessage");
    assert_eq!(posts.len(), 2, "one retry, then no more: {posts:#?}");
    let logs = String::from_utf8_lossy(&captured_logs().0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("notification FAILED") && logs.contains("channel_not_found"),
        "the failure is logged"
    );
    for secret in [BOT_TOKEN, SIGNING_SECRET] {
        assert!(!logs.contains(secret), "a credential reached the logs");
    }
}

#[tokio::test]
async fn a_slack_internal_error_is_retried_until_it_posts() {
    let s = stack().await;
    s.slack.answer_next(
        "chat.postMessage",
        vec![
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": false, "error": "internal_error"})),
        ],
    );

    let id = request_grant(&s.router, ALICE, "prod-db", "PT4H").await;

    let done = eventually(StdDuration::from_secs(15), || async {
        grant(&s.router, &id).await["notifications"][0]["state"] == "done"
    })
    .await;
    assert!(done, "{}", grant(&s.router, &id).await);
}

#[tokio::test]
async fn approving_through_the_api_gateway_event_on_the_lambda_path() {
    let s = stack().await;
    let id = requested(&s).await;
    let body = button("U0BOB", "approve", &id, ACCESS_CHANNEL);
    let ts = now();
    let mut event: Value =
        serde_json::from_str(include_str!("../fixtures/apigw-v2-post-jwt.json")).unwrap();
    let path = ticketbound::http::slack::INTERACTIONS_ROUTE;
    event["rawPath"] = path.into();
    event["rawQueryString"] = "".into();
    for drop in ["queryStringParameters", "pathParameters"] {
        event.as_object_mut().unwrap().remove(drop);
    }
    event["routeKey"] = format!("POST {path}").into();
    event["requestContext"]["routeKey"] = event["routeKey"].clone();
    event["requestContext"]["http"]["method"] = "POST".into();
    event["requestContext"]["http"]["path"] = path.into();
    // No authorizer on this route: Slack sends no JWT.
    event["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    event["headers"] = json!({
        "content-type": "application/x-www-form-urlencoded",
        "host": "api.example.com",
        "x-slack-request-timestamp": ts,
        "x-slack-signature": sign(&ts, &body),
    });
    {
        use base64::Engine;
        // API Gateway hands a form body to Lambda base64-encoded.
        event["body"] = base64::engine::general_purpose::STANDARD
            .encode(&body)
            .into();
        event["isBase64Encoded"] = true.into();
    }
    let request =
        lambda_http::request::from_str(&event.to_string()).expect("an API Gateway v2 event");

    let response = lambda_router(s.app.clone()).oneshot(request).await.unwrap();

    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let stored = s.app.store().get_grant(&id).await.unwrap().unwrap();
    assert_eq!(stored.status.as_str(), "active");
    assert_eq!(stored.decided_by.as_deref(), Some("bob@example.com"));
}

/// A decision from Slack does not wait for the scheduler to fire its notification: by the time Slack has its
/// answer, every message about the request says who decided.
#[tokio::test]
async fn a_decision_from_slack_updates_every_message_before_slack_is_answered() {
    let s = stack_with(false).await;
    let id = request_grant(&s.router, ALICE, "prod-db", "PT4H").await;
    // Nothing fires on its own here: the request's notification runs as its schedule would.
    s.app
        .run_job(&Job::notify(NotifyEvent::ApprovalRequested, &id, 0))
        .await
        .expect("the approval request is posted");
    let posted = posted_about(&s, &id).await;
    assert!(
        posted.len() >= 2,
        "the channel and the approver: {posted:?}"
    );

    let reply = signed(&s.router, &button("U0BOB", "approve", &id, ACCESS_CHANNEL)).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let updates = s.slack.calls("chat.update");
    for (channel, ts) in &posted {
        assert!(
            updates.iter().any(|c| c.args["channel"] == channel.as_str()
                && c.args["ts"] == ts.as_str()
                && c.args["blocks"]
                    .to_string()
                    .contains("Approved by bob@example.com (1 of 1)")
                && !c.args["blocks"].to_string().contains("\"approve\"")),
            "{channel}/{ts} not updated when Slack was answered: {updates:#?}"
        );
    }
}

/// A deployment without a Slack app: a request without Slack's headers is refused as unsigned (401), one
/// carrying them is told there is no Slack app here (404); neither changes anything.
#[tokio::test]
async fn without_a_slack_app_an_unsigned_request_is_401_and_a_signed_one_404() {
    let (app, _store, _scheduler) = local_test_app();
    let router = local_router(app);
    let body = "payload=%7B%7D";

    let unsigned = interact(&router, None, None, body).await;
    let signed_elsewhere = interact(&router, Some(&now()), Some(&sign(&now(), body)), body).await;

    assert_eq!(
        unsigned.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        unsigned.text
    );
    assert_eq!(unsigned.json["error"]["code"], "invalid_signature");
    assert_eq!(
        signed_elsewhere.status,
        StatusCode::NOT_FOUND,
        "{}",
        signed_elsewhere.text
    );
    assert_eq!(
        signed_elsewhere.json["error"]["code"],
        "chat_app_not_configured"
    );
}

/// A request needing two approvals: the first, given in the portal, shows in every Slack message by the time
/// the approver has their answer ("1 of 2", and whose), with the buttons kept for the second approver.
#[tokio::test]
async fn the_first_of_two_approvals_shows_in_every_message_and_the_buttons_stay() {
    let s = stack().await;
    let reply = resources::put(
        &s.router,
        "prod-db",
        &json!({"name": "Production database", "provisioner": {"kind": "none"}, "approvals_required": 2}),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let id = requested(&s).await;
    let posted = posted_about(&s, &id).await;
    assert!(
        s.slack.calls("chat.postMessage")[0].args["blocks"]
            .to_string()
            .contains("Approvals: 0 of 2"),
        "the request says how many approvals it needs"
    );

    let reply = grants::decide(&s.router, APPROVER, &id, "approve", None).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json["status"], "pending", "{}", reply.text);
    let updates = s.slack.calls("chat.update");
    for (channel, ts) in &posted {
        assert!(
            updates.iter().any(|c| c.args["channel"] == channel.as_str()
                && c.args["ts"] == ts.as_str()
                && c.args["blocks"]
                    .to_string()
                    .contains("Approvals: 1 of 2 (bob@example.com)")
                && c.args["blocks"].to_string().contains("\"approve\"")),
            "{channel}/{ts} does not show the first approval: {updates:#?}"
        );
    }
}

#[tokio::test]
async fn a_request_withdrawn_in_the_portal_is_shown_cancelled_in_every_slack_message() {
    let s = stack().await;
    let id = requested(&s).await;
    let posted = posted_about(&s, &id).await;

    let reply = grants::decide(&s.router, ALICE, &id, "revoke", None).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    all_updated(&s, &posted, "Cancelled: withdrawn by the requester").await;
}

#[tokio::test]
async fn extend_from_slack_files_the_same_request_extending_the_grant() {
    let s = stack().await;
    let id = requested(&s).await;
    let reply = grants::decide(&s.router, APPROVER, &id, "approve", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    let reply = signed(&s.router, &button("U0ALICE", "extend", &id, "D0ALICE")).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let listed = grants::list(&s.router, ALICE, "status=pending").await;
    let items = listed.json["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{}", listed.text);
    assert_eq!(items[0]["extends"], id.as_str());
    assert_eq!(items[0]["resource"], "prod-db");
    assert_eq!(items[0]["duration"], "PT4H");
    assert_eq!(items[0]["requester"], "alice@example.com");
    assert!(
        ephemeral_to(&s, "U0ALICE")
            .iter()
            .any(|t| t.contains("Extension requested")),
        "{:?}",
        ephemeral_to(&s, "U0ALICE")
    );
}

#[tokio::test]
async fn an_approval_request_shows_the_bound_ticket_as_it_is_now() {
    let s = stack().await;
    let jira = MockServer::start().await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path_regex("^/rest/api/3/issue/SEC-42$"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(support::cloud_issue(
                "SEC-42",
                "In Progress",
                "indeterminate",
                Some(support::cloud_user("acc-alice", Some("alice@example.com"))),
            )),
        )
        .mount(&jira)
        .await;
    let (status, created) = call(
        &s.router,
        "POST",
        "/v1/connections",
        ADMIN,
        Some(&json!({"id": "jira-main", "kind": "jira_cloud", "base_url": jira.uri(), "email": "bot@acme.com", "api_token": "jira-token-1"}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let reply = grants::request(
        &s.router,
        ALICE,
        &json!({"resource": "prod-db", "reason": "INC-7 debugging", "duration": "PT4H",
                "ticket": {"connection": "jira-main", "key": "SEC-42"}}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);

    let posts = s
        .slack
        .wait_for("chat.postMessage", |calls| {
            calls.iter().any(|c| c.args["channel"] == ACCESS_CHANNEL)
        })
        .await;
    let blocks = posts[0].args["blocks"].to_string();
    assert!(
        blocks.contains("SEC-42: Summary of SEC-42 (In Progress)"),
        "{blocks}"
    );
    assert!(
        blocks.contains(&format!("{}/browse/SEC-42", jira.uri())),
        "{blocks}"
    );
}

// ------------------------------------------------------------------------------------------ approver groups

/// Puts a resource decided by the Ticketbound `group` alone (no approver named by e-mail).
async fn decided_by_group(s: &Stack, resource: &str, group: &str) {
    let reply = resources::put(
        &s.router,
        resource,
        &json!({"name": resource, "provisioner": {"kind": "none"}, "approvers": {"groups": [group]}}),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
}

/// The conversations the approval request of grant `id` was posted to, in order.
fn request_posted_to(s: &Stack, id: &str) -> Vec<String> {
    s.slack
        .calls("chat.postMessage")
        .into_iter()
        .filter(|c| {
            c.args["blocks"]
                .to_string()
                .contains(&format!("#/grant/{id}"))
        })
        .map(|c| c.args["channel"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn members_of_a_mapped_approver_group_get_direct_messages_a_decision_edits_but_not_the_requester()
 {
    let s = stack().await;
    decided_by_group(&s, "dba-db", "dba").await;
    let id = request_grant(&s.router, ALICE, "dba-db", "PT4H").await;

    let posted = posted_about(&s, &id).await;

    assert_eq!(
        posted,
        [
            (ACCESS_CHANNEL.to_owned(), "1700000000.000001".to_owned()),
            ("D0MALLORY".to_owned(), "1700000000.000002".to_owned()),
            ("D0BOB".to_owned(), "1700000000.000003".to_owned()),
        ],
        "the channel, then each member of the Slack group mapped to `dba` but Alice, who asks"
    );
    assert_eq!(
        request_posted_to(&s, &id),
        [ACCESS_CHANNEL, "U0MALLORY", "U0BOB"],
        "no direct message to the requester, though she is in the group"
    );
    let listed = s.slack.calls("usergroups.users.list");
    assert!(
        listed.iter().all(|c| c.args["usergroup"] == DBA_GROUP),
        "only the group that decides is listed: {listed:#?}"
    );

    // Mallory decides from her direct message, as a member of `dba` through the mapping.
    let reply = signed(&s.router, &button("U0MALLORY", "approve", &id, "D0MALLORY")).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let shown = grant(&s.router, &id).await;
    assert_eq!(shown["status"], "active", "{shown}");
    assert_eq!(shown["decided_by"], "mallory@example.com");
    all_updated(&s, &posted, "Approved by mallory@example.com (1 of 1)").await;

    // A group no Slack user group is mapped to: the channel's post is how its members hear.
    decided_by_group(&s, "ops-db", "ops").await;
    let listed = s.slack.calls("usergroups.users.list").len();
    let id = request_grant(&s.router, ALICE, "ops-db", "PT4H").await;

    let posted = posted_about(&s, &id).await;

    assert_eq!(posted.len(), 1, "{posted:?}");
    assert_eq!(request_posted_to(&s, &id), [ACCESS_CHANNEL]);
    assert_eq!(
        s.slack.calls("usergroups.users.list").len(),
        listed,
        "nothing to list"
    );
}

#[tokio::test]
async fn a_huge_approver_group_gets_no_more_direct_messages_than_the_cap() {
    let s = stack().await;
    decided_by_group(&s, "oncall-db", "oncall").await;
    let id = request_grant(&s.router, ALICE, "oncall-db", "PT4H").await;

    let posted = posted_about(&s, &id).await;

    let to = request_posted_to(&s, &id);
    assert_eq!(to[0], ACCESS_CHANNEL, "{to:?}");
    assert_eq!(
        to.len(),
        1 + MAX_DIRECT_MESSAGES,
        "the channel and {MAX_DIRECT_MESSAGES} of the {ONCALL_SIZE} members: {to:?}"
    );
    assert!(to[1..].iter().all(|c| c.starts_with("U0ONCALL")), "{to:?}");
    assert_eq!(posted.len(), 1 + MAX_DIRECT_MESSAGES, "each one is kept");
    assert_eq!(
        s.slack.calls("usergroups.users.list").len(),
        1,
        "the group is listed once"
    );
}

#[tokio::test]
async fn listing_an_approver_group_is_retried_after_retry_after_and_a_missing_scope_fails_the_message()
 {
    let s = stack().await;
    decided_by_group(&s, "dba-db", "dba").await;
    s.slack.answer_next(
        "usergroups.users.list",
        vec![ResponseTemplate::new(429).insert_header("retry-after", "1")],
    );

    let id = request_grant(&s.router, ALICE, "dba-db", "PT4H").await;

    let posted = posted_about(&s, &id).await;
    let entry = grant(&s.router, &id).await["notifications"][0].clone();
    assert_eq!(entry["attempts"], 2, "{entry}");
    assert_eq!(
        posted.iter().filter(|(c, _)| c.starts_with('D')).count(),
        2,
        "Mallory and Bob, once the group could be listed: {posted:?}"
    );

    // An app installed without `usergroups:read`: Slack refuses, and the request's message fails visibly.
    s.slack.answer_next(
        "usergroups.users.list",
        vec![ResponseTemplate::new(200).set_body_json(
            json!({"ok": false, "error": "missing_scope", "needed": "usergroups:read"}),
        )],
    );
    let id = request_grant(&s.router, MALLORY, "dba-db", "PT4H").await;

    let failed = eventually(StdDuration::from_secs(15), || async {
        grant(&s.router, &id).await["notifications"][0]["state"] == "failed"
    })
    .await;
    let entry = grant(&s.router, &id).await["notifications"][0].clone();
    assert!(failed, "{entry}");
    assert_eq!(entry["attempts"], 1, "not retried: {entry}");
    let error = entry["last_error"].as_str().unwrap();
    assert!(
        error.contains("usergroups.users.list") && error.contains("missing_scope"),
        "{error}"
    );
    assert!(!error.contains(BOT_TOKEN), "{error}");
}

// ------------------------------------------------------------------------------------------ slow Slack

/// What `users.info` answers for Bob, after `delay`.
fn bob_after(delay: StdDuration) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"ok": true, "user": {
            "id": "U0BOB", "deleted": false, "is_bot": false, "is_email_confirmed": true,
            "profile": {"email": "bob@example.com", "real_name": "Bob"}
        }}))
        .set_delay(delay)
}

/// A Web API answer `{"ok": true}` that comes only after `delay`.
fn ok_after(delay: StdDuration) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"ok": true}))
        .set_delay(delay)
}

/// Slack waits three seconds for the answer; Ticketbound answers within 2.5 s however slow Slack is, so this
/// bound leaves generous room for a busy machine.
const ANSWERED_WITHIN: StdDuration = StdDuration::from_millis(2900);

#[tokio::test]
async fn when_slack_cannot_say_in_time_who_pressed_nothing_changes_and_they_are_told_to_try_again()
{
    let s = timed_stack(true).await;
    let id = requested(&s).await;
    posted_about(&s, &id).await;
    let before = audit_kinds(&s.router, &id).await;
    // Who Bob is comes after 1.5 s, his Slack groups only after 10 s.
    s.slack.answer_next(
        "users.info",
        vec![bob_after(StdDuration::from_millis(1500))],
    );
    s.slack.answer_next(
        "usergroups.users.list",
        vec![ok_after(StdDuration::from_secs(10))],
    );

    let started = std::time::Instant::now();
    let reply = signed(&s.router, &button("U0BOB", "approve", &id, ACCESS_CHANNEL)).await;
    let took = started.elapsed();

    assert!(took < ANSWERED_WITHIN, "answered after {took:?}");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(grant(&s.router, &id).await["status"], "pending");
    assert_eq!(audit_kinds(&s.router, &id).await, before, "nothing changed");
    let told = ephemeral_to(&s, "U0BOB");
    assert!(
        told.last().is_some_and(|t| t.contains("try again")
            && t.contains("nothing was done")
            && t.contains(&format!("{PORTAL}/#/grant/{id}"))),
        "{told:?}"
    );
}

#[tokio::test]
async fn when_slack_can_take_nothing_in_time_the_answer_is_503_and_nothing_changes() {
    let s = timed_stack(true).await;
    let id = requested(&s).await;
    posted_about(&s, &id).await;
    let before = audit_kinds(&s.router, &id).await;
    // Who Bob is comes after 1.5 s, his Slack groups and the private answer only after 10 s.
    s.slack.answer_next(
        "users.info",
        vec![bob_after(StdDuration::from_millis(1500))],
    );
    s.slack.answer_next(
        "usergroups.users.list",
        vec![ok_after(StdDuration::from_secs(10))],
    );
    s.slack.answer_next(
        "chat.postEphemeral",
        vec![ok_after(StdDuration::from_secs(10))],
    );

    let started = std::time::Instant::now();
    let reply = signed(&s.router, &button("U0BOB", "approve", &id, ACCESS_CHANNEL)).await;
    let took = started.elapsed();

    assert!(took < ANSWERED_WITHIN, "answered after {took:?}");
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "Slack shows the person an error rather than nothing: {}",
        reply.text
    );
    assert_eq!(reply.json["error"]["code"], "chat_unavailable");
    assert!(!reply.text.contains(BOT_TOKEN));
    assert_eq!(grant(&s.router, &id).await["status"], "pending");
    assert_eq!(audit_kinds(&s.router, &id).await, before, "nothing changed");
}

#[tokio::test]
async fn a_decision_from_slack_is_answered_in_time_when_slack_is_slow_and_its_job_edits_the_messages()
 {
    // The scheduler idles until the answer is in: only the interaction itself runs meanwhile.
    let s = timed_stack(false).await;
    let id = request_grant(&s.router, ALICE, "prod-db", "PT4H").await;
    s.app
        .run_job(&Job::notify(NotifyEvent::ApprovalRequested, &id, 0))
        .await
        .expect("the approval request is posted");
    let posted = posted_about(&s, &id).await;
    // Who Bob is takes a second; the next edit and the next private answer take 10 s each.
    s.slack
        .answer_next("users.info", vec![bob_after(StdDuration::from_secs(1))]);
    s.slack
        .answer_next("chat.update", vec![ok_after(StdDuration::from_secs(10))]);
    s.slack.answer_next(
        "chat.postEphemeral",
        vec![ok_after(StdDuration::from_secs(10))],
    );

    let started = std::time::Instant::now();
    let reply = signed(&s.router, &button("U0BOB", "approve", &id, ACCESS_CHANNEL)).await;
    let took = started.elapsed();

    assert!(took < ANSWERED_WITHIN, "answered after {took:?}");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let shown = grant(&s.router, &id).await;
    assert_eq!(shown["status"], "active", "the decision stands: {shown}");
    assert_eq!(shown["decided_by"], "bob@example.com");

    // The durable job finishes what the answer could not wait for.
    s.scheduler
        .start(Arc::new(s.app.clone()))
        .await
        .expect("scheduler");
    let done = eventually(StdDuration::from_secs(20), || async {
        grant(&s.router, &id).await["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["event"] == "approved" && n["state"] == "done")
    })
    .await;
    assert!(done, "{}", grant(&s.router, &id).await);
    all_updated(&s, &posted, "Approved by bob@example.com (1 of 1)").await;
}

#[tokio::test]
async fn a_deny_dialog_slack_does_not_open_in_time_changes_nothing_and_asks_to_press_again() {
    let s = timed_stack(true).await;
    let id = requested(&s).await;
    posted_about(&s, &id).await;
    let before = audit_kinds(&s.router, &id).await;
    s.slack
        .answer_next("views.open", vec![ok_after(StdDuration::from_secs(10))]);

    let started = std::time::Instant::now();
    let reply = signed(&s.router, &button("U0BOB", "deny", &id, ACCESS_CHANNEL)).await;
    let took = started.elapsed();

    assert!(took < ANSWERED_WITHIN, "answered after {took:?}");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(grant(&s.router, &id).await["status"], "pending");
    assert_eq!(audit_kinds(&s.router, &id).await, before, "nothing changed");
    let told = ephemeral_to(&s, "U0BOB");
    assert!(
        told.last()
            .is_some_and(|t| t.contains("press Deny again") && t.contains("nothing was done")),
        "{told:?}"
    );
}

#[tokio::test]
async fn an_approval_short_of_the_quorum_from_slack_is_answered_in_time_when_slack_is_slow() {
    let s = timed_stack(true).await;
    let reply = resources::put(
        &s.router,
        "prod-db",
        &json!({"name": "Production database", "provisioner": {"kind": "none"}, "approvals_required": 2}),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let id = requested(&s).await;
    posted_about(&s, &id).await;
    // Who Bob is takes a second; showing his approval in the messages, and telling him, take 10 s each.
    s.slack
        .answer_next("users.info", vec![bob_after(StdDuration::from_secs(1))]);
    s.slack
        .answer_next("chat.update", vec![ok_after(StdDuration::from_secs(10))]);
    s.slack.answer_next(
        "chat.postEphemeral",
        vec![ok_after(StdDuration::from_secs(10))],
    );

    let started = std::time::Instant::now();
    let reply = signed(&s.router, &button("U0BOB", "approve", &id, ACCESS_CHANNEL)).await;
    let took = started.elapsed();

    assert!(took < ANSWERED_WITHIN, "answered after {took:?}");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let shown = grant(&s.router, &id).await;
    assert_eq!(shown["status"], "pending", "{shown}");
    assert_eq!(
        shown["approvals"][0]["by"], "bob@example.com",
        "the approval stands: {shown}"
    );
}
