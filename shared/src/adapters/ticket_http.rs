//! The HTTP plumbing the ticket-system clients share: signing in, bounded retries, and turning answers into
//! [`TicketSystemError`]s that never carry a credential.
//!
//! Which answers are worth another attempt is the one table every outbound call uses
//! ([`classify_http_status`]: 408, 425, 429 and 5xx are retryable, 409 a conflict retried like them, everything
//! else permanent), so a ticket system's answer is judged as a provisioner's or a notification channel's is. What
//! differs is where the retry happens: a read is not a durable job, so it is retried here, within bounds:
//! - 429 and 503 wait for `Retry-After` (seconds or an HTTP-date) when it is at most [`HttpPolicy::max_wait`];
//!   a longer wait is not worth holding a portal request for, so the call fails as rate limited instead, saying
//!   how long it was asked to wait.
//! - the other retryable answers, timeouts and connection errors back off exponentially with "equal jitter"
//!   (or wait their `Retry-After`, when it fits).
//! - at most [`HttpPolicy::max_retries`] retries, and never past [`HttpPolicy::budget`] in all, so a request
//!   behind API Gateway (29 s) gets an answer.
//!
//! Before that table, what ticket systems mean by some answers is read: 401/403 are refused credentials, 404
//! is "not there", 410 a removed API, a 400 a refused query or write (or, for Linear, its rate limit), and a
//! 409 or 422 to a write a refused content.

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;
use std::time::{Duration, Instant};
use url::Url;

use crate::domain::connection::{ConnectionSecrets, ConnectionSettings};
use crate::domain::side_effect::{FailureClass, classify_http_status};
use crate::ports::TicketSystemError;

/// How patient a ticket-system client is.
#[derive(Clone, Debug)]
pub struct HttpPolicy {
    /// One attempt's limit, connection included.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The longest `Retry-After` honoured.
    pub max_wait: Duration,
    /// The first backoff; it doubles per retry.
    pub backoff_base: Duration,
    /// The whole call's limit, retries and waits included.
    pub budget: Duration,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(8),
            max_retries: 3,
            max_wait: Duration::from_secs(10),
            backoff_base: Duration::from_millis(250),
            budget: Duration::from_secs(20),
        }
    }
}

impl HttpPolicy {
    fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .backoff_base
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max_wait);
        let half = exp / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// The shared HTTP client of every ticket-system adapter (one connection pool per container).
pub fn build_client() -> Result<reqwest::Client, TicketSystemError> {
    // No client-wide timeout: each call sets the connection's policy's.
    super::tls::outbound_client(None).map_err(TicketSystemError::Unexpected)
}

/// The `Authorization` header of a connection: how it signs in is its kind's own ([`TicketSystemModule`]'s
/// `authorization`), built from these helpers.
///
/// [`TicketSystemModule`]: super::ticket_systems::TicketSystemModule
pub fn authorization(
    settings: &ConnectionSettings,
    secrets: &ConnectionSecrets,
) -> Result<HeaderValue, TicketSystemError> {
    super::ticket_systems::system(settings.kind).authorization(settings, secrets)
}

/// `Basic base64(user:password)`, marked sensitive so it is never logged.
pub(crate) fn basic(user: &str, password: &str) -> Result<HeaderValue, TicketSystemError> {
    use base64::Engine;
    sensitive(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    ))
}

/// `Bearer <token>`, marked sensitive.
pub(crate) fn bearer(token: &str) -> Result<HeaderValue, TicketSystemError> {
    sensitive(format!("Bearer {token}"))
}

/// `value` as a header value marked sensitive, so it is never logged (an API key sent as is).
pub(crate) fn sensitive(value: String) -> Result<HeaderValue, TicketSystemError> {
    let mut header = HeaderValue::from_str(&value).map_err(|_| {
        TicketSystemError::Unexpected(
            "the connection's credentials hold characters not allowed in an HTTP header".into(),
        )
    })?;
    header.set_sensitive(true);
    Ok(header)
}

/// A setting the connection lacks to sign in (a credential of the wrong kind, a missing user name).
pub(crate) fn missing_setting(settings: &ConnectionSettings, what: &str) -> TicketSystemError {
    TicketSystemError::Unexpected(format!(
        "connection `{}` has no {what}; set it with PATCH /v1/connections/{}",
        settings.id, settings.id
    ))
}

/// A signed-in HTTP client for one ticket system.
#[derive(Clone)]
pub(crate) struct TicketHttp {
    client: reqwest::Client,
    base: Url,
    /// The header the credential travels in: `Authorization`, unless the kind says otherwise
    /// ([`Self::with_credential_header`]).
    auth_name: HeaderName,
    auth: HeaderValue,
    policy: HttpPolicy,
}

impl TicketHttp {
    pub(crate) fn new(
        client: reqwest::Client,
        base_url: &str,
        auth: HeaderValue,
        policy: HttpPolicy,
    ) -> Result<Self, TicketSystemError> {
        let base = Url::parse(base_url)
            .map_err(|_| TicketSystemError::Unexpected(format!("`{base_url}` is not a URL")))?;
        Ok(Self {
            client,
            base,
            auth_name: AUTHORIZATION,
            auth,
            policy,
        })
    }

    /// The same client sending its credential in the header `name` instead of `Authorization` (ServiceNow's
    /// API keys travel in `x-sn-apikey`). A token obtained later ([`Self::signed_in_as`]) goes there too.
    pub(crate) fn with_credential_header(self, name: HeaderName) -> Self {
        Self {
            auth_name: name,
            ..self
        }
    }

    /// The same client, signed in the same way, over another base URL (Jira Cloud's API gateway).
    pub(crate) fn rebased(&self, base: Url) -> Self {
        Self {
            base,
            ..self.clone()
        }
    }

    /// The same client over the same base URL, signed in with `auth` instead (an OAuth access token the client
    /// obtained with the connection's credentials).
    pub(crate) fn signed_in_as(&self, auth: HeaderValue) -> Self {
        Self {
            auth,
            ..self.clone()
        }
    }

    /// `POST url` with a form body and no `Authorization` header (an OAuth token endpoint, whose credentials are
    /// in the form), answered as JSON. Retried as reads are: a token request creates nothing. A 400 or 401 is
    /// [`Probed::Refused`] with the human part of the error body (OAuth answers refused client credentials
    /// with either).
    pub(crate) async fn post_form_json<T: DeserializeOwned>(
        &self,
        url: Url,
        form: &[(&str, &str)],
    ) -> Result<Probed<T>, TicketSystemError> {
        let path = &url.path().to_owned();
        let url = &url;
        let encoded = &url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.with_retries(path, "call", move || async move {
            let sent = self
                .client
                .post(url.clone())
                .header(ACCEPT, "application/json")
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .timeout(self.policy.timeout)
                .body(encoded.clone())
                .send()
                .await;
            match sent {
                Err(e) => transport_failure(&e),
                Ok(response)
                    if matches!(
                        response.status(),
                        StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED
                    ) =>
                {
                    let body = response.bytes().await.unwrap_or_default();
                    Step::Done(Ok(Probed::Refused(error_detail(&body))))
                }
                Ok(response) => match self.judge(response, path).await {
                    Err(e) => Step::Done(Err(e)),
                    Ok(Judged::Body(bytes)) => Step::Done(shaped(path, &bytes).map(Probed::Found)),
                    Ok(Judged::NotFound) => Step::Done(Ok(Probed::NotFound)),
                    Ok(Judged::Retry(problem, wait)) => Step::Retry(problem, wait),
                    Ok(Judged::Busy(problem, wait)) => Step::Busy(problem, wait),
                },
            }
        })
        .await
    }

    /// `GET url` as JSON without the connection's credentials (a public endpoint such as Atlassian's tenant
    /// info); `Ok(None)` on 404. Retried as [`Self::get_json`].
    pub(crate) async fn get_public_json<T: DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<Option<T>, TicketSystemError> {
        let path = &url.path().to_owned();
        let url = &url;
        self.with_retries(path, "call", move || async move {
            let sent = self
                .client
                .get(url.clone())
                .header(ACCEPT, "application/json")
                .timeout(self.policy.timeout)
                .send()
                .await;
            match sent {
                Err(e) => transport_failure(&e),
                Ok(response) => match self.judge(response, path).await {
                    Err(e) => Step::Done(Err(e)),
                    Ok(Judged::Body(bytes)) => Step::Done(shaped(path, &bytes).map(Some)),
                    Ok(Judged::NotFound) => Step::Done(Ok(None)),
                    Ok(Judged::Retry(problem, wait)) => Step::Retry(problem, wait),
                    Ok(Judged::Busy(problem, wait)) => Step::Busy(problem, wait),
                },
            }
        })
        .await
    }

    /// The base URL with `segments` appended, each percent-encoded (a key can never add a path segment).
    pub(crate) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// [`Self::url`] with a query; spaces are sent as `%20` (some APIs document that form only).
    pub(crate) fn url_with(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.url(segments);
        url.query_pairs_mut().extend_pairs(query);
        // `form_urlencoded` writes a space as `+` and a literal plus as `%2B`, so every `+` left is a space.
        let encoded = url.query().map(|q| q.replace('+', "%20"));
        url.set_query(encoded.as_deref());
        url
    }

    /// Where a person opens something on the site.
    pub(crate) fn site_url(&self, path: &[&str]) -> String {
        self.url(path).to_string()
    }

    /// The one retry loop of every ticket-system call: `attempt` runs until it is done, or until the retries
    /// ([`HttpPolicy::max_retries`]) or the time budget ([`HttpPolicy::budget`]) run out. A retry waits the
    /// `Retry-After` the attempt reports, else the policy's backoff.
    async fn with_retries<R, A: Future<Output = Step<R>>>(
        &self,
        path: &str,
        what: &'static str,
        mut attempt: impl FnMut() -> A,
    ) -> Result<R, TicketSystemError> {
        let started = Instant::now();
        let mut retry = 0;
        loop {
            let (problem, wait, busy) = match attempt().await {
                Step::Done(result) => return result,
                Step::Retry(problem, wait) => (
                    problem,
                    wait.unwrap_or_else(|| self.policy.backoff(retry)),
                    false,
                ),
                Step::Busy(problem, wait) => (
                    problem,
                    wait.unwrap_or_else(|| self.policy.backoff(retry)),
                    true,
                ),
            };
            if retry >= self.policy.max_retries || started.elapsed() + wait > self.policy.budget {
                // Still asked to wait when patience ran out: a rate limit, told apart from an outage so a
                // caller can come back after the wait (a deferred webhook confirmation).
                return Err(if busy {
                    TicketSystemError::RateLimited {
                        message: problem,
                        retry_after: Some(wait),
                    }
                } else {
                    TicketSystemError::Unavailable(problem)
                });
            }
            tracing::info!(path, retry = retry + 1, wait_ms = wait.as_millis() as u64, %problem, "retrying ticket-system {what}");
            tokio::time::sleep(wait).await;
            retry += 1;
        }
    }

    /// One `GET url` asking for JSON.
    async fn get(&self, url: &Url) -> reqwest::Result<Response> {
        self.client
            .get(url.clone())
            .header(self.auth_name.clone(), self.auth.clone())
            .header(ACCEPT, "application/json")
            .timeout(self.policy.timeout)
            .send()
            .await
    }

    /// `GET url` as JSON; `Ok(None)` on 404.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<Option<T>, TicketSystemError> {
        let path = &url.path().to_owned();
        let url = &url;
        self.with_retries(path, "call", move || async move {
            match self.get(url).await {
                Err(e) => transport_failure(&e),
                Ok(response) => match self.judge(response, path).await {
                    Err(e) => Step::Done(Err(e)),
                    Ok(Judged::Body(bytes)) => Step::Done(shaped(path, &bytes).map(Some)),
                    Ok(Judged::NotFound) => Step::Done(Ok(None)),
                    Ok(Judged::Retry(problem, wait)) => Step::Retry(problem, wait),
                    Ok(Judged::Busy(problem, wait)) => Step::Busy(problem, wait),
                },
            }
        })
        .await
    }

    /// `GET url` as JSON for reconciliation, which must tell apart what [`Self::get_json`] folds into errors:
    /// a 400 (Jira refuses a search naming a key that no longer exists) and a 429 (stop asking this system
    /// for the rest of the run rather than wait). Other answers are retried and judged as by `get_json`.
    pub(crate) async fn probe_json<T: DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<Probed<T>, TicketSystemError> {
        self.get_probed(url, true).await
    }

    /// `GET url` as JSON for a search a person waits on: like [`Self::get_json`] (429/503 and 5xx retried), but
    /// a 400 (a query the ticket system refuses, such as a JQL search naming an issue key that does not exist,
    /// or a page token it does not know) is [`Probed::Refused`] rather than an error. Never [`Probed::Busy`].
    pub(crate) async fn search_json<T: DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<Probed<T>, TicketSystemError> {
        self.get_probed(url, false).await
    }

    /// `GET url` as JSON, a 400 answered as [`Probed::Refused`]; a 429 is [`Probed::Busy`] when `stop_on_429`,
    /// and otherwise waited out and retried like a 503.
    async fn get_probed<T: DeserializeOwned>(
        &self,
        url: Url,
        stop_on_429: bool,
    ) -> Result<Probed<T>, TicketSystemError> {
        let path = &url.path().to_owned();
        let url = &url;
        self.with_retries(path, "call", move || async move {
            match self.get(url).await {
                Err(e) => transport_failure(&e),
                Ok(response) if response.status() == StatusCode::BAD_REQUEST => {
                    let body = response.bytes().await.unwrap_or_default();
                    Step::Done(Ok(Probed::Refused(error_detail(&body))))
                }
                Ok(response)
                    if stop_on_429 && response.status() == StatusCode::TOO_MANY_REQUESTS =>
                {
                    Step::Done(Ok(Probed::Busy(retry_after(&response))))
                }
                Ok(response) => match self.judge(response, path).await {
                    Err(e) => Step::Done(Err(e)),
                    Ok(Judged::Body(bytes)) => Step::Done(shaped(path, &bytes).map(Probed::Found)),
                    Ok(Judged::NotFound) => Step::Done(Ok(Probed::NotFound)),
                    Ok(Judged::Retry(problem, wait)) => Step::Retry(problem, wait),
                    Ok(Judged::Busy(problem, wait)) => Step::Busy(problem, wait),
                },
            }
        })
        .await
    }

    /// `POST url` with a JSON `body` that only reads (a GraphQL query), retried as reads are: transport
    /// failures and 5xx with backoff, 429/503 after their `Retry-After`. A 400 is [`Probed::Refused`], unless
    /// `busy` reads it as a rate limit (Linear answers one with HTTP 400 and `RATELIMITED`), which is then
    /// treated like a 429. A rate limit is [`Probed::Busy`] when `stop_when_busy` (reconciliation stops asking
    /// for the rest of its run), and otherwise waited out within [`HttpPolicy::max_wait`].
    pub(crate) async fn query_json<T: DeserializeOwned>(
        &self,
        url: Url,
        body: &serde_json::Value,
        busy: BusySignal,
        stop_when_busy: bool,
    ) -> Result<Probed<T>, TicketSystemError> {
        let path = &url.path().to_owned();
        let url = &url;
        self.with_retries(path, "call", move || async move {
            let sent = self
                .client
                .post(url.clone())
                .header(self.auth_name.clone(), self.auth.clone())
                .header(ACCEPT, "application/json")
                .timeout(self.policy.timeout)
                .json(body)
                .send()
                .await;
            let response = match sent {
                Err(e) => return transport_failure(&e),
                Ok(response) => response,
            };
            let status = response.status();
            let limited = match status {
                StatusCode::BAD_REQUEST => {
                    let headers = response.headers().clone();
                    let bytes = response.bytes().await.unwrap_or_default();
                    match busy(&headers, &bytes) {
                        None => return Step::Done(Ok(Probed::Refused(error_detail(&bytes)))),
                        Some(wait) => wait,
                    }
                }
                StatusCode::TOO_MANY_REQUESTS if stop_when_busy => retry_after(&response),
                _ => {
                    return match self.judge(response, path).await {
                        Err(e) => Step::Done(Err(e)),
                        Ok(Judged::Body(bytes)) => {
                            Step::Done(shaped(path, &bytes).map(Probed::Found))
                        }
                        Ok(Judged::NotFound) => Step::Done(Ok(Probed::NotFound)),
                        Ok(Judged::Retry(problem, wait)) => Step::Retry(problem, wait),
                        Ok(Judged::Busy(problem, wait)) if stop_when_busy => {
                            let _ = problem;
                            Step::Done(Ok(Probed::Busy(wait)))
                        }
                        Ok(Judged::Busy(problem, wait)) => Step::Busy(problem, wait),
                    };
                }
            };
            let problem = format!("{path} answered HTTP {} (rate limited)", status.as_u16());
            match limited {
                _ if stop_when_busy => Step::Done(Ok(Probed::Busy(limited))),
                Some(wait) if wait > self.policy.max_wait => {
                    Step::Done(Err(TicketSystemError::RateLimited {
                        message: format!("{problem}: asked to wait {} s", wait.as_secs()),
                        retry_after: Some(wait),
                    }))
                }
                wait => Step::Busy(problem, wait),
            }
        })
        .await
    }

    async fn judge(&self, response: Response, path: &str) -> Result<Judged, TicketSystemError> {
        let status = response.status();
        if status.is_success() {
            return response
                .bytes()
                .await
                .map(|b| Judged::Body(b.to_vec()))
                .map_err(|e| {
                    TicketSystemError::Unavailable(format!(
                        "reading the answer of {path}: {}",
                        describe_transport(&e)
                    ))
                });
        }
        let retry_after = retry_after(&response);
        let body = response.bytes().await.unwrap_or_default();
        let detail = error_detail(&body);
        let said = |what: &str| {
            if detail.is_empty() {
                format!("{path} answered HTTP {} ({what})", status.as_u16())
            } else {
                format!(
                    "{path} answered HTTP {} ({what}): {detail}",
                    status.as_u16()
                )
            }
        };
        // What ticket systems mean by these answers comes first; everything else is the shared table's.
        match status {
            StatusCode::NOT_FOUND => return Ok(Judged::NotFound),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(TicketSystemError::Unauthorized {
                    status: status.as_u16(),
                    message: said("credentials refused"),
                });
            }
            StatusCode::GONE => {
                return Err(TicketSystemError::Unexpected(said("this API was removed")));
            }
            _ => {}
        }
        match classify_http_status(status.as_u16()) {
            Some(FailureClass::Retryable | FailureClass::Conflict) => {
                // 429 and 503 ask to wait: a wait longer than a call may hold is a rate limit, said at once.
                let asks_to_wait = matches!(
                    status,
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                );
                match retry_after {
                    Some(wait) if asks_to_wait && wait > self.policy.max_wait => {
                        Err(TicketSystemError::RateLimited {
                            message: said(&format!("asked to wait {} s", wait.as_secs())),
                            retry_after: Some(wait),
                        })
                    }
                    wait if asks_to_wait => Ok(Judged::Busy(said("busy"), wait)),
                    wait => Ok(Judged::Retry(
                        said(if status.is_server_error() {
                            "server error"
                        } else {
                            "worth another attempt"
                        }),
                        wait.filter(|w| *w <= self.policy.max_wait),
                    )),
                }
            }
            // A 2xx was answered above: what is left is refused for good.
            Some(FailureClass::Permanent) | None => {
                Err(TicketSystemError::Unexpected(said("unexpected")))
            }
        }
    }
}

/// The answer to a write ([`TicketHttp::send_json`]).
pub(crate) enum Written {
    /// 2xx, with the body (empty for 204).
    Done(Vec<u8>),
    /// 404: the ticket (or project) is not there, or not visible to the connection.
    NotFound,
    /// 400, 409 or 422: the ticket system refused the content; the human part of its error body.
    Rejected(String),
}

impl Written {
    /// A 2xx body read as the JSON shape `what` should have.
    pub(crate) fn shaped<T: DeserializeOwned>(
        bytes: &[u8],
        what: &str,
    ) -> Result<T, TicketSystemError> {
        serde_json::from_slice(bytes).map_err(|e| {
            TicketSystemError::Unexpected(format!(
                "{what} answered JSON of an unexpected shape: {e}"
            ))
        })
    }
}

impl TicketHttp {
    /// Sends a write (`POST`/`PUT` with a JSON body, or a bodiless `POST`). Unlike reads, a write is retried
    /// only when the ticket system certainly did not act on it: 429 and 503 (honouring `Retry-After` within
    /// [`HttpPolicy::max_wait`]) and failures to connect. A timeout or another 5xx may have created a ticket,
    /// so it is returned as unavailable and the caller's durable retry decides (after looking for the
    /// ticket's marker). 401 is [`TicketSystemError::Unauthorized`], as for reads; 403 on a write is
    /// [`TicketSystemError::NotPermitted`]: the credentials were accepted, but their account may not make this
    /// write (the caller names what to grant it).
    pub(crate) async fn send_json(
        &self,
        method: reqwest::Method,
        url: Url,
        body: Option<&serde_json::Value>,
    ) -> Result<Written, TicketSystemError> {
        self.write(method, url, body, None).await
    }

    /// [`Self::send_json`] to a ticket system that answers a rate limit with HTTP 400 (Linear's `RATELIMITED`):
    /// `busy` reads such a 400 as a rate limit, which certainly changed nothing, so it is treated as a 429:
    /// waited out within [`HttpPolicy::max_wait`] and sent again, else [`TicketSystemError::RateLimited`] with
    /// the wait it asked for, for the caller's durable retry to come back then.
    pub(crate) async fn send_json_or_busy(
        &self,
        method: reqwest::Method,
        url: Url,
        body: Option<&serde_json::Value>,
        busy: BusySignal,
    ) -> Result<Written, TicketSystemError> {
        self.write(method, url, body, Some(busy)).await
    }

    async fn write(
        &self,
        method: reqwest::Method,
        url: Url,
        body: Option<&serde_json::Value>,
        busy: Option<BusySignal>,
    ) -> Result<Written, TicketSystemError> {
        let path = &url.path().to_owned();
        let (url, method) = (&url, &method);
        self.with_retries(path, "write", move || async move {
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .header(self.auth_name.clone(), self.auth.clone())
                .header(ACCEPT, "application/json")
                .timeout(self.policy.timeout);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Err(e) if e.is_connect() => return transport_failure(&e),
                Err(e) => {
                    return Step::Done(Err(TicketSystemError::Unavailable(format!(
                        "{} {path}: {}",
                        method.as_str(),
                        describe_transport(&e)
                    ))));
                }
                Ok(response) => response,
            };
            let status = response.status();
            if status == StatusCode::FORBIDDEN {
                let body = response.bytes().await.unwrap_or_default();
                let detail = error_detail(&body);
                return Step::Done(Err(TicketSystemError::NotPermitted(if detail.is_empty() {
                    format!("{} {path} answered HTTP 403", method.as_str())
                } else {
                    format!("{} {path} answered HTTP 403: {detail}", method.as_str())
                })));
            }
            if matches!(
                status,
                StatusCode::BAD_REQUEST | StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY
            ) {
                let headers = response.headers().clone();
                let body = response.bytes().await.unwrap_or_default();
                if status == StatusCode::BAD_REQUEST
                    && let Some(wait) = busy.and_then(|busy| busy(&headers, &body))
                {
                    let problem = format!("{path} answered HTTP 400 (rate limited)");
                    return match wait {
                        Some(wait) if wait > self.policy.max_wait => {
                            Step::Done(Err(TicketSystemError::RateLimited {
                                message: format!("{problem}: asked to wait {} s", wait.as_secs()),
                                retry_after: Some(wait),
                            }))
                        }
                        wait => Step::Busy(problem, wait),
                    };
                }
                let detail = error_detail(&body);
                return Step::Done(Ok(Written::Rejected(if detail.is_empty() {
                    format!("{path} answered HTTP {}", status.as_u16())
                } else {
                    format!("{path} answered HTTP {}: {detail}", status.as_u16())
                })));
            }
            match self.judge(response, path).await {
                Err(e) => Step::Done(Err(e)),
                Ok(Judged::Body(bytes)) => Step::Done(Ok(Written::Done(bytes))),
                Ok(Judged::NotFound) => Step::Done(Ok(Written::NotFound)),
                // 429/503: the ticket system certainly did not act; worth the wait.
                Ok(Judged::Busy(problem, wait)) => Step::Busy(problem, wait),
                // A 500 after a write may hide a ticket that was created: not retried here.
                Ok(Judged::Retry(problem, _)) => {
                    Step::Done(Err(TicketSystemError::Unavailable(problem)))
                }
            }
        })
        .await
    }
}

/// What one attempt of [`TicketHttp::with_retries`] came to.
enum Step<R> {
    Done(Result<R, TicketSystemError>),
    /// Worth another attempt: what went wrong, and the `Retry-After` when the answer gave one.
    Retry(String, Option<Duration>),
    /// Asked to wait (429/503): retried like [`Step::Retry`], but a rate limit when patience runs out.
    Busy(String, Option<Duration>),
}

/// A 2xx body as the JSON shape the caller expects.
fn shaped<T: DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<T, TicketSystemError> {
    serde_json::from_slice(bytes).map_err(|e| {
        TicketSystemError::Unexpected(format!("{path} answered JSON of an unexpected shape: {e}"))
    })
}

/// How a ticket system says "rate limited" in a 400 ([`TicketHttp::query_json`]): from the answer's headers and
/// body, `Some(wait)` when it is a rate limit (`wait`: how long it asked to wait, when it said), `None` when it is
/// an ordinary refusal.
pub(crate) type BusySignal = fn(&reqwest::header::HeaderMap, &[u8]) -> Option<Option<Duration>>;

/// What [`TicketHttp::probe_json`] found.
pub(crate) enum Probed<T> {
    Found(T),
    /// 404.
    NotFound,
    /// 400, with the human part of the error body.
    Refused(String),
    /// 429, with its `Retry-After` when it gave one.
    Busy(Option<Duration>),
}

/// The wait an answer's `Retry-After` asks for: delay-seconds (the form Jira, Freshservice and ServiceNow
/// send) or an HTTP-date (RFC 9110 §10.2.3), counted from now; a date already past is no wait. Anything else
/// is no `Retry-After` (the backoff applies).
fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?;
    retry_after_value(value, time::OffsetDateTime::now_utc())
}

/// [`retry_after`] of one header value, at `now`.
fn retry_after_value(value: &str, now: time::OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // IMF-fixdate, the one form senders must use: `Sun, 06 Nov 1994 08:49:37 GMT`.
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, format)
        .ok()?
        .assume_utc();
    Some(Duration::try_from(at - now).unwrap_or(Duration::ZERO))
}

enum Judged {
    Body(Vec<u8>),
    NotFound,
    /// Another retryable answer (a 5xx, 408, 425, 409): try again after its `Retry-After`, else a backoff.
    Retry(String, Option<Duration>),
    /// 429 or 503 asking to wait no longer than a call may: try again after the wait.
    Busy(String, Option<Duration>),
}

/// A call that got no answer: retried, unless the outbound client refused the ticket system's address (a name
/// resolving to a metadata or link-local address), which no retry changes and which is reported as such.
fn transport_failure<R>(e: &reqwest::Error) -> Step<R> {
    match super::tls::refused_address(e) {
        Some(refused) => Step::Done(Err(TicketSystemError::Unexpected(refused.to_string()))),
        None => Step::Retry(describe_transport(e), None),
    }
}

fn describe_transport(e: &reqwest::Error) -> String {
    // reqwest's Display includes the URL, which holds no credential (those travel in a header).
    if e.is_timeout() {
        "the call timed out".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        format!("the call failed: {e}")
    }
}

/// The human part of an error body: Jira's `errorMessages`/`errors`, Freshservice's `description`/`message`/
/// `errors[].message`, ServiceNow's `error.message`/`error.detail`, OAuth's `error`/`error_description`. Never the raw body, which a proxy might fill with anything; at most 300 characters.
fn error_detail(body: &[u8]) -> String {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let mut parts: Vec<String> = Vec::new();
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    if let Some(messages) = json.get("errorMessages").and_then(|v| v.as_array()) {
        parts.extend(messages.iter().filter_map(text));
    }
    match json.get("errors") {
        Some(serde_json::Value::Object(map)) => {
            parts.extend(
                map.iter()
                    .filter_map(|(k, v)| Some(format!("{k}: {}", v.as_str()?))),
            );
        }
        Some(serde_json::Value::Array(items)) => {
            parts.extend(items.iter().filter_map(|i| i.get("message").and_then(text)))
        }
        _ => {}
    }
    for field in ["description", "message"] {
        if let Some(m) = json.get(field).and_then(text) {
            parts.push(m);
        }
    }
    // ServiceNow's Table API: `{"error": {"message", "detail"}, "status": "failure"}`.
    if let Some(error) = json.get("error").filter(|e| e.is_object()) {
        parts.extend(
            ["message", "detail"]
                .iter()
                .filter_map(|f| error.get(*f).and_then(text)),
        );
    }
    // An OAuth token endpoint (RFC 6749 §5.2): `{"error": "invalid_client", "error_description": …}`.
    if let Some(code) = json.get("error").and_then(text) {
        parts.push(code);
    }
    if let Some(m) = json.get("error_description").and_then(text) {
        parts.push(m);
    }
    let mut joined = parts.join("; ");
    if joined.chars().count() > 300 {
        joined = joined.chars().take(300).collect::<String>() + "…";
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_details_come_from_known_fields_only() {
        let jira = br#"{"errorMessages":["Issue does not exist"],"errors":{"jql":"bad"}}"#;
        assert_eq!(error_detail(jira), "Issue does not exist; jql: bad");
        let fs = br#"{"description":"Validation failed","errors":[{"field":"x","message":"It should be a number","code":"invalid_value"}]}"#;
        assert_eq!(error_detail(fs), "It should be a number; Validation failed");
        assert_eq!(error_detail(b"<html>Authorization: Basic abc</html>"), "");
    }

    #[test]
    fn error_details_read_servicenow_and_oauth_errors() {
        let table = br#"{"error":{"message":"Operation Failed","detail":"Data Policy Exception: Resolution code is mandatory"},"status":"failure"}"#;
        assert_eq!(
            error_detail(table),
            "Operation Failed; Data Policy Exception: Resolution code is mandatory"
        );
        let oauth =
            br#"{"error":"invalid_client","error_description":"Client authentication failed"}"#;
        assert_eq!(
            error_detail(oauth),
            "invalid_client; Client authentication failed"
        );
    }

    #[tokio::test]
    async fn a_ticket_system_whose_name_resolves_to_a_refused_address_fails_at_once_without_a_call()
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let lookup: super::super::tls::Lookup = std::sync::Arc::new(|_host| {
            Box::pin(async { Ok(vec![std::net::SocketAddr::from(([169, 254, 169, 254], 0))]) })
        });
        let client = super::super::tls::outbound_client_resolving(None, lookup).unwrap();
        let http = TicketHttp::new(
            client,
            &format!("http://jira.example.com:{port}/"),
            HeaderValue::from_static("Bearer t"),
            HttpPolicy::default(),
        )
        .unwrap();

        // Retried, it would end as `Unavailable` once the retries ran out.
        let read = http
            .get_json::<serde_json::Value>(http.url(&["rest", "api", "2", "myself"]))
            .await;

        match read {
            Err(TicketSystemError::Unexpected(message)) => assert!(
                message.contains("`jira.example.com` resolves to 169.254.169.254"),
                "{message}"
            ),
            other => panic!("expected a permanent refusal, got {other:?}"),
        }
        let accepted =
            tokio::time::timeout(std::time::Duration::from_millis(50), listener.accept()).await;
        assert!(accepted.is_err(), "nothing connected");
    }

    #[test]
    fn queries_encode_spaces_as_percent_twenty() {
        let http = TicketHttp::new(
            reqwest::Client::new(),
            "https://x.example/jira/",
            HeaderValue::from_static("Bearer t"),
            HttpPolicy::default(),
        )
        .unwrap();
        let url = http.url_with(
            &["rest", "api", "2", "search"],
            &[("jql", "a = \"b+c\" AND d")],
        );
        assert_eq!(
            url.as_str(),
            "https://x.example/jira/rest/api/2/search?jql=a%20%3D%20%22b%2Bc%22%20AND%20d"
        );
        assert_eq!(
            http.url(&["issue", "../x"]).as_str(),
            "https://x.example/jira/issue/..%2Fx"
        );
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = time::macros::datetime!(2015-10-21 07:27:30 UTC);
        assert_eq!(
            retry_after_value(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after_value("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after_value("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date already past is no wait"
        );
        for garbage in ["soon", "-5", "Wed, 21 Oct 2015 07:28:00 PST", ""] {
            assert_eq!(retry_after_value(garbage, now), None, "{garbage}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = HttpPolicy::default();
        assert!(p.backoff(0) <= Duration::from_millis(250));
        assert!(p.backoff(30) <= p.max_wait);
    }
}
