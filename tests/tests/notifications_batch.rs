//! A closing that ends many grants arms one notification job for all of their `ended` messages, not one schedule
//! per grant, and every grant's requester is still told once.

use axum::http::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration as StdDuration;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::adapters::notify::{ChannelOptions, NotifyChannels, NotifyConfig};
use ticketbound::domain::{EndReason, TicketRef};
use ticketbound::ports::SystemClock;
use ticketbound::service::{Ports, Settings, Ticketbound};
use ticketbound_tests::*;

/// The notification schedules (`tb-<grant>-ntf-…`) the local scheduler holds.
async fn notification_schedules(scheduler: &LocalScheduler) -> Vec<String> {
    scheduler
        .pending()
        .await
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name.contains("-ntf-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closing_that_ends_three_grants_arms_one_notification_schedule_and_tells_each_requester_once()
 {
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let config = NotifyConfig::parse(
        &json!({"channels": [{"id": "slack", "kind": "slack",
            "url": format!("{}/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX", slack.uri()),
            "events": ["ended"]}]})
        .to_string(),
    )
    .expect("a valid configuration");
    let clock: Arc<dyn ticketbound::ports::Clock> = Arc::new(SystemClock);
    let store = embedded_store();
    let scheduler = LocalScheduler::new(store.clone());
    let ports = Ports {
        notifier: Arc::new(
            NotifyChannels::build(&config, &ChannelOptions::new(clock.clone())).expect("channels"),
        ),
        ..test_ports(
            Arc::new(store.clone()),
            Arc::new(scheduler.clone()),
            clock,
            StdDuration::from_secs(2),
        )
    };
    let app = Ticketbound::build(
        ports,
        Settings {
            retry: fast_retry(4),
            notifications: config
                .settings(Some("https://tb.example.com"))
                .expect("settings"),
            ..Settings::default()
        },
    );
    let router = local_router(app.clone());
    let (status, body) = call(
        &router,
        "PUT",
        "/v1/resources/prod-db",
        ADMIN,
        Some(r#"{"name": "Production database", "provisioner": {"kind": "none"}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ticket = TicketRef {
        connection: "jira-main".into(),
        key: "SEC-42".into(),
    };
    let ids = seed_bound_active_grants(&app, &ticket, "prod-db", 3).await;

    // The scheduler is not running yet: what the closing armed stays visible.
    let closing = app
        .close_ticket(&ticket, None, EndReason::TicketClosed)
        .await
        .unwrap();
    assert_eq!(closing.ended, 3);
    let armed = notification_schedules(&scheduler).await;
    assert_eq!(armed.len(), 1, "one job for the closing: {armed:?}");
    assert!(
        ids.iter().any(|id| armed[0] == format!("tb-{id}-ntf-end")),
        "{armed:?}"
    );

    scheduler.start(Arc::new(app.clone())).await.unwrap();
    let told = eventually(StdDuration::from_secs(10), || async {
        slack.received_requests().await.unwrap_or_default().len() >= 3
    })
    .await;
    assert!(told, "every requester is told");
    for id in &ids {
        let sent = eventually(StdDuration::from_secs(5), || async {
            let (_, grant) = call(&router, "GET", &format!("/v1/grants/{id}"), ADMIN, None).await;
            grant["notifications"].as_array().is_some_and(|n| {
                n.iter()
                    .any(|n| n["event"] == "ended" && n["state"] == "done")
            })
        })
        .await;
        assert!(sent, "grant {id} records its ended message as sent");
    }
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert_eq!(
        slack.received_requests().await.unwrap().len(),
        3,
        "one message per grant, none twice"
    );
    let links: Vec<String> = slack
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    for id in &ids {
        assert_eq!(
            links
                .iter()
                .filter(|body| body.contains(id.as_str()))
                .count(),
            1,
            "{id}"
        );
    }
    assert!(notification_schedules(&scheduler).await.is_empty());
}
