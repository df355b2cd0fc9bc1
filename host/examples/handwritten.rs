//! The load test's baseline: the discount endpoint as a merchant would write it by hand
//! from Stripe's guide, in Rust with axum and reqwest. It retrieves the session with
//! the customer expanded, gives gold-tier customers 15 % off in its own code, and
//! updates the session with `discounts[0][coupon_data]`. No policy, sandbox, guard,
//! audit, metrics or per-session lock: what is left is Stripe's two round trips.
//!
//! Run: `cargo run --release -p discount-host --example handwritten -- 127.0.0.1:4244 http://127.0.0.1:12112`

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;

/// The same allocator as the host.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The storefront's request body.
#[derive(Deserialize)]
struct ApplyRequest {
    checkout_session_id: String,
}

/// The Stripe API base and the client to reach it.
struct Stripe {
    base: String,
    key: String,
    http: reqwest::Client,
}

type Reply = (StatusCode, Json<Value>);

fn failed(status: StatusCode, message: impl std::fmt::Display) -> Reply {
    let body = json!({"type": "error", "message": message.to_string()});
    (status, Json(body))
}

async fn apply_loyalty_discount(
    State(stripe): State<Arc<Stripe>>,
    Json(request): Json<ApplyRequest>,
) -> Reply {
    let url = format!(
        "{}/v1/checkout/sessions/{}",
        stripe.base, request.checkout_session_id
    );
    let retrieved = stripe
        .http
        .get(&url)
        .query(&[("expand[]", "customer")])
        .bearer_auth(&stripe.key)
        .send()
        .await;
    let session: Value = match retrieved {
        Ok(r) if r.status().is_success() => match r.json().await {
            Ok(session) => session,
            Err(e) => return failed(StatusCode::BAD_GATEWAY, e),
        },
        Ok(r) => return failed(StatusCode::BAD_GATEWAY, r.status()),
        Err(e) => return failed(StatusCode::BAD_GATEWAY, e),
    };
    let gold = session["customer"]["metadata"]["tier"] == "gold";
    let form: &[(&str, &str)] = if gold {
        &[
            ("discounts[0][coupon_data][name]", "Gold member"),
            ("discounts[0][coupon_data][percent_off]", "15"),
        ]
    } else {
        &[("discounts", "")]
    };
    let updated = stripe
        .http
        .post(&url)
        .bearer_auth(&stripe.key)
        .form(form)
        .send()
        .await;
    match updated {
        Ok(r) if r.status().is_success() => match r.json::<Value>().await {
            Ok(s) => (
                StatusCode::OK,
                Json(json!({"succeeded": true, "amount_total": s["amount_total"]})),
            ),
            Err(e) => failed(StatusCode::BAD_GATEWAY, e),
        },
        Ok(r) => failed(StatusCode::BAD_GATEWAY, r.status()),
        Err(e) => failed(StatusCode::BAD_GATEWAY, e),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:4244".into())
        .parse()?;
    let base = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:12112".into());
    let stripe = Arc::new(Stripe {
        base: base.trim_end_matches('/').to_string(),
        key: std::env::var("STRIPE_SECRET_KEY").unwrap_or_else(|_| "sk_test_load".into()),
        http: reqwest::Client::new(),
    });
    let app = Router::new()
        .route("/apply-loyalty-discount", post(apply_loyalty_discount))
        .with_state(stripe);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("hand-written discount server on http://{listen}");
    axum::serve(listener, app).await?;
    Ok(())
}
