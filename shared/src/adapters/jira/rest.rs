//! Where a Jira client's REST calls go: the site (`base_url`, Data Center and classic Cloud API tokens) or
//! Atlassian's API gateway `https://api.atlassian.com/ex/jira/{cloudId}` (Cloud API tokens with scopes, and every
//! token of a service account, which get 401 on the site).
//!
//! A Cloud connection whose `token_type` is not given detects it: a call goes first where the last `verify`
//! found the token working (the site when nothing is known yet); a 401 there sends the same call once to the
//! other place, and what works is kept for the rest of the client's life. The cloud id comes from the
//! connection's settings, or else from the site's public tenant info (`GET <site>/_edge/tenant_info`). A 401
//! cannot have changed anything, so repeating a write after one is safe. Browse links always use the site.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::{Arc, Mutex};
use url::Url;

use super::settings::{TokenType, is_cloud_id};
use crate::adapters::ticket_http::{Probed, TicketHttp, Written};
use crate::domain::connection::ApiRoute;
use crate::ports::TicketSystemError;

/// How the REST calls of one client are routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Always this form (Data Center: always [`TokenType::Classic`], the site).
    Fixed(TokenType),
    /// Cloud without a `token_type`: this form first, the other on a 401.
    Detect { first: TokenType },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TenantInfo {
    cloud_id: String,
}

/// What this client has learnt so far.
struct State {
    current: TokenType,
    cloud_id: Option<String>,
    /// Detection tried both forms and both said 401: no more doubled calls.
    exhausted: bool,
}

/// The REST endpoint of one Jira connection.
#[derive(Clone)]
pub(crate) struct Rest {
    site: TicketHttp,
    gateway_root: Url,
    plan: Plan,
    state: Arc<Mutex<State>>,
}

impl Rest {
    /// `site` is signed in and based on the connection's `base_url`; `gateway_root` is
    /// `https://api.atlassian.com` in production.
    pub(crate) fn new(
        site: TicketHttp,
        gateway_root: Url,
        plan: Plan,
        cloud_id: Option<String>,
    ) -> Self {
        let current = match plan {
            Plan::Fixed(t) => t,
            Plan::Detect { first } => first,
        };
        Self {
            site,
            gateway_root,
            plan,
            state: Arc::new(Mutex::new(State {
                current,
                cloud_id: cloud_id.filter(|id| is_cloud_id(id)),
                exhausted: false,
            })),
        }
    }

    /// The site (browse links are always there).
    pub(crate) fn site(&self) -> &TicketHttp {
        &self.site
    }

    /// Where calls go now, and the cloud id when one is known.
    pub(crate) fn route(&self) -> (ApiRoute, Option<String>) {
        let state = self.state.lock().expect("rest state");
        (state.current.api(), state.cloud_id.clone())
    }

    fn current(&self) -> (TokenType, bool) {
        let state = self.state.lock().expect("rest state");
        let detecting = matches!(self.plan, Plan::Detect { .. }) && !state.exhausted;
        (state.current, detecting)
    }

    /// The site's cloud id: known, or read from its public tenant info.
    async fn cloud_id(&self) -> Result<String, TicketSystemError> {
        if let Some(id) = self.state.lock().expect("rest state").cloud_id.clone() {
            return Ok(id);
        }
        let url = self.site.url(&["_edge", "tenant_info"]);
        let info: TenantInfo = self.site.get_public_json(url).await?.ok_or_else(|| {
            TicketSystemError::Unexpected(
                "/_edge/tenant_info answered 404: the base URL is not a Jira Cloud site (https://<site>.atlassian.net), so its cloud id for the API gateway is unknown".into(),
            )
        })?;
        if !is_cloud_id(&info.cloud_id) {
            return Err(TicketSystemError::Unexpected(
                "/_edge/tenant_info answered a cloud id of an unexpected form".into(),
            ));
        }
        self.state.lock().expect("rest state").cloud_id = Some(info.cloud_id.clone());
        Ok(info.cloud_id)
    }

    /// The signed-in client of one form.
    async fn http(&self, form: TokenType) -> Result<TicketHttp, TicketSystemError> {
        match form {
            TokenType::Classic => Ok(self.site.clone()),
            TokenType::Scoped => {
                let cloud_id = self.cloud_id().await?;
                let mut base = self.gateway_root.clone();
                if let Ok(mut path) = base.path_segments_mut() {
                    path.pop_if_empty()
                        .extend(["ex", "jira", cloud_id.as_str()]);
                }
                Ok(self.site.rebased(base))
            }
        }
    }

    /// Runs `call` where calls go now; while detecting, a 401 runs it once more on the other form, which is
    /// kept when it works. The first 401 is the answer when both refuse.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T, TicketSystemError>
    where
        F: Fn(TicketHttp) -> Fut,
        Fut: Future<Output = Result<T, TicketSystemError>>,
    {
        let (form, detecting) = self.current();
        let first = call(self.http(form).await?).await;
        let refused = match first {
            Err(TicketSystemError::Unauthorized { status: 401, .. }) if detecting => first,
            other => return other,
        };
        let other = form.other();
        let http = match self.http(other).await {
            Ok(http) => http,
            Err(e) => {
                tracing::info!(error = %e, "the API gateway could not be tried after a 401 on the site");
                self.state.lock().expect("rest state").exhausted = true;
                return refused;
            }
        };
        match call(http).await {
            Err(TicketSystemError::Unauthorized { status: 401, .. }) => {
                self.state.lock().expect("rest state").exhausted = true;
                refused.map_err(|e| match e {
                    TicketSystemError::Unauthorized { status, message } => {
                        TicketSystemError::Unauthorized {
                            status,
                            message: format!(
                                "{message} (also refused through {}: check the e-mail and API token)",
                                match other {
                                    TokenType::Classic => "the site",
                                    TokenType::Scoped => "the API gateway",
                                }
                            ),
                        }
                    }
                    e => e,
                })
            }
            second => {
                if second.is_ok() {
                    tracing::info!(
                        token_type = other.as_str(),
                        "Jira Cloud: the API token works as a {} token",
                        other.as_str()
                    );
                    self.state.lock().expect("rest state").current = other;
                }
                second
            }
        }
    }

    fn url(http: &TicketHttp, segments: &[&str], query: &[(&str, &str)]) -> Url {
        if query.is_empty() {
            http.url(segments)
        } else {
            http.url_with(segments, query)
        }
    }

    /// [`TicketHttp::get_json`] at `segments` with `query`.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Option<T>, TicketSystemError> {
        self.call(|http| async move { http.get_json(Self::url(&http, segments, query)).await })
            .await
    }

    /// [`TicketHttp::probe_json`] at `segments` with `query`.
    pub(crate) async fn probe_json<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Probed<T>, TicketSystemError> {
        self.call(|http| async move { http.probe_json(Self::url(&http, segments, query)).await })
            .await
    }

    /// [`TicketHttp::search_json`] at `segments` with `query`.
    pub(crate) async fn search_json<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Probed<T>, TicketSystemError> {
        self.call(|http| async move { http.search_json(Self::url(&http, segments, query)).await })
            .await
    }

    /// [`TicketHttp::send_json`] at `segments`.
    pub(crate) async fn send_json(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        body: Option<&serde_json::Value>,
    ) -> Result<Written, TicketSystemError> {
        self.call(|http| {
            let method = method.clone();
            async move { http.send_json(method, http.url(segments), body).await }
        })
        .await
    }
}
