//! The HTTP authentication hook, as EMQX's HTTP authenticator: a JSON POST per login to
//! `[auth.http] url`, answered `{"result": "allow" | "deny" | "ignore", "role", "authid"}`.
//!
//! At most `concurrency_max` requests are in flight; a login waits for a free slot, and the
//! wait counts against `timeout_ms`. Any status but 200, a body that is not such JSON,
//! a connection error or the timeout refuses the login (logged by the caller). Answers
//! (allow, deny, ignore) are cached `cache_ms` by the whole request.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::cache::Cache;
use super::external::{Decision, Denied, Login};
use super::settings::{covers, HttpHookSettings};

/// Largest answer body read, in bytes.
const ANSWER_BYTES_MAX: usize = 64 * 1024;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The hook: its settings, client and cache.
#[derive(Debug)]
pub struct HttpHook {
    settings: HttpHookSettings,
    post: JsonPost,
    cache: Mutex<Cache<Login, Decision>>,
}

/// JSON POSTs to one URL with at most a number of requests in flight (a request waits for
/// a free slot): the authentication and the authorization hooks.
#[derive(Debug)]
pub(crate) struct JsonPost {
    url: String,
    /// Made on first use, inside the runtime.
    client: OnceLock<HttpClient>,
    slots: Semaphore,
}

impl JsonPost {
    /// Posts to `url`, at most `concurrency_max` requests at once.
    pub(crate) fn new(url: String, concurrency_max: usize) -> Self {
        Self {
            url,
            client: OnceLock::new(),
            slots: Semaphore::new(concurrency_max),
        }
    }

    /// One request: a free slot, the POST of `body`, the answer of status 200 (at most
    /// [`ANSWER_BYTES_MAX`]) as `T`. The caller bounds the time.
    pub(crate) async fn post<T: serde::de::DeserializeOwned>(
        &self,
        body: &serde_json::Value,
    ) -> Result<T, String> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| "closed".to_owned())?;
        let client = self
            .client
            .get_or_init(|| Client::builder(TokioExecutor::new()).build_http());
        let request = hyper::Request::post(self.url.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| format!("bad request: {e}"))?;
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        if status != hyper::StatusCode::OK {
            return Err(format!("status {status}"));
        }
        let body = Limited::new(response.into_body(), ANSWER_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| format!("bad JSON answer: {e}"))
    }
}

/// The hook's answer body.
#[derive(Debug, Deserialize)]
struct Answer {
    result: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    authid: Option<String>,
}

impl HttpHook {
    /// The hook of these settings.
    pub fn new(settings: HttpHookSettings) -> Self {
        Self {
            post: JsonPost::new(settings.url.clone(), settings.concurrency_max),
            cache: Mutex::new(Cache::new(settings.cache_ms, settings.cache_entries_max)),
            settings,
        }
    }

    /// Whether the hook decides logins on this realm.
    pub fn covers(&self, realm: &str) -> bool {
        covers(&self.settings.realms, realm)
    }

    /// Asks the hook (or its cache) about a login.
    pub async fn ask(&self, login: &Login) -> Decision {
        if let Some(cached) = self.cache().get(login, Instant::now().into_std()) {
            return cached;
        }
        let timeout = Duration::from_millis(self.settings.timeout_ms);
        let answer = match tokio::time::timeout(timeout, self.request(login)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(why)) => return Decision::Deny(Denied::failed(format!("HTTP hook: {why}"))),
            Err(_) => return Decision::Deny(Denied::failed("HTTP hook: timed out")),
        };
        let decision = decision(answer);
        self.cache()
            .insert(login.clone(), decision.clone(), Instant::now().into_std());
        decision
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache<Login, Decision>> {
        crate::locks::lock(&self.cache)
    }

    /// One request: the POST, the answer.
    async fn request(&self, login: &Login) -> Result<Answer, String> {
        self.post.post(&request_body(login)).await
    }
}

/// The JSON the hook receives (`docs/auth.md`).
fn request_body(login: &Login) -> serde_json::Value {
    serde_json::json!({
        "realm": login.realm,
        "authid": login.authid,
        "authmethod": login.authmethod,
        "credentials": login.credentials,
        "protocol": login.protocol,
        "transport": login.transport,
        "peer": login.peer,
        "client_id": login.client_id,
    })
}

fn decision(answer: Answer) -> Decision {
    match (answer.result.as_str(), answer.role) {
        ("allow", Some(role)) if !role.is_empty() => Decision::Allow {
            authid: answer.authid.filter(|a| !a.is_empty()),
            role,
        },
        ("allow", _) => Decision::Deny(Denied::failed("HTTP hook: allow without a role")),
        ("deny", _) => Decision::Deny(Denied::credentials("HTTP hook: denied")),
        ("ignore", _) => Decision::Pass,
        (other, _) => Decision::Deny(Denied::failed(format!(
            "HTTP hook: unknown result '{other}'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str) -> Decision {
        decision(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn answers_map_to_decisions() {
        assert_eq!(
            answer(r#"{"result":"allow","role":"r","is_superuser":false}"#),
            Decision::Allow {
                authid: None,
                role: "r".to_owned()
            }
        );
        assert!(matches!(
            answer(r#"{"result":"allow","role":"r","authid":"x"}"#),
            Decision::Allow { authid: Some(a), .. } if a == "x"
        ));
        assert!(matches!(answer(r#"{"result":"allow"}"#), Decision::Deny(_)));
        assert!(matches!(
            answer(r#"{"result":"deny"}"#),
            Decision::Deny(Denied {
                refused: super::super::LoginRefused::BadCredentials,
                ..
            })
        ));
        assert_eq!(answer(r#"{"result":"ignore"}"#), Decision::Pass);
        assert!(matches!(answer(r#"{"result":"maybe"}"#), Decision::Deny(_)));
    }
}
