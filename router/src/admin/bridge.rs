//! The HTTP bridge: `POST /api/v1/publish` and `POST /api/v1/call` (`docs/admin.md`).
//!
//! A request carries `Authorization: Bearer <token>`, one of a configured user's
//! `http_tokens`; it acts as that user (its realms, its role's permissions, and the
//! authorization hooks when they decide for it). Client mistakes get a 4xx with a JSON
//! error, never a 500: bad JSON or fields 400, no or unknown token 401, a denied URI or
//! realm 403, an unknown realm or procedure 404.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use fox_wamp_proto::ErrorUri;
use fox_wamp_proto::{Dict, Message, Value};
use serde_json::json;

mod body;

pub(super) use body::valid_uri;
use body::{payload_json, wamp_args, BodyPayload, CallBody, PublishBody};

use super::{Admin, ApiError};
use crate::auth::hooks::{Answer, Query};
use crate::auth::{Action, Identity};
use crate::engine::Feature;
use crate::realm::dealer::CallRequest;
use crate::realm::{Outbound, Payload, PublishOptions, Realm, SessionInfo};
use crate::router::Router;
use crate::topic::{MatchPolicy, Topic};

/// The call's request ID in its one-call caller.
const REQUEST: u64 = 1;

/// The default and the longest wait for a call's answer.
const CALL_TIMEOUT_DEFAULT_MS: u64 = 10_000;

/// The bridge's routes (its own bearer tokens: not behind `[admin] token`).
pub(super) fn routes() -> axum::Router<Arc<Admin>> {
    axum::Router::new()
        .route("/api/v1/publish", post(publish))
        .route("/api/v1/call", post(call))
}

/// Who calls: the token's user, on one realm.
pub(super) struct Caller {
    pub(super) router: Arc<Router>,
    pub(super) realm: Arc<Realm>,
    pub(super) identity: Identity,
}

impl ApiError {
    pub(super) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
}

/// Why a request is refused before it is looked at.
pub(super) enum Refused {
    /// No or an unknown token: 401 with the challenge header.
    Unauthorized(&'static str),
    /// Anything else.
    Error(ApiError),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthorized(message) => {
                let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"foxrouter bridge\""),
                );
                response
            }
            Self::Error(e) => e.into_response(),
        }
    }
}

/// The token's user on the requested realm, or the refusal.
pub(super) fn caller(
    admin: &Admin,
    headers: &HeaderMap,
    realm: Option<&str>,
) -> Result<Caller, Refused> {
    let router = admin.router().map_err(Refused::Error)?.clone();
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(super::bearer_token)
    else {
        return Err(Refused::Unauthorized(
            "missing bearer token (Authorization: Bearer <a user's http_tokens entry>)",
        ));
    };
    let Some((identity, realms)) = router.authenticator.bridge_user(token) else {
        tracing::info!("HTTP bridge: unknown bearer token refused");
        return Err(Refused::Unauthorized("unknown bearer token"));
    };
    let name = realm.unwrap_or(&router.config.router.mqtt_default_realm);
    if !realms.is_empty() && !realms.iter().any(|r| r == name) {
        return Err(Refused::Error(ApiError::forbidden(format!(
            "user '{}' may not use realm '{name}'",
            identity.authid
        ))));
    }
    let Some(realm) = router.realm(name) else {
        return Err(Refused::Error(ApiError::not_found(format!(
            "no realm '{name}'"
        ))));
    };
    Ok(Caller {
        router,
        realm,
        identity,
    })
}

impl Caller {
    pub(super) fn info(&self) -> SessionInfo {
        SessionInfo {
            id: crate::realm::new_session_id(),
            realm: self.realm.name.clone(),
            identity: self.identity.clone(),
            transport: "http",
            peer: String::new(),
            roles: Dict::new(),
        }
    }

    /// The authorization hooks' answer when they decide for this user, else its role's
    /// rules.
    pub(super) async fn permits(&self, info: &SessionInfo, action: Action, uri: &str) -> bool {
        let authorizer = &self.realm.shared().authorizer;
        if let Some(hooks) = authorizer.hooks_for(&info.realm, &info.identity.authrole) {
            let query = Query::new(info, "http", (action, MatchPolicy::Exact, uri.to_owned()));
            match hooks.decide(&self.router, &query).await.answer {
                Answer::Allow => return true,
                Answer::Deny => return false,
                Answer::Ignore => {}
            }
        }
        authorizer.permits(&info.identity.authrole, action, uri)
    }
}

/// The body as `T`, or 400 with serde's reason.
fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))
}

async fn publish(State(admin): State<Arc<Admin>>, headers: HeaderMap, body: Bytes) -> Response {
    let body: PublishBody = match parse(&body) {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let caller = match caller(&admin, &headers, body.realm.as_deref()) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    match publish_as(&caller, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn publish_as(caller: &Caller, mut body: PublishBody) -> Result<Response, ApiError> {
    if !valid_uri(&body.topic) {
        return Err(ApiError::bad_request(format!(
            "invalid topic URI '{}'",
            body.topic
        )));
    }
    let payload = match body.payload().map_err(ApiError::bad_request)? {
        BodyPayload::Raw(bytes) => Payload::Raw(Bytes::from(bytes)),
        BodyPayload::Wamp { args, kwargs } => Payload::Wamp { args, kwargs },
    };
    let limit = caller.router.config.limits.message_size_max_bytes;
    if let Payload::Raw(bytes) = &payload {
        if bytes.len() > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("payload larger than limits.message_size_max_bytes ({limit})"),
            ));
        }
    }
    let info = caller.info();
    if body.topic.starts_with("wamp.") || !caller.permits(&info, Action::Publish, &body.topic).await
    {
        return Err(ApiError::forbidden(format!(
            "user '{}' may not publish to '{}'",
            info.identity.authid, body.topic
        )));
    }
    let engine = &caller.realm.shared().engine;
    if body.retain {
        if let Some(why) = engine.refuses(Feature::Retain) {
            return Err(ApiError::new(StatusCode::NOT_IMPLEMENTED, why));
        }
    }
    let options = PublishOptions {
        retain: body.retain,
        ..PublishOptions::default()
    };
    let topic = Topic::from_wamp(&body.topic);
    let ack =
        caller
            .realm
            .publish_durable(Some(&info), &topic, payload, &options, Default::default());
    if !body.acknowledge {
        let id = ack.id();
        // The write goes on without us; its outcome is the store's to log.
        tokio::spawn(async move {
            let _ = ack.wait().await;
        });
        return Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response());
    }
    match ack.wait().await {
        Ok(id) => Ok(Json(json!({ "id": id })).into_response()),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not acknowledged: {e}"),
        )),
    }
}

async fn call(State(admin): State<Arc<Admin>>, headers: HeaderMap, body: Bytes) -> Response {
    let body: CallBody = match parse(&body) {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let caller = match caller(&admin, &headers, body.realm.as_deref()) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    match call_as(&caller, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// Cancels the call when the HTTP request goes away before its answer (the client hung
/// up, or the deadline passed).
struct CancelOnDrop<'a> {
    realm: &'a Realm,
    caller: u64,
    answered: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.answered {
            let mut options = Dict::new();
            options.insert("mode".into(), Value::from("killnowait"));
            let _ = self.realm.cancel(self.caller, REQUEST, &options);
        }
    }
}

async fn call_as(caller: &Caller, body: CallBody) -> Result<Response, ApiError> {
    if !valid_uri(&body.procedure) {
        return Err(ApiError::bad_request(format!(
            "invalid procedure URI '{}'",
            body.procedure
        )));
    }
    let timeout_max = caller.router.config.limits.call_timeout_max_ms;
    let timeout_ms = body
        .timeout_ms
        .unwrap_or(CALL_TIMEOUT_DEFAULT_MS)
        .clamp(1, timeout_max.max(1));
    let (handle, mut replies) = crate::auth::dynamic::caller_for(
        &caller.realm.name,
        caller.identity.clone(),
        "http",
        String::new(),
    );
    if !caller
        .permits(&handle.info, Action::Call, &body.procedure)
        .await
    {
        return Err(ApiError::forbidden(format!(
            "user '{}' may not call '{}'",
            caller.identity.authid, body.procedure
        )));
    }
    let (args, kwargs) = wamp_args(body.args, body.kwargs).map_err(ApiError::bad_request)?;
    let mut options = Dict::new();
    options.insert("timeout".into(), Value::from(timeout_ms));
    // The callee may see who called (caller, caller_authid, caller_authrole).
    options.insert("disclose_me".into(), Value::Bool(true));
    let request = CallRequest {
        request: REQUEST,
        options,
        procedure: body.procedure.clone(),
        args,
        kwargs,
    };
    let mut guard = CancelOnDrop {
        realm: &caller.realm,
        caller: handle.info.id,
        answered: false,
    };
    let reply = match caller.realm.call(&handle, request) {
        Some(reply) => Some(reply),
        // The dealer's timeout answers first; this one is a backstop.
        None => {
            let backstop = Duration::from_millis(timeout_ms + 1_000);
            match tokio::time::timeout(backstop, replies.recv()).await {
                Ok(Some(Outbound::Wamp(message))) => Some(*message),
                _ => None,
            }
        }
    };
    guard.answered = reply.is_some();
    drop(guard);
    let Some(reply) = reply else {
        return Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "no answer from the callee",
        ));
    };
    Ok(call_response(reply))
}

/// RESULT: 200 `{args, kwargs}`. ERROR: the dealer's own errors as their HTTP meaning
/// (404 no such procedure, 403 not authorized, 504 timeout or canceled), the callee's
/// as 502 `{error, args, kwargs}`.
fn call_response(reply: Message) -> Response {
    match reply {
        Message::Result { args, kwargs, .. } => Json(payload_json(args, kwargs)).into_response(),
        Message::Error {
            error,
            args,
            kwargs,
            ..
        } => {
            let status = match ErrorUri::parse(&error) {
                Some(ErrorUri::NoSuchProcedure | ErrorUri::NoSuchRegistration) => {
                    StatusCode::NOT_FOUND
                }
                Some(ErrorUri::NotAuthorized) => StatusCode::FORBIDDEN,
                Some(ErrorUri::Timeout | ErrorUri::Canceled) => StatusCode::GATEWAY_TIMEOUT,
                Some(ErrorUri::InvalidUri) => StatusCode::BAD_REQUEST,
                _ => StatusCode::BAD_GATEWAY,
            };
            let mut body = payload_json(args, kwargs);
            body["error"] = json!(error);
            body["status"] = json!(status.as_u16());
            (status, Json(body)).into_response()
        }
        _ => ApiError::new(StatusCode::BAD_GATEWAY, "unexpected answer from the dealer")
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_for_publish_and_call() {
        assert!(valid_uri("com.example.x"));
        assert!(!valid_uri(""));
        assert!(!valid_uri("com..x"));
        assert!(!valid_uri("com.ex ample"));
        assert!(!valid_uri("com.#"));
    }

    #[test]
    fn dealer_errors_keep_their_meaning_and_callee_errors_are_502() {
        let error = |uri: &str| Message::Error {
            request_type: fox_wamp_proto::code::CALL,
            request: REQUEST,
            details: Dict::new(),
            error: uri.to_owned(),
            args: Some(vec![Value::from("why")]),
            kwargs: None,
        };
        let status = |uri: &str| call_response(error(uri)).status();
        assert_eq!(
            status("wamp.error.no_such_procedure"),
            StatusCode::NOT_FOUND
        );
        assert_eq!(status("wamp.error.timeout"), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(status("wamp.error.not_authorized"), StatusCode::FORBIDDEN);
        assert_eq!(status("com.example.oops"), StatusCode::BAD_GATEWAY);
        let result = Message::Result {
            request: REQUEST,
            details: Dict::new(),
            args: Some(vec![Value::from(5)]),
            kwargs: None,
        };
        assert_eq!(call_response(result).status(), StatusCode::OK);
    }
}
