//! A Stripe stub for load tests: answers `GET` and `POST /v1/checkout/sessions/{id}`
//! at once with a canned open Checkout Session (20 line items, a customer with
//! `tier=gold` metadata) carrying the requested id. As Stripe does, it carries
//! `line_items` only when the request expands them, and the customer as an object only
//! when expanded (its id otherwise). No state, no locks, and one thread: it measures
//! the host, not the emulator, and takes as little of a shared machine as it can (a
//! single-threaded runtime takes about a fifth less CPU per request than a
//! work-stealing one here, with no cross-thread wake-ups).
//!
//! Run: `cargo run --release -p discount-host --example stripe_stub -- 127.0.0.1:12112`
//!
//! `STUB_LATENCY_US`: how long each answer waits, in microseconds, standing in for the
//! network and Stripe (0 by default: at once).
//!
//! `STUB_GAPS=1`: the stub also notes, per session, the time from answering its retrieve
//! to receiving its update: what the caller adds between the two Stripe calls (parse,
//! mapping, policy, guard). `GET /gaps` reports them (count, p50, p90, p99 in µs) and
//! starts over.

use axum::extract::{Path, RawQuery};
use axum::http::header::{HeaderName, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;

/// The same allocator as the host, so the stub takes as little of the machine as it can.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The canned session, split around its id.
struct Canned {
    before_id: String,
    after_id: String,
}

impl Canned {
    fn new(discounted: bool, line_items: bool, customer: bool) -> Self {
        const MARK: &str = "cs_SESSION_ID_MARK";
        let items = 20;
        let data: Vec<serde_json::Value> = (0..items)
            .map(|i| {
                serde_json::json!({
                    "id": format!("li_{i:024}"), "object": "item",
                    "amount_subtotal": 1500, "amount_total": if discounted { 1275 } else { 1500 },
                    "amount_discount": if discounted { 225 } else { 0 }, "amount_tax": 0,
                    "currency": "usd", "description": format!("Product {i}"), "quantity": 1,
                    "price": {"id": format!("price_{i:024}"), "object": "price", "unit_amount": 1500,
                              "currency": "usd", "product": format!("prod_{i:024}")}
                })
            })
            .collect();
        let subtotal = 1500 * items;
        let discount = if discounted { subtotal * 15 / 100 } else { 0 };
        let discounts = if discounted {
            serde_json::json!([{"coupon": "Z4OV52SU", "promotion_code": null}])
        } else {
            serde_json::json!([])
        };
        let mut session = serde_json::json!({
            "id": MARK, "object": "checkout.session", "livemode": false, "mode": "payment",
            "status": "open", "currency": "usd",
            "amount_subtotal": subtotal, "amount_total": subtotal - discount,
            "total_details": {"amount_discount": discount, "amount_shipping": 0, "amount_tax": 0},
            "customer": if customer {
                serde_json::json!({"id": "cus_stub", "object": "customer", "email": "jenny@example.com",
                                   "name": "Jenny Rosen", "metadata": {"tier": "gold", "segment": "vip"}})
            } else {
                serde_json::json!("cus_stub")
            },
            "customer_email": "jenny@example.com",
            "metadata": {"cart_id": "cart_123"},
            "line_items": {"object": "list", "has_more": false,
                           "url": "/v1/checkout/sessions/x/line_items", "data": data},
            "discounts": discounts,
            "created": 1_764_000_000, "expires_at": 4_102_444_800_i64
        });
        if !line_items {
            session.as_object_mut().map(|o| o.remove("line_items"));
        }
        let session = session.to_string();
        let (before, after) = session
            .split_once(MARK)
            .expect("the mark is in the session");
        Canned {
            before_id: before.to_string(),
            after_id: after.to_string(),
        }
    }

    fn body(&self, id: &str) -> String {
        let mut body = String::with_capacity(self.before_id.len() + id.len() + self.after_id.len());
        body.push_str(&self.before_id);
        // Session ids are URL path segments; keep the JSON valid whatever comes in.
        body.extend(
            id.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_'),
        );
        body.push_str(&self.after_id);
        body
    }
}

/// One canned session per combination of the `line_items` and `customer` expansions.
struct Variants([Canned; 4]);

impl Variants {
    fn new(discounted: bool) -> Self {
        Variants(
            [(false, false), (false, true), (true, false), (true, true)]
                .map(|(line_items, customer)| Canned::new(discounted, line_items, customer)),
        )
    }

    /// The variant a form or query string (`expand[]=...`, encoded or not) asks for.
    fn expanded_by(&self, params: &str) -> &Canned {
        let line_items = params.contains("=line_items");
        let customer = params.contains("=customer");
        &self.0[usize::from(line_items) * 2 + usize::from(customer)]
    }
}

/// Retrieve-to-update gaps (`STUB_GAPS=1`).
#[derive(Default)]
struct Gaps {
    /// When each session's retrieve was answered.
    answered: HashMap<String, Instant>,
    /// Gaps to the sessions' updates, in µs.
    gaps_us: Vec<u64>,
}

impl Gaps {
    fn retrieved(gaps: &Option<Arc<Mutex<Gaps>>>, id: &str) {
        if let Some(gaps) = gaps {
            let mut g = gaps.lock().unwrap_or_else(|p| p.into_inner());
            g.answered.insert(id.to_string(), Instant::now());
        }
    }

    fn updated(gaps: &Option<Arc<Mutex<Gaps>>>, id: &str) {
        if let Some(gaps) = gaps {
            let mut g = gaps.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(at) = g.answered.remove(id) {
                g.gaps_us.push(at.elapsed().as_micros() as u64);
            }
        }
    }

    /// The gaps so far as JSON, and a fresh start.
    fn report(&mut self) -> serde_json::Value {
        let mut gaps = std::mem::take(&mut self.gaps_us);
        self.answered.clear();
        gaps.sort_unstable();
        let at = |q: usize| gaps.get(gaps.len() * q / 100).copied();
        serde_json::json!({"count": gaps.len(), "p50_us": at(50), "p90_us": at(90), "p99_us": at(99)})
    }
}

fn answer(canned: &Canned, id: &str) -> axum::response::Response {
    (
        [
            (CONTENT_TYPE, "application/json"),
            (HeaderName::from_static("request-id"), "req_stub"),
        ],
        canned.body(id),
    )
        .into_response()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let listen: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:12112".into())
        .parse()?;
    let latency = Duration::from_micros(
        std::env::var("STUB_LATENCY_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    // On a blocking thread: tokio's timer rounds up to whole milliseconds.
    let wait = move || async move {
        if !latency.is_zero() {
            let _ = tokio::task::spawn_blocking(move || std::thread::sleep(latency)).await;
        }
    };
    let gaps = std::env::var_os("STUB_GAPS").map(|_| Arc::new(Mutex::new(Gaps::default())));
    let (on_get, on_post, on_report) = (gaps.clone(), gaps.clone(), gaps);
    let open = Arc::new(Variants::new(false));
    let updated = Arc::new(Variants::new(true));
    let app = Router::new()
        .route(
            "/gaps",
            get(move || async move {
                let report = on_report.as_ref().map_or(serde_json::Value::Null, |g| {
                    g.lock().unwrap_or_else(|p| p.into_inner()).report()
                });
                axum::Json(report)
            }),
        )
        .route(
            "/v1/checkout/sessions/{id}",
            get(move |Path(id): Path<String>, RawQuery(query): RawQuery| {
                let open = open.clone();
                let gaps = on_get.clone();
                async move {
                    wait().await;
                    let answer = answer(open.expanded_by(&query.unwrap_or_default()), &id);
                    Gaps::retrieved(&gaps, &id);
                    answer
                }
            })
            .post(move |Path(id): Path<String>, form: String| {
                let updated = updated.clone();
                let gaps = on_post.clone();
                async move {
                    Gaps::updated(&gaps, &id);
                    wait().await;
                    answer(updated.expanded_by(&form), &id)
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("stripe-stub ready: http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
