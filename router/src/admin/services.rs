//! The service registry (`docs/admin.md`), from the dealer's own state:
//! `GET /api/v1/services` lists procedures with their callees (load, health, last error,
//! registered since), `GET /api/v1/services/{procedure}/pick?policy=` answers the callee a
//! call would go to now, skipping callees whose last invocation timed out.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};

use super::api::realms_of;
use super::query::Params;
use super::{Admin, ApiError};
use crate::realm::dealer::{CalleeView, InvokePolicy, ServiceView};
use crate::util::iso8601;

/// The routes of this module (behind the admin token, as the other listings).
pub(super) fn routes() -> axum::Router<Arc<Admin>> {
    axum::Router::new()
        .route("/api/v1/services", get(services))
        .route("/api/v1/services/{procedure}/pick", get(pick))
}

fn callee_json(callee: &CalleeView) -> Value {
    let info = &callee.session.info;
    let healthy = callee.health.is_healthy(crate::engine::unix_ms());
    json!({
        "session": info.id,
        "authid": info.identity.authid,
        "authrole": info.identity.authrole,
        "in_flight": callee.in_flight,
        "healthy": healthy,
        "unhealthy_since": callee.health.unhealthy_since_ms.filter(|_| !healthy).map(iso8601),
        "last_error": callee.health.last_error,
        "registered_since": callee.health.since,
    })
}

fn service_json(realm: &str, service: &ServiceView) -> Value {
    let (uri, policy) = service.pattern.to_wamp();
    json!({
        "realm": realm,
        "registration": service.id,
        "procedure": uri,
        "match": policy.name(),
        "invoke": service.invoke.name(),
        "queued": service.queued,
        "callees": service.callees.iter().map(callee_json).collect::<Vec<_>>(),
    })
}

/// `GET /api/v1/services?realm=&offset=&limit=`: by realm, then registration ID.
async fn services(
    State(admin): State<Arc<Admin>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(query.as_deref(), &["offset", "limit", "realm"])?;
    let page = params.page()?;
    let router = admin.router()?;
    let mut realms = realms_of(router, &params)?;
    realms.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<Value> = realms
        .iter()
        .flat_map(|realm| {
            realm
                .services()
                .iter()
                .map(|s| service_json(&realm.name, s))
                .collect::<Vec<_>>()
        })
        .collect();
    let (total, rows) = page.take(rows);
    Ok(Json(page.body("services", total, rows)))
}

/// `GET /api/v1/services/{procedure}/pick?policy=&realm=`: the callee a call would go to
/// (by `policy`, default the registration's own), healthy callees only; 404 when no
/// registration matches or no healthy callee has room.
async fn pick(
    State(admin): State<Arc<Admin>>,
    Path(procedure): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::parse(query.as_deref(), &["policy", "realm"])?;
    let policy = match params.get("policy") {
        None => None,
        Some(name) => Some(
            InvokePolicy::parse(Some(name))
                .filter(|p| *p != InvokePolicy::Single)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "policy must be first, last, roundrobin, random or least_loaded, not '{name}'"
                    ))
                })?,
        ),
    };
    let router = admin.router()?;
    let realm_name = params
        .get("realm")
        .unwrap_or(&router.config.router.mqtt_default_realm);
    let realm = router
        .realm(realm_name)
        .ok_or_else(|| ApiError::not_found(format!("no realm named '{realm_name}'")))?;
    let (registration, callee) = realm.pick_callee(&procedure, policy).ok_or_else(|| {
        ApiError::not_found(format!(
            "no healthy callee with room for '{procedure}' on realm '{realm_name}'"
        ))
    })?;
    let mut answer = callee_json(&callee);
    answer["registration"] = json!(registration);
    answer["realm"] = json!(realm.name);
    Ok(Json(answer))
}
