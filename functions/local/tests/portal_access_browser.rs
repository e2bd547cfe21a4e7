//! The portal's **All access** view in a real browser (headless Chromium through chromedriver) against the real
//! `ticketbound-local` binary: an admin sees everyone's grants, filters them, revokes another person's active
//! grant after confirming, and downloads the filtered list as CSV, which has a header and one row per grant.
//!
//! Without `chromium` and `chromedriver` this test fails (it never passes silently): run
//! `bash infra/browser_deps.sh` (CI does).

mod browser;

use browser::{Browser, LocalServer};
use serde_json::{Value, json};

const ADMIN: (&str, &str) = ("admin@example.com", "ticketbound-admins");
const APPROVER: (&str, &str) = ("bob@example.com", "ticketbound-approvers");

/// A minimal RFC 4180 reader: records of fields, quoted or not.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let (mut record, mut field) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        !quoted && field.is_empty() && record.is_empty(),
        "a complete CSV file"
    );
    records
}

async fn request(server: &LocalServer, who: (&str, &str), resource: &str) -> String {
    let answer = server
        .api(
            "POST",
            "/v1/grants",
            who,
            &[],
            Some(json!({"resource": resource, "reason": "INC-7, \"urgent\"", "duration": "PT4H"})),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.json);
    answer.json["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_admin_revokes_another_persons_grant_from_all_access_and_exports_the_list_as_csv() {
    let server = LocalServer::start();
    for id in ["prod-db", "staging-db"] {
        let answer = server
            .api(
                "PUT",
                &format!("/v1/resources/{id}"),
                ADMIN,
                &[],
                Some(json!({"name": format!("Resource {id}"), "provisioner": {"kind": "none"}})),
            )
            .await;
        assert_eq!(answer.status, 201, "{}", answer.json);
    }
    let alice = request(&server, ("alice@example.com", ""), "prod-db").await;
    let approved = server
        .api(
            "POST",
            &format!("/v1/grants/{alice}/approve"),
            APPROVER,
            &[],
            None,
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.json);
    let dave = request(&server, ("dave@example.com", ""), "staging-db").await;

    let browser = Browser::start().await;
    browser.goto(&server.portal()).await;
    browser.act_as(ADMIN.0, ADMIN.1).await;
    browser.goto(&format!("{}#/all", server.portal())).await;
    browser.wait_text("h1", "All access").await;
    browser
        .wait_text(&format!("#all-{alice}"), "alice@example.com")
        .await;
    browser
        .wait_text(&format!("#all-{dave}"), "dave@example.com")
        .await;

    // Filtering by resource leaves Dave's request out.
    browser.type_into("#all-resource", "prod-db").await;
    browser.click("#all-apply").await;
    browser.wait_text(&format!("#all-{alice}"), "active").await;
    assert_eq!(browser.text(&format!("#all-{dave}")).await, None);

    // Revoking asks first; only the confirmation ends the grant.
    browser.click(&format!("#all-revoke-{alice}")).await;
    let still = server
        .api("GET", &format!("/v1/grants/{alice}"), ADMIN, &[], None)
        .await;
    assert_eq!(
        still.json["status"], "active",
        "nothing ends before the confirmation"
    );
    browser
        .type_into(&format!("#all-reason-{alice}"), "Left the on-call rota")
        .await;
    browser.click(&format!("#all-confirm-{alice}")).await;
    browser
        .wait_text(
            "#all-result",
            "Revoked: alice@example.com's access to prod-db",
        )
        .await;
    browser.wait_text(&format!("#all-{alice}"), "ended").await;
    let ended = server
        .api("GET", &format!("/v1/grants/{alice}"), ADMIN, &[], None)
        .await;
    assert_eq!(ended.json["status"], "ended");
    assert_eq!(ended.json["end_reason"], "revoked");
    assert_eq!(ended.json["ended_by"], ADMIN.0);
    // The reason the admin gave is in the grant's audit trail, on its end.
    let events = server
        .api(
            "GET",
            &format!("/v1/grants/{alice}/events"),
            ADMIN,
            &[],
            None,
        )
        .await;
    let ended_event = events.json["items"]
        .as_array()
        .expect("the trail")
        .iter()
        .find(|e| e["kind"] == "ended")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        ended_event["detail"]["comment"], "Left the on-call rota",
        "{}",
        events.json
    );
    browser.screenshot("all-access-revoked").await;

    // The export of every grant (filters cleared), downloaded through the page.
    browser.type_into("#all-resource", "").await;
    browser.click("#all-apply").await;
    browser.wait_text(&format!("#all-{dave}"), "pending").await;
    browser.click("#all-export").await;
    browser
        .wait_text("#all-result", "The export is ready")
        .await;
    let csv: Value = browser
        .script(
            "return document.getElementById('all-download').blob.text();",
            json!([]),
        )
        .await;
    let rows = parse_csv(csv.as_str().expect("the CSV text"));
    assert_eq!(rows[0][0], "id");
    assert_eq!(rows.len(), 3, "a header and one row per grant: {rows:?}");
    assert!(rows.iter().all(|r| r.len() == rows[0].len()));
    let row = |id: &str| {
        rows.iter()
            .find(|r| r[0] == id)
            .expect("a row per grant")
            .clone()
    };
    assert_eq!(row(&alice)[4], "ended");
    assert_eq!(row(&alice)[11], ADMIN.0);
    assert_eq!(row(&dave)[4], "pending");
    browser.quit().await;
}

/// No view scrolls sideways on a 390 px wide phone, and axe-core finds no accessibility violation on it.
async fn check_view(browser: &Browser, axe: &str, view: &str) {
    let (scroll, inner) = browser.widths().await;
    assert!(
        scroll <= inner,
        "{view} scrolls sideways on a phone: {scroll} px wide in a {inner} px window"
    );
    let violations = browser.accessibility_violations(axe).await;
    assert!(
        violations.is_empty(),
        "axe-core on {view}:\n{}",
        violations.join("\n")
    );
}

/// A grant whose provisioner removed the access but said that sessions outlive the removal: the ended card, the
/// grant page and All access say when the access was removed and until when sessions may last, on a phone, and
/// All access passes axe-core.
#[tokio::test]
async fn an_ended_grant_says_when_access_really_ended_on_a_phone() {
    use wiremock::matchers::{body_partial_json, method};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let axe = browser::axe_core();
    let provisioner = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"action": "revoke"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_removed": true, "sessions": "will_expire", "residual_until": "2099-01-01T00:00:00Z",
        })))
        .with_priority(1)
        .mount(&provisioner)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&provisioner)
        .await;
    let server = LocalServer::start();
    let made = server
        .api(
            "PUT",
            "/v1/resources/vpn",
            ADMIN,
            &[],
            Some(json!({"name": "VPN", "provisioner": {"kind": "webhook",
                        "url": format!("{}/vpn", provisioner.uri()), "secret": "provisioner-secret-0123456789"}})),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.json);
    let alice = ("alice@example.com", "");
    let id = request(&server, alice, "vpn").await;
    let approved = server
        .api(
            "POST",
            &format!("/v1/grants/{id}/approve"),
            APPROVER,
            &[],
            None,
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.json);
    let ended = server
        .api("POST", &format!("/v1/grants/{id}/revoke"), alice, &[], None)
        .await;
    assert_eq!(ended.status, 200, "{}", ended.json);
    assert!(
        ended.json["access_removed_at"].is_string(),
        "{}",
        ended.json
    );
    assert_eq!(ended.json["residual_until"], "2099-01-01T00:00:00Z");

    let browser = Browser::start().await;
    browser.window(390, 844).await;
    browser.goto(&server.portal()).await;
    browser.act_as(alice.0, alice.1).await;
    browser.click("#nav-access").await;
    let card = browser
        .wait_text(&format!("#grant-{id}"), "Access removed")
        .await;
    assert!(
        card.contains("Sessions may last until") && card.contains("2099"),
        "the ended card says until when sessions may last: {card}"
    );

    browser
        .goto(&format!("{}#/grant/{id}", server.portal()))
        .await;
    let page = browser.wait_text("main article", "Access removed").await;
    assert!(
        page.contains("Sessions may last until") && page.contains("2099"),
        "the grant page says until when sessions may last: {page}"
    );
    browser.screenshot("14-phone-access-really-ended").await;

    browser.act_as(ADMIN.0, ADMIN.1).await;
    browser.goto(&format!("{}#/all", server.portal())).await;
    browser.wait_text("h1", "All access").await;
    let row = browser
        .wait_text(&format!("#all-{id}"), "sessions may last until")
        .await;
    assert!(row.contains("2099"), "{row}");
    check_view(&browser, &axe, "All access").await;
    browser.screenshot("15-phone-all-access").await;
    browser.quit().await;
}
