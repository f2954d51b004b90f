//! Retained keys over HTTP: `GET`, `PUT` and `DELETE /api/v1/kv/{key}[?realm=]`
//! (`docs/admin.md`), with the HTTP bridge's bearer tokens. A key is a topic (WAMP
//! spelling); its value is the topic's retained message, the same one MQTT retain and the
//! sync service's `when` / `watch` / `will` keys use. Conditional writes map onto `when`:
//! `If-None-Match: *` writes only an absent key, `Fox-When: <JSON>` only when the current
//! value fits that JSON (the sync service's rule: `null` absent, a dictionary a subset);
//! a condition that does not hold is 412.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use fox_wamp_proto::Value;
use serde_json::json;

use super::bridge::{caller, valid_uri, Caller, Refused};
use super::query::Params;
use super::{Admin, ApiError};
use crate::auth::Action;
use crate::engine::Feature;
use crate::realm::sync::{KvOutcome, KvWrite};
use crate::realm::{Payload, PublishOptions};
use crate::topic::{Pattern, Topic};

/// The routes of this module.
pub(super) fn routes() -> axum::Router<Arc<Admin>> {
    axum::Router::new().route("/api/v1/kv/{key}", get(read).put(write).delete(remove))
}

/// The token's user on `?realm=` (default realm without), and the key checked.
fn open(
    admin: &Admin,
    headers: &HeaderMap,
    query: Option<&str>,
    key: &str,
) -> Result<Caller, Refused> {
    let params = Params::parse(query, &["realm"]).map_err(Refused::Error)?;
    let caller = caller(admin, headers, params.get("realm"))?;
    if !valid_uri(key) || key.starts_with("wamp.") {
        return Err(Refused::Error(ApiError::bad_request(format!(
            "invalid key '{key}' (a topic URI)"
        ))));
    }
    Ok(caller)
}

/// `GET`: the retained message as JSON (as `/api/v1/retained` lists it), its permanent
/// ID also as the `ETag`; 404 when the key has no value.
async fn read(
    State(admin): State<Arc<Admin>>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let caller = match open(&admin, &headers, query.as_deref(), &key) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    let info = caller.info();
    if !caller.permits(&info, Action::Subscribe, &key).await {
        return ApiError::forbidden(format!(
            "user '{}' may not read '{key}'",
            info.identity.authid
        ))
        .into_response();
    }
    let topic = Topic::from_wamp(&key);
    let Some(publication) = caller
        .realm
        .retained_matching(&Pattern::Exact(topic))
        .into_iter()
        .next()
    else {
        return ApiError::not_found(format!("no value at '{key}'")).into_response();
    };
    let mut response =
        Json(super::api::retained_json(&caller.realm.name, &publication)).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", publication.id)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// `PUT`: a JSON body (`Content-Type: application/json`) is the value as WAMP `args[0]`
/// (what the sync service's keys hold); any other body is a raw payload, as MQTT's.
async fn write(
    State(admin): State<Arc<Admin>>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match open(&admin, &headers, query.as_deref(), &key) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim().starts_with("application/json"));
    let payload = if json_body {
        let value = serde_json::from_slice::<serde_json::Value>(&body)
            .map_err(|e| e.to_string())
            .and_then(Value::try_from_json)
            .and_then(|value| {
                if value.nesting_depth() > fox_wamp_proto::ARGUMENT_NESTING_MAX {
                    return Err(format!(
                        "nested deeper than {} levels",
                        fox_wamp_proto::ARGUMENT_NESTING_MAX
                    ));
                }
                Ok(value)
            });
        match value {
            Ok(value) => Payload::Wamp {
                args: Some(vec![value]),
                kwargs: None,
            },
            Err(e) => return ApiError::bad_request(format!("bad JSON body: {e}")).into_response(),
        }
    } else {
        if body.is_empty() {
            return ApiError::bad_request("an empty value clears the key: use DELETE")
                .into_response();
        }
        Payload::Raw(body)
    };
    store(&caller, &headers, &key, payload).await
}

/// `DELETE`: clears the key (an empty retained message), with the same conditions.
async fn remove(
    State(admin): State<Arc<Admin>>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let caller = match open(&admin, &headers, query.as_deref(), &key) {
        Ok(caller) => caller,
        Err(refused) => return refused.into_response(),
    };
    store(&caller, &headers, &key, Payload::Raw(Bytes::new())).await
}

/// The write's condition from the headers: `None` unconditional.
fn condition(headers: &HeaderMap) -> Result<Option<Value>, ApiError> {
    if let Some(value) = headers.get(header::IF_NONE_MATCH) {
        return match value.to_str().map(str::trim) {
            Ok("*") => Ok(Some(Value::Null)),
            _ => Err(ApiError::bad_request(
                "If-None-Match: only * (write only an absent key) is supported",
            )),
        };
    }
    if headers.contains_key(header::IF_MATCH) {
        return Err(ApiError::bad_request(
            "If-Match is not supported: use Fox-When: <JSON> (the value must fit it)",
        ));
    }
    match headers.get("fox-when") {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
            .and_then(|json| Value::try_from_json(json).ok())
            .map(Some)
            .ok_or_else(|| ApiError::bad_request("Fox-When must be JSON")),
    }
}

async fn store(caller: &Caller, headers: &HeaderMap, key: &str, payload: Payload) -> Response {
    let when = match condition(headers) {
        Ok(when) => when,
        Err(e) => return e.into_response(),
    };
    let info = caller.info();
    if !caller.permits(&info, Action::Publish, key).await {
        return ApiError::forbidden(format!(
            "user '{}' may not write '{key}'",
            info.identity.authid
        ))
        .into_response();
    }
    let engine = &caller.realm.shared().engine;
    let refused = match when {
        Some(_) => engine.refuses(Feature::SyncService),
        None => engine.refuses(Feature::Retain),
    };
    if let Some(why) = refused {
        return ApiError::new(StatusCode::NOT_IMPLEMENTED, why).into_response();
    }
    let options = PublishOptions {
        retain: true,
        ..PublishOptions::default()
    };
    let topic = Topic::from_wamp(key);
    let ack = match when {
        None => {
            caller
                .realm
                .publish_durable(Some(&info), &topic, payload, &options, Default::default())
        }
        Some(when) => {
            let (writer, _replies) = crate::auth::dynamic::caller_for(
                &caller.realm.name,
                caller.identity.clone(),
                "http",
                String::new(),
            );
            let write = KvWrite {
                when: Some(when),
                watch: false,
                will: None,
            };
            match caller
                .realm
                .publish_kv(&writer, &topic, payload, &options, write)
            {
                KvOutcome::Applied(ack) => ack,
                // Not asked to wait (`watch`): a write is applied or refused.
                KvOutcome::Refused | KvOutcome::Parked(_) => {
                    return ApiError::new(
                        StatusCode::PRECONDITION_FAILED,
                        format!("not written: the condition on '{key}' does not hold"),
                    )
                    .into_response()
                }
            }
        }
    };
    match ack.wait().await {
        Ok(id) => {
            let mut response = Json(json!({ "id": id })).into_response();
            if let Ok(etag) = HeaderValue::from_str(&format!("\"{id}\"")) {
                response.headers_mut().insert(header::ETAG, etag);
            }
            response
        }
        // A cluster decides the condition as it applies the log.
        Err(crate::engine::EngineError::NotAccepted) => ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            format!("not written: the condition on '{key}' does not hold"),
        )
        .into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not acknowledged: {e}"),
        )
        .into_response(),
    }
}
