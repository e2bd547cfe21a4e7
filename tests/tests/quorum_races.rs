//! Approvers racing on one request that needs two approvals (issue 13), on a multi-thread runtime, many rounds,
//! against the embedded store kept in a file and against DynamoDB on moto, with a real webhook provisioner
//! (wiremock) counting the calls it gets:
//!
//! - **the last slot**: one approval is in; two more approvers approve at once. The grant is activated once,
//!   the provisioner is called once, the winner is `decided_by` and in `approvals`, and the loser is told why
//!   (409 `grant_not_pending`, naming the state);
//! - **both slots**: two approvers approve a fresh request at once. Both approvals are recorded (the loser of
//!   the write re-reads and its approval still counts), the grant is activated once, provisioned once;
//! - **approve or deny**: the last slot's approval and another approver's denial at once: exactly one decides
//!   (active and provisioned once, or denied and never provisioned), the other is told which (409
//!   `grant_not_pending`);
//! - **a double click**: the same approver twice at once: one approval, the other answer 409
//!   `already_approved`.
//!
//! `QUORUM_ROUNDS` changes the number of rounds on the embedded store (DynamoDB runs a tenth of them);
//! `QUORUM_SEED` replays the random delays.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::Router;
use axum::http::StatusCode;
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Respond, ResponseTemplate};

use ticketbound::adapters::embedded::EmbeddedStore;
use ticketbound::adapters::local_scheduler::LocalScheduler;
use ticketbound::ports::{Clock, SystemClock};
use ticketbound::service::Ticketbound;
use ticketbound_tests::{
    ADMIN, AppParts, ManualClock, aws_test_app, build_app, call, fast_retry, local_router, temp_dir,
};

type Who = (&'static str, &'static str);
const DAVE: Who = ("dave@example.com", "vault-approvers");
const DORA: Who = ("dora@example.com", "vault-approvers");
const DINA: Who = ("dina@example.com", "vault-approvers");

/// A provisioner endpoint counting the calls per (grant id, action).
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<HashMap<(String, String), usize>>>);

impl Respond for Calls {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        if let Ok(body) = serde_json::from_slice::<Value>(&request.body) {
            let key = (
                body["grant"]["id"].as_str().unwrap_or_default().to_owned(),
                body["action"].as_str().unwrap_or_default().to_owned(),
            );
            *self.0.lock().expect("lock").entry(key).or_default() += 1;
        }
        ResponseTemplate::new(200)
    }
}

impl Calls {
    fn grants(&self, id: &str) -> usize {
        self.0
            .lock()
            .expect("lock")
            .get(&(id.to_owned(), "grant".to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

struct Race {
    router: Router,
    app: Ticketbound,
    calls: Calls,
    _provisioner: MockServer,
    rng: Mutex<fastrand::Rng>,
    seed: u64,
}

impl Race {
    async fn new(app: Ticketbound, seed: u64) -> Self {
        let router = local_router(app.clone());
        let provisioner = MockServer::start().await;
        let calls = Calls::default();
        Mock::given(wiremock::matchers::method("POST"))
            .respond_with(calls.clone())
            .mount(&provisioner)
            .await;
        let body = json!({
            "name": "Vault",
            "provisioner": {"kind": "webhook", "url": provisioner.uri(), "secret": "provisioner-secret-0123456789"},
            "approvers": {"groups": ["vault-approvers"]},
            "approvals_required": 2,
        });
        let (status, answer) = call(
            &router,
            "PUT",
            "/v1/resources/vault",
            ADMIN,
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        Self {
            router,
            app,
            calls,
            _provisioner: provisioner,
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            seed,
        }
    }

    async fn request(&self, round: usize) -> String {
        let requester = format!("engineer{round}@example.com");
        let body = json!({"resource": "vault", "reason": "racing", "duration": "PT1H"});
        let (status, answer) = call(
            &self.router,
            "POST",
            "/v1/grants",
            (requester.as_str(), ""),
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        answer["id"].as_str().unwrap().to_owned()
    }

    /// Both approve `id` at once.
    async fn approve_together(&self, id: &str, a: Who, b: Who) -> [(StatusCode, Value); 2] {
        self.decide_together(id, [(a, "approve"), (b, "approve")])
            .await
    }

    /// Both decide `id` at once, each with its verb (`approve` or `deny`), behind a barrier, each after a random
    /// number of yields or a short sleep.
    async fn decide_together(
        &self,
        id: &str,
        deciders: [(Who, &'static str); 2],
    ) -> [(StatusCode, Value); 2] {
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let mut racers = Vec::new();
        for (who, verb) in deciders {
            let (router, barrier, path) = (
                self.router.clone(),
                barrier.clone(),
                format!("/v1/grants/{id}/{verb}"),
            );
            let (sleep, yields) = {
                let mut rng = self.rng.lock().unwrap();
                (
                    (rng.u8(0..4) == 0).then(|| StdDuration::from_micros(rng.u64(0..1_500))),
                    rng.usize(0..20),
                )
            };
            racers.push(tokio::spawn(async move {
                barrier.wait().await;
                match sleep {
                    Some(d) => tokio::time::sleep(d).await,
                    None => {
                        for _ in 0..yields {
                            tokio::task::yield_now().await;
                        }
                    }
                }
                call(&router, "POST", &path, who, None).await
            }));
        }
        let mut answers = Vec::new();
        for racer in racers {
            answers.push(racer.await.expect("a racer panicked"));
        }
        answers.try_into().expect("two answers")
    }

    async fn grant(&self, id: &str) -> Value {
        json!(self.app.store().get_grant(id).await.unwrap().unwrap())
    }

    async fn kinds(&self, id: &str) -> Vec<String> {
        self.app
            .store()
            .list_events(id, 100, None)
            .await
            .unwrap()
            .items
            .iter()
            .map(|e| e.kind.as_str().to_owned())
            .collect()
    }

    fn approvers(grant: &Value) -> Vec<String> {
        grant["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["by"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Two approvers race for the last of two slots.
    async fn last_slot(&self, round: usize) -> &'static str {
        let context = format!("seed {} (QUORUM_SEED), last slot, round {round}", self.seed);
        let id = self.request(round).await;
        let (status, first) = call(
            &self.router,
            "POST",
            &format!("/v1/grants/{id}/approve"),
            DINA,
            None,
        )
        .await;
        assert_eq!(
            (status, &first["status"]),
            (StatusCode::OK, &json!("pending")),
            "{context}: {first}"
        );

        let answers = self.approve_together(&id, DAVE, DORA).await;

        let winners: Vec<usize> = (0..2).filter(|i| answers[*i].0 == StatusCode::OK).collect();
        assert_eq!(winners.len(), 1, "{context}: one activation: {answers:?}");
        let (winner, loser) = if winners[0] == 0 {
            (DAVE, &answers[1])
        } else {
            (DORA, &answers[0])
        };
        assert_eq!(loser.0, StatusCode::CONFLICT, "{context}: {answers:?}");
        assert_eq!(loser.1["error"]["code"], "grant_not_pending", "{context}");
        let why = loser.1["error"]["message"].as_str().unwrap_or_default();
        assert!(
            why.contains("active"),
            "{context}: the loser is told why: {why}"
        );

        let grant = self.grant(&id).await;
        assert_eq!(grant["status"], "active", "{context}: {grant}");
        assert_eq!(grant["decided_by"], winner.0, "{context}: {grant}");
        assert_eq!(
            Self::approvers(&grant),
            [DINA.0, winner.0],
            "{context}: {grant}"
        );
        let kinds = self.kinds(&id).await;
        assert_eq!(
            kinds.iter().filter(|k| *k == "approved").count(),
            1,
            "{context}: {kinds:?}"
        );
        assert_eq!(
            kinds.iter().filter(|k| *k == "approval_recorded").count(),
            1,
            "{context}: {kinds:?}"
        );
        assert_eq!(self.calls.grants(&id), 1, "{context}: provisioner calls");
        assert_eq!(grant["provisioning"]["state"], "done", "{context}: {grant}");
        if answers[0].1.to_string().contains("became active")
            || answers[1].1.to_string().contains("became active")
        {
            "loser re-read"
        } else {
            "loser came late"
        }
    }

    /// Two approvers race for both slots of a fresh request.
    async fn both_slots(&self, round: usize) {
        let context = format!(
            "seed {} (QUORUM_SEED), both slots, round {round}",
            self.seed
        );
        let id = self.request(round).await;

        let answers = self.approve_together(&id, DAVE, DORA).await;

        for (status, answer) in &answers {
            assert_eq!(
                *status,
                StatusCode::OK,
                "{context}: both approvals count: {answer}"
            );
        }
        let grant = self.grant(&id).await;
        assert_eq!(grant["status"], "active", "{context}: {grant}");
        let mut by = Self::approvers(&grant);
        let last = by.last().cloned().unwrap_or_default();
        assert_eq!(
            grant["decided_by"], last,
            "{context}: the second approval activated it"
        );
        by.sort();
        assert_eq!(by, [DAVE.0, DORA.0], "{context}: {grant}");
        let kinds = self.kinds(&id).await;
        assert_eq!(
            (
                kinds.iter().filter(|k| *k == "approval_recorded").count(),
                kinds.iter().filter(|k| *k == "approved").count()
            ),
            (1, 1),
            "{context}: {kinds:?}"
        );
        assert_eq!(self.calls.grants(&id), 1, "{context}: provisioner calls");
    }

    /// The last slot's approval and a denial at once: exactly one decides, the other is told which.
    async fn approve_or_deny(&self, round: usize) {
        let context = format!(
            "seed {} (QUORUM_SEED), approve or deny, round {round}",
            self.seed
        );
        let id = self.request(round).await;
        let (status, first) = call(
            &self.router,
            "POST",
            &format!("/v1/grants/{id}/approve"),
            DINA,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{context}: {first}");

        let answers = self
            .decide_together(&id, [(DAVE, "approve"), (DORA, "deny")])
            .await;

        let winners: Vec<usize> = (0..2).filter(|i| answers[*i].0 == StatusCode::OK).collect();
        assert_eq!(winners.len(), 1, "{context}: one decision: {answers:?}");
        let (decided, loser) = if winners[0] == 0 {
            ("active", &answers[1])
        } else {
            ("denied", &answers[0])
        };
        assert_eq!(loser.0, StatusCode::CONFLICT, "{context}: {answers:?}");
        assert_eq!(loser.1["error"]["code"], "grant_not_pending", "{context}");
        let why = loser.1["error"]["message"].as_str().unwrap_or_default();
        assert!(why.contains(decided), "{context}: the loser is told: {why}");
        let grant = self.grant(&id).await;
        assert_eq!(grant["status"], decided, "{context}: {grant}");
        let kinds = self.kinds(&id).await;
        assert_eq!(
            (
                kinds.iter().filter(|k| *k == "approved").count(),
                kinds.iter().filter(|k| *k == "denied").count()
            ),
            if decided == "active" { (1, 0) } else { (0, 1) },
            "{context}: {kinds:?}"
        );
        let provisioned = usize::from(decided == "active");
        assert_eq!(
            self.calls.grants(&id),
            provisioned,
            "{context}: provisioner calls"
        );
    }

    /// The same approver, twice at once.
    async fn double_click(&self, round: usize) {
        let context = format!(
            "seed {} (QUORUM_SEED), double click, round {round}",
            self.seed
        );
        let id = self.request(round).await;

        let answers = self.approve_together(&id, DAVE, DAVE).await;

        let mut statuses: Vec<StatusCode> = answers.iter().map(|(s, _)| *s).collect();
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "{context}: {answers:?}"
        );
        let refused = answers
            .iter()
            .find(|(s, _)| *s == StatusCode::CONFLICT)
            .unwrap();
        assert_eq!(refused.1["error"]["code"], "already_approved", "{context}");
        let grant = self.grant(&id).await;
        assert_eq!(
            (&grant["status"], Self::approvers(&grant)),
            (&json!("pending"), vec![DAVE.0.to_owned()]),
            "{context}: {grant}"
        );
        assert_eq!(self.calls.grants(&id), 0, "{context}");
    }
}

fn seed() -> u64 {
    std::env::var("QUORUM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

fn rounds() -> usize {
    std::env::var("QUORUM_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approvers_racing_for_a_quorum_activate_once_and_provision_once_on_the_embedded_store() {
    let dir = temp_dir("quorum");
    let store = EmbeddedStore::open(&dir.join("ticketbound.db")).expect("store file");
    let app = build_app(AppParts {
        store: Arc::new(store.clone()),
        scheduler: Arc::new(LocalScheduler::new(store)),
        clock: Arc::new(SystemClock),
        retry: fast_retry(4),
        provisioner_timeout: StdDuration::from_secs(2),
    });
    let seed = seed();
    let race = Race::new(app, seed).await;
    let rounds = rounds();
    let mut how: HashMap<&str, usize> = HashMap::new();
    let started = std::time::Instant::now();
    for round in 0..rounds {
        *how.entry(race.last_slot(round).await).or_default() += 1;
        race.both_slots(round).await;
        race.approve_or_deny(round).await;
        if round % 3 == 0 {
            race.double_click(round).await;
        }
    }
    eprintln!(
        "seed {seed}: {rounds} rounds of each race in {:?}; the last slot's loser: {how:?}",
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approvers_racing_for_a_quorum_activate_once_and_provision_once_on_dynamodb() {
    let (app, _, _) = aws_test_app(ManualClock::at(SystemClock.now()), fast_retry(4)).await;
    let seed = seed();
    let race = Race::new(app, seed).await;
    let rounds = (rounds() / 10).max(5);
    for round in 0..rounds {
        race.last_slot(round).await;
        race.both_slots(round).await;
        race.approve_or_deny(round).await;
        if round % 3 == 0 {
            race.double_click(round).await;
        }
    }
    eprintln!("seed {seed}: {rounds} rounds of each race on DynamoDB (moto)");
}
