//! Shared helpers: a real emulator on 127.0.0.1:0 driven over HTTP with reqwest.
#![allow(dead_code)]

use serde_json::Value;
use stripe_emulator::{Emulator, RunningEmulator};

pub const KEY: &str = "sk_test_emulator123";
pub const BETA: &str = "2025-03-31.basil; checkout_server_update_beta=v1;";

pub struct Api {
    pub running: RunningEmulator,
    pub http: reqwest::Client,
    pub base: String,
}

/// A parsed response.
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error.param` of an error body.
    pub fn param(&self) -> Option<&str> {
        self.body["error"]["param"].as_str()
    }

    pub fn err_type(&self) -> Option<&str> {
        self.body["error"]["type"].as_str()
    }

    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

pub async fn start() -> Api {
    let running = Emulator::new()
        .start("127.0.0.1:0")
        .await
        .expect("bind emulator");
    let base = running.base_url();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    Api {
        running,
        http,
        base,
    }
}

async fn to_resp(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Resp {
        status,
        headers,
        body,
    }
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POST a raw form body with the test key.
    pub async fn post(&self, path: &str, form: &str) -> Resp {
        self.post_with(path, form, &[]).await
    }

    /// POST a raw form body with extra headers.
    pub async fn post_with(&self, path: &str, form: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = self
            .http
            .post(self.url(path))
            .bearer_auth(KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        to_resp(req.send().await.expect("send")).await
    }

    /// POST with the discount beta version header.
    pub async fn post_beta(&self, path: &str, form: &str) -> Resp {
        self.post_with(path, form, &[("Stripe-Version", BETA)])
            .await
    }

    /// GET with the test key (query string in `path`).
    pub async fn get(&self, path: &str) -> Resp {
        to_resp(
            self.http
                .get(self.url(path))
                .bearer_auth(KEY)
                .send()
                .await
                .expect("send"),
        )
        .await
    }

    /// POST JSON to the control API.
    pub async fn control(&self, path: &str, body: Value) -> Resp {
        to_resp(
            self.http
                .post(self.url(path))
                .json(&body)
                .send()
                .await
                .expect("send"),
        )
        .await
    }

    /// A `server_only` custom-mode session with these line items (`(unit_amount, quantity)`, usd).
    pub async fn session(&self, lines: &[(i64, i64)], extra: &str) -> Value {
        let mut form = String::from(
            "mode=payment&ui_mode=custom&return_url=https%3A%2F%2Fexample.com%2Freturn&permissions[update_discounts]=server_only",
        );
        for (i, (amount, qty)) in lines.iter().enumerate() {
            form.push_str(&format!(
                "&line_items[{i}][price_data][currency]=usd&line_items[{i}][price_data][unit_amount]={amount}&line_items[{i}][price_data][product_data][name]=Item+{i}&line_items[{i}][quantity]={qty}"
            ));
        }
        if !extra.is_empty() {
            form.push('&');
            form.push_str(extra);
        }
        let r = self.post("/v1/checkout/sessions", &form).await;
        assert_eq!(r.status, 200, "session create failed: {}", r.body);
        r.body
    }

    /// Update a session's discounts under the beta, expanding line items.
    pub async fn discount(&self, id: &str, form: &str) -> Resp {
        self.post_beta(
            &format!("/v1/checkout/sessions/{id}"),
            &format!("{form}&expand[]=line_items&expand[]=discounts.coupon"),
        )
        .await
    }
}

/// `amount_discount` of each line of an expanded session.
pub fn line_discounts(session: &Value) -> Vec<i64> {
    session["line_items"]["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|li| li["amount_discount"].as_i64())
                .collect()
        })
        .unwrap_or_default()
}
