//! The AWS composition as the Lambda functions build it (`wiring::aws_app` from a `Config`), driven end to end
//! through the router: DynamoDB, EventBridge Scheduler and Secrets Manager on moto, the ticket system and the
//! provisioner on wiremock. Nothing is assembled by hand: what runs here is what `main` runs.

use std::collections::HashMap;

use axum::http::StatusCode;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use ticketbound::adapters::dynamodb::DynamoStore;
use ticketbound::adapters::secrets::SecretsManagerStore;
use ticketbound::config::Config;
use ticketbound::ports::GrantStore;
use ticketbound::wiring::aws_app;
use ticketbound_tests::{
    ADMIN, ALICE, APPROVER, DLQ_ARN, EXPIRY_ARN, SCHEDULER_ROLE_ARN, call, define_webhook_resource,
    local_router, moto_config, provisioner_actions, provisioner_ok, request_grant, schedule_names,
    unique,
};

/// A deployment's resources on moto (a table, a schedule group, a secret prefix) and the `Config` the
/// functions would read from their environment.
async fn deployment() -> (Config, aws_config::SdkConfig) {
    let sdk = moto_config().await;
    let table = unique("grants");
    DynamoStore::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
        .await
        .expect("create table on moto");
    let group = unique("tb");
    aws_sdk_scheduler::Client::new(&sdk)
        .create_schedule_group()
        .name(&group)
        .send()
        .await
        .expect("create schedule group on moto");
    let env: HashMap<&str, String> = HashMap::from([
        ("TABLE_NAME", table),
        ("SCHEDULE_GROUP", group),
        ("EXPIRY_FUNCTION_ARN", EXPIRY_ARN.to_owned()),
        ("SCHEDULER_ROLE_ARN", SCHEDULER_ROLE_ARN.to_owned()),
        ("SCHEDULE_DLQ_ARN", DLQ_ARN.to_owned()),
        ("SECRET_PREFIX", format!("{}/", unique("tb-secrets"))),
    ]);
    let config = Config::from_lookup(|name| env.get(name).cloned()).expect("config");
    (config, sdk)
}

/// A Jira Cloud site that accepts the bot's token.
async fn jira() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/myself"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "accountId": "acc-bot", "accountType": "atlassian", "displayName": "Bot",
            "emailAddress": "bot@acme.com", "active": true
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/rest/api/3/project/search"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"values": [{"key": "SEC", "name": "Security"}]})),
        )
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn the_aws_composition_requests_approves_and_revokes_a_grant_on_moto() {
    // Arrange: the deployment, the app exactly as the Lambda functions build it, its router.
    let (config, sdk) = deployment().await;
    let app = aws_app(&config).await.expect("aws_app");
    let router = local_router(app);
    let provisioner = provisioner_ok().await;
    let jira = jira().await;

    // A connection: its credentials go to Secrets Manager, never into the table or the answer.
    let body = json!({"id": "jira-main", "kind": "jira_cloud", "base_url": jira.uri(),
        "email": "bot@acme.com", "api_token": "jira-token-aws-1"});
    let (status, created) = call(
        &router,
        "POST",
        "/v1/connections",
        ADMIN,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(
        !created.to_string().contains("jira-token-aws-1"),
        "{created}"
    );
    let secrets = SecretsManagerStore::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        &config.secret_prefix,
        std::time::Duration::ZERO,
    );
    let stored = aws_sdk_secretsmanager::Client::new(&sdk)
        .get_secret_value()
        .secret_id(secrets.secret_name("jira-main"))
        .send()
        .await
        .expect("the connection's secret is in Secrets Manager");
    assert!(
        stored
            .secret_string()
            .unwrap_or_default()
            .contains("jira-token-aws-1")
    );

    // Act and assert: request, approve (an EventBridge schedule ends it), revoke (the schedule goes).
    define_webhook_resource(&router, "prod-db", &provisioner.uri()).await;
    let id = request_grant(&router, ALICE, "prod-db", "PT4H").await;
    let (status, grant) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/approve"),
        APPROVER,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{grant}");
    assert_eq!(grant["status"], "active");
    let scheduler = aws_sdk_scheduler::Client::new(&sdk);
    assert_eq!(
        schedule_names(&scheduler, &config.schedule_group).await,
        [format!("tb-{id}-exp")]
    );

    let (status, ended) = call(
        &router,
        "POST",
        &format!("/v1/grants/{id}/revoke"),
        ALICE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    assert_eq!(ended["status"], "ended");
    assert_eq!(ended["end_reason"], "revoked");
    assert_eq!(ended["deprovisioning"]["state"], "done");
    assert_eq!(provisioner_actions(&provisioner).await, ["grant", "revoke"]);
    assert!(
        schedule_names(&scheduler, &config.schedule_group)
            .await
            .is_empty()
    );

    // The grant is in the DynamoDB table the config names.
    let table = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table_name);
    let stored = table
        .get_grant(&id)
        .await
        .unwrap()
        .expect("grant in DynamoDB");
    assert_eq!(stored.status, ticketbound::domain::GrantStatus::Ended);
}
