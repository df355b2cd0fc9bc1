//! The Stripe API client, with the retry, backoff and idempotency rules of the official libraries.
//!
//! # Retries
//!
//! A request is retried at most [`ClientConfig::max_retries`] times (2 by default), exactly when
//! stripe-node / stripe-ruby would (see [`StripeError::is_retryable`]): connection errors and
//! timeouts; otherwise a `Stripe-Should-Retry: true|false` response header decides; otherwise
//! 409, 429 with code `lock_timeout` (stripe-ruby's rule) and any 5xx. Every attempt of one
//! logical POST carries the same `Idempotency-Key`, so a retry can never apply a change twice.
//!
//! The sleep before retry `n` (1-based) is stripe-node's `_getSleepTimeInMS` / stripe-ruby's
//! `sleep_time`, see [`ClientConfig::retry_delay`]:
//! `max(initial, min(initial × 2^(n−1), max) × (0.5 + 0.5·U[0,1)))`.
//! `Retry-After` is not consulted: neither current library reads it for v1 requests.
//!
//! # Deadlines
//!
//! Every operation takes an optional overall deadline that bounds all attempts and sleeps
//! together. No attempt is started and no sleep begun that would end past it, an in-flight
//! attempt is cut at it, and the result is then [`StripeError::DeadlineExceeded`].

use crate::error::{error_from_response, redact, snippet, StripeError};
use crate::form;
use crate::transport::{self, Transport};
use crate::types::{CheckoutSession, Coupon, Customer, DiscountsUpdate, LineItem, List};
use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT as UA,
};
use http::{Method, Uri};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Stripe's API origin.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";
/// The longest `Idempotency-Key` Stripe accepts.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// The longest Checkout Session id the API accepts in a path (`maxLength` of `{id}`).
pub const MAX_SESSION_ID_LEN: usize = 66;
/// Expansions a policy's view of a Checkout Session needs.
pub const SESSION_EXPAND: &[&str] = &["line_items", "customer", "discounts.coupon"];
/// Most line items read for one session.
pub const MAX_LINE_ITEMS: usize = 1_000;
/// The largest response body the client reads before giving up.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// `User-Agent` sent with every request.
const USER_AGENT: &str = concat!("stripe-checkout-rust/", env!("CARGO_PKG_VERSION"));
/// `Idempotency-Key` header name.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// `Stripe-Version` header name.
const STRIPE_VERSION: HeaderName = HeaderName::from_static("stripe-version");

/// Client settings.
#[derive(Clone)]
pub struct ClientConfig {
    /// API origin, `https://api.stripe.com` by default (an emulator's address in tests).
    pub api_base: String,
    /// Secret (`sk_...`) or restricted (`rk_...`) key. Never logged or Debug-printed.
    pub secret_key: String,
    /// `Stripe-Version` header, [`crate::STRIPE_VERSION`] by default.
    pub stripe_version: String,
    /// Retries after the first attempt (2, as in the official libraries).
    pub max_retries: u32,
    /// Base of the exponential backoff, and the shortest sleep (0.5 s).
    pub initial_network_retry_delay: Duration,
    /// Cap of the exponential part of the backoff (5 s).
    pub max_network_retry_delay: Duration,
    /// TCP + TLS connect timeout (10 s).
    pub connect_timeout: Duration,
    /// Timeout of one attempt, headers and body (80 s, the official libraries' default).
    pub request_timeout: Duration,
}

impl ClientConfig {
    /// Defaults of the official libraries for the given secret key.
    pub fn new(secret_key: impl Into<String>) -> Self {
        ClientConfig {
            api_base: DEFAULT_API_BASE.to_string(),
            secret_key: secret_key.into(),
            stripe_version: crate::STRIPE_VERSION.to_string(),
            max_retries: 2,
            initial_network_retry_delay: Duration::from_millis(500),
            max_network_retry_delay: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(80),
        }
    }

    /// Sleep before retry number `retry` (1 for the first retry), given `unit_random` in [0, 1).
    ///
    /// stripe-node / stripe-ruby: `min(initial × 2^(retry−1), max)`, jittered by a factor in
    /// [0.5, 1.0), but never less than `initial`. Out-of-range inputs are clamped.
    pub fn retry_delay(&self, retry: u32, unit_random: f64) -> Duration {
        let initial = self.initial_network_retry_delay.as_secs_f64();
        let max = self.max_network_retry_delay.as_secs_f64();
        let exp = retry.saturating_sub(1).min(62) as i32;
        let mut secs = (initial * 2f64.powi(exp)).min(max);
        let r = if unit_random.is_finite() {
            unit_random.clamp(0.0, 1.0)
        } else {
            0.0
        };
        secs *= 0.5 * (1.0 + r);
        secs = secs.max(initial);
        Duration::try_from_secs_f64(secs).unwrap_or(self.max_network_retry_delay)
    }
}

/// The key's mode prefix followed by `[redacted]`, safe to print.
fn key_hint(key: &str) -> String {
    let prefix = ["sk_live_", "sk_test_", "rk_live_", "rk_test_"]
        .into_iter()
        .find(|p| key.starts_with(p))
        .unwrap_or("");
    format!("{prefix}[redacted]")
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("api_base", &self.api_base)
            .field("secret_key", &key_hint(&self.secret_key))
            .field("stripe_version", &self.stripe_version)
            .field("max_retries", &self.max_retries)
            .field(
                "initial_network_retry_delay",
                &self.initial_network_retry_delay,
            )
            .field("max_network_retry_delay", &self.max_network_retry_delay)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// A successful response: the parsed body plus what is needed to trace it.
#[derive(Debug, Clone, PartialEq)]
pub struct Response<T> {
    /// The parsed body.
    pub body: T,
    /// `Request-Id` header of the successful attempt.
    pub request_id: Option<String>,
    /// Attempts made, 1 when no retry was needed.
    pub attempts: u32,
    /// HTTP status of the successful attempt.
    pub status: u16,
    /// `Idempotency-Key` sent (POST only), the same on every attempt.
    pub idempotency_key: Option<String>,
}

/// The Stripe API client; cheap to clone (one shared connection pool).
#[derive(Clone)]
pub struct StripeClient {
    /// Shared state.
    inner: Arc<Inner>,
}

/// Shared state of a [`StripeClient`].
struct Inner {
    /// Pooled HTTP transport.
    http: Transport,
    /// Settings.
    config: ClientConfig,
    /// `api_base` without a trailing slash: scheme, authority and path prefix.
    base: String,
    /// Headers sent with every request (auth marked sensitive).
    headers: HeaderMap,
}

impl fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeClient")
            .field("config", &self.inner.config)
            .finish()
    }
}

/// The outcome of one HTTP attempt that got a complete response.
struct RawResponse {
    /// HTTP status.
    status: u16,
    /// `Request-Id` header.
    request_id: Option<String>,
    /// `Stripe-Should-Retry` header.
    should_retry: Option<bool>,
    /// The body.
    body: Vec<u8>,
}

/// A request prepared once and sent on every attempt.
struct Prepared {
    /// GET or POST.
    method: Method,
    /// Full URL including the query string.
    uri: Uri,
    /// Form body for POST.
    body: Option<Bytes>,
    /// `Idempotency-Key` for POST.
    idempotency_key: Option<String>,
}

impl StripeClient {
    /// Builds a client with one pooled connection manager; fails on an unusable key or base URL.
    pub fn new(config: ClientConfig) -> Result<Self, StripeError> {
        let base = config.api_base.trim_end_matches('/').to_string();
        let base_uri = match base.parse::<Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.host().is_some_and(|h| !h.is_empty())
                    && uri.query().is_none() =>
            {
                uri
            }
            _ => {
                return Err(StripeError::InvalidRequest(
                    "api_base must be an absolute http(s) URL without a query".to_string(),
                ))
            }
        };
        if config.secret_key.is_empty() {
            return Err(StripeError::InvalidRequest(
                "the secret key is empty".to_string(),
            ));
        }
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", config.secret_key)).map_err(|_| {
                StripeError::InvalidRequest(
                    "the secret key contains characters not allowed in an HTTP header".to_string(),
                )
            })?;
        auth.set_sensitive(true);
        let version = HeaderValue::from_str(&config.stripe_version).map_err(|_| {
            StripeError::InvalidRequest(
                "stripe_version contains characters not allowed in an HTTP header".to_string(),
            )
        })?;
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        headers.insert(STRIPE_VERSION, version);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(UA, HeaderValue::from_static(USER_AGENT));

        let settings = transport::Settings {
            connect_timeout: config.connect_timeout,
            pool_idle_timeout: Duration::from_secs(30),
            pool_max_idle_per_host: 64,
            tcp_keepalive: Duration::from_secs(30),
        };
        let proxies = hyper_util::client::proxy::matcher::Matcher::from_system();
        let http = Transport::new(&settings, &base_uri, &proxies).map_err(|e| {
            StripeError::InvalidRequest(format!(
                "cannot build the HTTP client: {}",
                redact(&e, &config.secret_key)
            ))
        })?;
        Ok(StripeClient {
            inner: Arc::new(Inner {
                http,
                config,
                base,
                headers,
            }),
        })
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Whether calls go through a proxy from the environment (see [`crate::transport`]).
    pub fn is_proxied(&self) -> bool {
        self.inner.http.is_proxied()
    }

    /// `GET /v1/checkout/sessions/{id}` with `expand[]=...`.
    pub async fn retrieve_checkout_session(
        &self,
        id: &str,
        expand: &[&str],
        deadline: Option<Instant>,
    ) -> Result<Response<CheckoutSession>, StripeError> {
        let path = format!("/v1/checkout/sessions/{}", session_segment(id)?);
        self.execute(Method::GET, &path, expand_pairs(expand), None, deadline)
            .await
    }

    /// `POST /v1/checkout/sessions/{id}` with the `discounts` parameter (and `expand[]`),
    /// under the given `Idempotency-Key` (see [`idempotency_key`]).
    pub async fn update_checkout_session_discounts(
        &self,
        id: &str,
        update: &DiscountsUpdate,
        idempotency_key: &str,
        expand: &[&str],
        deadline: Option<Instant>,
    ) -> Result<Response<CheckoutSession>, StripeError> {
        let path = format!("/v1/checkout/sessions/{}", session_segment(id)?);
        form::validate_discounts_update(update).map_err(StripeError::InvalidRequest)?;
        let mut params = form::encode_discounts_update(update);
        params.extend(expand_pairs(expand));
        self.execute(
            Method::POST,
            &path,
            params,
            Some(idempotency_key.to_string()),
            deadline,
        )
        .await
    }

    /// `POST /v1/customers` with JSON params flattened to Stripe form encoding.
    pub async fn create_customer(
        &self,
        params: &Value,
        idempotency_key: Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<Response<Customer>, StripeError> {
        self.create("/v1/customers", params, idempotency_key, deadline)
            .await
    }

    /// `POST /v1/checkout/sessions` with JSON params flattened to Stripe form encoding.
    pub async fn create_checkout_session(
        &self,
        params: &Value,
        idempotency_key: Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<Response<CheckoutSession>, StripeError> {
        self.create("/v1/checkout/sessions", params, idempotency_key, deadline)
            .await
    }

    /// `POST /v1/coupons` with JSON params flattened to Stripe form encoding.
    pub async fn create_coupon(
        &self,
        params: &Value,
        idempotency_key: Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<Response<Coupon>, StripeError> {
        self.create("/v1/coupons", params, idempotency_key, deadline)
            .await
    }

    /// `POST /v1/checkout/sessions/{id}/expire`.
    pub async fn expire_checkout_session(
        &self,
        id: &str,
        idempotency_key: Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<Response<CheckoutSession>, StripeError> {
        let path = format!("/v1/checkout/sessions/{}/expire", session_segment(id)?);
        self.execute(
            Method::POST,
            &path,
            Vec::new(),
            idempotency_key.map(str::to_string),
            deadline,
        )
        .await
    }

    /// `GET /v1/checkout/sessions/{id}/line_items`, first page (`limit` 1..=100, default 100).
    pub async fn list_line_items(
        &self,
        id: &str,
        limit: Option<u32>,
        deadline: Option<Instant>,
    ) -> Result<Response<List<LineItem>>, StripeError> {
        let path = format!("/v1/checkout/sessions/{}/line_items", session_segment(id)?);
        let limit = limit.unwrap_or(100).clamp(1, 100);
        self.execute(
            Method::GET,
            &path,
            vec![("limit".to_string(), limit.to_string())],
            None,
            deadline,
        )
        .await
    }

    /// The session as Stripe returns it (JSON), with [`SESSION_EXPAND`] expanded and every
    /// line item: an expansion holds the first page only, so further pages are listed
    /// (up to [`MAX_LINE_ITEMS`]) and put into `line_items`.
    pub async fn retrieve_checkout_session_full_json(
        &self,
        id: &str,
        deadline: Option<Instant>,
    ) -> Result<Response<Value>, StripeError> {
        let mut response: Response<Value> =
            self.retrieve_expanded(id, SESSION_EXPAND, deadline).await?;
        if response.body["line_items"]["has_more"].as_bool() == Some(true) {
            let first = response.body["line_items"]["data"].take();
            let first: Vec<Value> = serde_json::from_value(first).unwrap_or_default();
            let items = self
                .all_line_items(id, first, |item: &Value| item["id"].as_str(), deadline)
                .await?;
            let mut items = serde_json::to_value(items).unwrap_or_default();
            items["object"] = "list".into();
            response.body["line_items"] = items;
        }
        Ok(response)
    }

    /// The session with `expand` (a subset of [`SESSION_EXPAND`]) expanded and, when
    /// `line_items` is, every line item; parsed straight into a [`CheckoutSession`]
    /// (one parse, no intermediate JSON tree).
    pub async fn retrieve_checkout_session_full(
        &self,
        id: &str,
        expand: &[&str],
        deadline: Option<Instant>,
    ) -> Result<Response<CheckoutSession>, StripeError> {
        let mut response: Response<CheckoutSession> =
            self.retrieve_expanded(id, expand, deadline).await?;
        if let Some(list) = response.body.line_items.as_mut().filter(|l| l.has_more) {
            let first = std::mem::take(&mut list.data);
            *list = self
                .all_line_items(id, first, |item: &LineItem| Some(&item.id), deadline)
                .await?;
        }
        Ok(response)
    }

    /// `GET /v1/checkout/sessions/{id}` with `expand`.
    async fn retrieve_expanded<T: DeserializeOwned>(
        &self,
        id: &str,
        expand: &[&str],
        deadline: Option<Instant>,
    ) -> Result<Response<T>, StripeError> {
        let path = format!("/v1/checkout/sessions/{}", session_segment(id)?);
        self.execute(Method::GET, &path, expand_pairs(expand), None, deadline)
            .await
    }

    /// Every line item of a session, as one list: `first` (the expansion's page) and
    /// further pages of 100 after it, up to [`MAX_LINE_ITEMS`].
    async fn all_line_items<T: DeserializeOwned>(
        &self,
        id: &str,
        mut data: Vec<T>,
        id_of: impl Fn(&T) -> Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<List<T>, StripeError> {
        let path = format!("/v1/checkout/sessions/{}/line_items", session_segment(id)?);
        let mut has_more = true;
        let mut url = None;
        while has_more && data.len() < MAX_LINE_ITEMS {
            let mut query = vec![("limit".to_string(), "100".to_string())];
            if let Some(last) = data.last().and_then(&id_of) {
                query.push(("starting_after".to_string(), last.to_string()));
            }
            let page: List<T> = self
                .execute(Method::GET, &path, query, None, deadline)
                .await?
                .body;
            has_more = page.has_more && !page.data.is_empty();
            url = page.url;
            data.extend(page.data);
        }
        Ok(List {
            data,
            has_more,
            url,
        })
    }

    /// Generic `POST {path}` with form pairs (already bracketed); a random key is used when none is given.
    pub async fn post_form(
        &self,
        path: &str,
        params: &[(String, String)],
        idempotency_key: Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<Response<Value>, StripeError> {
        validate_path(path)?;
        self.execute(
            Method::POST,
            path,
            params.to_vec(),
            idempotency_key.map(str::to_string),
            deadline,
        )
        .await
    }

    /// Generic `GET {path}?query`.
    pub async fn get(
        &self,
        path: &str,
        query: &[(String, String)],
        deadline: Option<Instant>,
    ) -> Result<Response<Value>, StripeError> {
        validate_path(path)?;
        self.execute(Method::GET, path, query.to_vec(), None, deadline)
            .await
    }

    /// Shared body of the `create_*` operations.
    async fn create<T: DeserializeOwned>(
        &self,
        path: &str,
        params: &Value,
        idempotency_key: Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<Response<T>, StripeError> {
        if !params.is_object() {
            return Err(StripeError::InvalidRequest(
                "create params must be a JSON object".to_string(),
            ));
        }
        self.execute(
            Method::POST,
            path,
            form::flatten_json(params),
            idempotency_key.map(str::to_string),
            deadline,
        )
        .await
    }

    /// Sends a request with Stripe's retry rules under an optional overall deadline.
    async fn execute<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        params: Vec<(String, String)>,
        idempotency_key: Option<String>,
        deadline: Option<Instant>,
    ) -> Result<Response<T>, StripeError> {
        let config = &self.inner.config;
        let is_post = method == Method::POST;
        let idempotency_key = if is_post {
            Some(match idempotency_key {
                Some(key) => {
                    validate_idempotency_key(&key)?;
                    key
                }
                None => random_idempotency_key(),
            })
        } else {
            None
        };
        let mut url = format!("{}{path}", self.inner.base);
        let body = if is_post {
            Some(Bytes::from(form::encode_pairs(&params)))
        } else {
            if !params.is_empty() {
                url.push('?');
                url.push_str(&form::encode_pairs(&params));
            }
            None
        };
        let uri = Uri::try_from(url).map_err(|e| {
            StripeError::InvalidRequest(format!("the request URL is not valid: {e}"))
        })?;
        let prepared = Prepared {
            method,
            uri,
            body,
            idempotency_key,
        };

        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(StripeError::DeadlineExceeded);
            }
            tracing::debug!(method = %prepared.method, path, attempt, "Stripe request");
            let error = match self.attempt(&prepared, deadline).await {
                Ok(raw) if (200..300).contains(&raw.status) => {
                    return match crate::json::from_slice::<T>(&raw.body) {
                        Ok(body) => Ok(Response {
                            body,
                            request_id: raw.request_id,
                            attempts: attempt,
                            status: raw.status,
                            idempotency_key: prepared.idempotency_key.clone(),
                        }),
                        Err(e) => Err(StripeError::InvalidResponse {
                            status: raw.status,
                            request_id: raw.request_id,
                            detail: format!(
                                "unexpected body: {}",
                                snippet(&redact(&e, &config.secret_key), 300)
                            ),
                            should_retry: raw.should_retry,
                        }),
                    };
                }
                Ok(raw) => error_from_response(
                    raw.status,
                    raw.request_id,
                    raw.should_retry,
                    &raw.body,
                    &config.secret_key,
                ),
                Err(e) => e,
            };
            let retries_done = attempt - 1;
            if retries_done >= config.max_retries || !error.is_retryable() {
                return Err(error);
            }
            let delay = config.retry_delay(attempt, rand::random::<f64>());
            if deadline.is_some_and(|d| Instant::now().checked_add(delay).is_none_or(|t| t >= d)) {
                tracing::warn!(
                    method = %prepared.method,
                    path,
                    attempt,
                    status = error.status(),
                    request_id = error.request_id(),
                    error = %error,
                    "not retrying Stripe request: the deadline leaves no time for another attempt"
                );
                return Err(StripeError::DeadlineExceeded);
            }
            tracing::warn!(
                method = %prepared.method,
                path,
                attempt,
                max_retries = config.max_retries,
                status = error.status(),
                request_id = error.request_id(),
                delay_ms = delay.as_millis() as u64,
                error = %error,
                "retrying Stripe request"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One HTTP attempt, bounded by the per-attempt timeout and the overall deadline.
    async fn attempt(
        &self,
        prepared: &Prepared,
        deadline: Option<Instant>,
    ) -> Result<RawResponse, StripeError> {
        let secret = &self.inner.config.secret_key;
        // `None` when the configured timeout is too large to represent: no per-attempt limit.
        let attempt_end = Instant::now().checked_add(self.inner.config.request_timeout);
        let (limit, cut_by_deadline) = match (deadline, attempt_end) {
            (Some(d), Some(end)) if d <= end => (Some(d), true),
            (Some(d), None) => (Some(d), true),
            (_, Some(end)) => (Some(end), false),
            (None, None) => (None, false),
        };
        let send = async {
            let mut request = http::Request::new(prepared.body.clone().unwrap_or_default());
            *request.method_mut() = prepared.method.clone();
            *request.uri_mut() = prepared.uri.clone();
            let headers = request.headers_mut();
            *headers = self.inner.headers.clone();
            if let Some(key) = &prepared.idempotency_key {
                // Validated before the first attempt.
                if let Ok(value) = HeaderValue::from_str(key) {
                    headers.insert(IDEMPOTENCY_KEY, value);
                }
            }
            if prepared.body.is_some() {
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
            }
            let response = self
                .inner
                .http
                .send(request)
                .await
                .map_err(|e| transport_error(e, secret))?;
            let status = response.status().as_u16();
            let headers = response.headers();
            let request_id = headers
                .get("request-id")
                .and_then(|v| v.to_str().ok())
                .map(|s| snippet(s, 200));
            let should_retry = headers
                .get("stripe-should-retry")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| match v.trim() {
                    "true" => Some(true),
                    "false" => Some(false),
                    _ => None,
                });
            let mut incoming = response.into_body();
            let mut body = Vec::new();
            loop {
                match incoming.frame().await.transpose() {
                    Ok(Some(frame)) => {
                        let Ok(chunk) = frame.into_data() else {
                            continue;
                        };
                        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                            return Err(StripeError::InvalidResponse {
                                status,
                                request_id,
                                detail: format!(
                                    "response body larger than {MAX_RESPONSE_BYTES} bytes"
                                ),
                                should_retry,
                            });
                        }
                        body.extend_from_slice(&chunk);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let error = transport::SendError::connection(&*e);
                        return Err(match transport_error(error, secret) {
                            StripeError::Connection(msg) => StripeError::Connection(format!(
                                "response body interrupted (HTTP {status}{}): {msg}",
                                request_id
                                    .as_deref()
                                    .map(|id| format!(", request {id}"))
                                    .unwrap_or_default()
                            )),
                            other => other,
                        });
                    }
                }
            }
            Ok(RawResponse {
                status,
                request_id,
                should_retry,
                body,
            })
        };
        let Some(limit) = limit else {
            return send.await;
        };
        match tokio::time::timeout_at(limit, send).await {
            Ok(result) => result,
            Err(_) if cut_by_deadline => Err(StripeError::DeadlineExceeded),
            Err(_) => Err(StripeError::Timeout),
        }
    }
}

/// Maps a transport failure to a connection error or timeout, without any secret.
fn transport_error(error: transport::SendError, secret: &str) -> StripeError {
    if error.timed_out {
        return StripeError::Timeout;
    }
    let message = snippet(&redact(&error.message, secret), 500);
    if error.invalid_request {
        StripeError::InvalidRequest(message)
    } else {
        StripeError::Connection(message)
    }
}

/// `expand[]=...` pairs.
fn expand_pairs(expand: &[&str]) -> Vec<(String, String)> {
    expand
        .iter()
        .map(|e| ("expand[]".to_string(), (*e).to_string()))
        .collect()
}

/// Validates a Checkout Session id and returns it percent-encoded as one path segment.
fn session_segment(id: &str) -> Result<String, StripeError> {
    if id.is_empty() || id.len() > MAX_SESSION_ID_LEN {
        return Err(StripeError::InvalidRequest(format!(
            "checkout session id must be 1 to {MAX_SESSION_ID_LEN} characters, got {}",
            id.len()
        )));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(StripeError::InvalidRequest(format!(
            "checkout session id {:?} may contain only letters, digits, '_' and '-'",
            snippet(id, 80)
        )));
    }
    Ok(encode_path_segment(id))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Accepts `/seg/seg...` made of unreserved characters, without `.`/`..` or empty segments.
fn validate_path(path: &str) -> Result<(), StripeError> {
    let bad = || {
        StripeError::InvalidRequest(format!(
            "path {:?} must look like /v1/resource/id (letters, digits, '-', '_', '.', '~')",
            snippet(path, 80)
        ))
    };
    let rest = path.strip_prefix('/').ok_or_else(bad)?;
    if path.len() > 2048 {
        return Err(bad());
    }
    for segment in rest.split('/') {
        if segment.is_empty()
            || segment == "."
            || segment == ".."
            || !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        {
            return Err(bad());
        }
    }
    Ok(())
}

/// Checks a caller-supplied `Idempotency-Key`: 1..=255 visible ASCII characters.
fn validate_idempotency_key(key: &str) -> Result<(), StripeError> {
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(StripeError::InvalidRequest(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
        )));
    }
    Ok(())
}

/// A random UUIDv4 string, generated once per logical request and reused on every retry.
pub fn random_idempotency_key() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut key = String::with_capacity(36);
    for (i, group) in [&b[0..4], &b[4..6], &b[6..8], &b[8..10], &b[10..16]]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            key.push('-');
        }
        push_hex(&mut key, group);
    }
    key
}

/// Appends `bytes` as lowercase hex.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
}

/// The `Idempotency-Key` of one discounts update: sha256 of the session id, a
/// per-storefront-request nonce and the canonical `discounts` parameters (74 characters).
///
/// Every retry attempt of the same logical update sends the same key (the client reuses it),
/// so Stripe applies the update at most once. A different decision for the same session hashes
/// differently and never collides.
///
/// Why the nonce: Stripe replays the first response to a key for 24 hours. Without a nonce,
/// "apply 10 %" → "clear" → "apply 10 %" within a day would send the third request under the
/// first request's key, and Stripe would replay the old response instead of applying the
/// discount, leaving the session cleared while we believe it is discounted. Use a value unique
/// to the storefront request that triggered the decision (e.g. its request id), the same across
/// that request's own retries.
pub fn idempotency_key(session_id: &str, update: &DiscountsUpdate, attempt_nonce: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"stripe-checkout/discounts-update/v2");
    let pairs = form::encode_discounts_update(update);
    let parts = [session_id, attempt_nonce].into_iter().chain(
        pairs
            .iter()
            .flat_map(|(key, value)| [key.as_str(), value.as_str()]),
    );
    for part in parts {
        // Length-prefixed, so no two different inputs hash the same bytes.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let mut key = String::with_capacity(74);
    key.push_str("discounts-");
    push_hex(&mut key, &hasher.finalize());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::CouponData;

    #[test]
    fn backoff_formula() {
        let mut c = ClientConfig::new("sk_test_x");
        // Retry 1: base 0.5 s, jitter [0.25, 0.5) floored at 0.5.
        assert_eq!(c.retry_delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(c.retry_delay(1, 0.999), Duration::from_millis(500));
        // Retry 2: base 1 s → [0.5, 1.0).
        assert_eq!(c.retry_delay(2, 0.0), Duration::from_millis(500));
        assert_eq!(c.retry_delay(2, 0.5), Duration::from_millis(750));
        // Retry 3: base 2 s → [1, 2).
        assert_eq!(c.retry_delay(3, 0.0), Duration::from_secs(1));
        // Capped at 5 s before jitter.
        assert_eq!(c.retry_delay(10, 1.0), Duration::from_secs(5));
        assert_eq!(c.retry_delay(10, 0.0), Duration::from_millis(2500));
        assert_eq!(
            c.retry_delay(u32::MAX, f64::NAN),
            Duration::from_millis(2500)
        );
        for n in 1..40 {
            for r in [0.0, 0.3, 0.99] {
                let d = c.retry_delay(n, r);
                assert!(d >= c.initial_network_retry_delay && d <= c.max_network_retry_delay);
            }
        }
        c.initial_network_retry_delay = Duration::ZERO;
        assert_eq!(c.retry_delay(3, 0.5), Duration::ZERO);
    }

    #[test]
    fn debug_redacts_secret() {
        let key = "sk_live_51SuperSecretValue0123456789";
        let c = ClientConfig::new(key);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("SuperSecret"), "{dbg}");
        assert!(dbg.contains("sk_live_[redacted]"));
        let client = StripeClient::new(c).unwrap();
        let dbg = format!("{client:?}");
        assert!(!dbg.contains("SuperSecret"), "{dbg}");
    }

    #[test]
    fn rejects_bad_config() {
        assert!(StripeClient::new(ClientConfig::new("")).is_err());
        let e = StripeClient::new(ClientConfig::new("sk_test_abc\ndef")).unwrap_err();
        assert!(!e.to_string().contains("abc"));
        let mut c = ClientConfig::new("sk_test_abc");
        c.api_base = "not a url".into();
        assert!(StripeClient::new(c).is_err());
    }

    #[test]
    fn session_ids() {
        assert_eq!(session_segment("cs_test_a1B2").unwrap(), "cs_test_a1B2");
        for bad in ["", "cs/x", "cs?x", "cs#x", "cs x", "..", "cs%2F", "cś"] {
            assert!(
                matches!(session_segment(bad), Err(StripeError::InvalidRequest(_))),
                "{bad}"
            );
        }
        assert!(session_segment(&"a".repeat(66)).is_ok());
        assert!(session_segment(&"a".repeat(67)).is_err());
        assert_eq!(encode_path_segment("a b/ü"), "a%20b%2F%C3%BC");
    }

    #[test]
    fn paths() {
        assert!(validate_path("/v1/checkout/sessions/cs_1/line_items").is_ok());
        for bad in [
            "v1/x",
            "/v1//x",
            "/v1/../x",
            "/v1/x?y=1",
            "/v1/x#f",
            "/",
            "/v1/x/",
        ] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn idempotency_keys() {
        let ten = DiscountsUpdate::CouponData(CouponData {
            percent_off: Some(10.0),
            ..Default::default()
        });
        let eleven = DiscountsUpdate::CouponData(CouponData {
            percent_off: Some(11.0),
            ..Default::default()
        });
        let k = idempotency_key("cs_1", &ten, "req_a");
        assert_eq!(k, idempotency_key("cs_1", &ten.clone(), "req_a"));
        assert_ne!(k, idempotency_key("cs_1", &eleven, "req_a"));
        assert_ne!(k, idempotency_key("cs_2", &ten, "req_a"));
        assert_ne!(k, idempotency_key("cs_1", &ten, "req_b"));
        assert_ne!(
            idempotency_key("cs_1", &DiscountsUpdate::Clear, "req_a"),
            idempotency_key("cs_1", &DiscountsUpdate::Coupon(String::new()), "req_a")
        );
        assert!(k.len() <= MAX_IDEMPOTENCY_KEY_LEN);
        assert!(validate_idempotency_key(&k).is_ok());
        assert_eq!(k.len(), 74);

        for _ in 0..64 {
            let u = random_idempotency_key();
            assert_eq!(u.len(), 36, "{u}");
            for (i, c) in u.chars().enumerate() {
                match i {
                    8 | 13 | 18 | 23 => assert_eq!(c, '-', "{u}"),
                    14 => assert_eq!(c, '4', "version nibble of {u}"),
                    19 => assert!("89ab".contains(c), "variant nibble of {u}"),
                    _ => assert!(matches!(c, '0'..='9' | 'a'..='f'), "{u}"),
                }
            }
            assert_ne!(u, random_idempotency_key());
        }
        assert!(validate_idempotency_key(&"x".repeat(256)).is_err());
        assert!(validate_idempotency_key("a b").is_err());
        assert!(validate_idempotency_key("").is_err());
    }
}
