//! The `/v1` front door: request ids, faults, auth, versions, idempotency, routing and the log.

use crate::errors::{ApiError, ApiResult, ErrorType};
use crate::faults::Fault;
use crate::idempotency::{self, Lookup, Saved};
use crate::params::Params;
use crate::requestlog::LoggedRequest;
use crate::store::{new_request_id, Store};
use crate::{checkout, coupons, customers, form, prices, Emulator};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::time::Duration;

/// The API version used when a request sends no `Stripe-Version`.
pub const DEFAULT_VERSION: &str = "2025-03-31.basil";
/// Largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// The request id chosen for a request (an extension set by [`request_id_layer`]).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Marks a response whose connection must be closed without answering.
#[derive(Debug, Clone, Copy)]
pub struct DropConnection;

/// What a handler knows about the request beyond its parameters.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Emulated Unix time.
    pub now: i64,
    /// API version (`2025-03-31.basil`).
    pub version: String,
    /// Betas from `Stripe-Version` (`checkout_server_update_beta=v1`).
    pub betas: Vec<String>,
}

impl Ctx {
    /// A context at `now` with the default version and no beta.
    pub fn new(now: i64) -> Self {
        Ctx {
            now,
            version: DEFAULT_VERSION.into(),
            betas: Vec::new(),
        }
    }

    /// Whether the request opted into this beta.
    pub fn has_beta(&self, beta: &str) -> bool {
        self.betas.iter().any(|b| b == beta)
    }

    fn date(&self) -> &str {
        self.version.get(..10).unwrap_or("")
    }

    /// Whether the version is 2025-09-30.clover or later (discount `source` instead of `coupon`).
    pub fn is_clover(&self) -> bool {
        self.date() >= "2025-09-30"
    }

    /// Whether the version predates 2025-03-31.basil (top-level `shipping_details`).
    pub fn before_basil(&self) -> bool {
        self.date() < "2025-03-31"
    }
}

/// Parses `Stripe-Version: 2025-03-31.basil; checkout_server_update_beta=v1;`.
pub fn parse_version(header: &str) -> ApiResult<(String, Vec<String>)> {
    let mut parts = header.split(';').map(str::trim).filter(|p| !p.is_empty());
    let version = parts.next().unwrap_or("").to_string();
    let b = version.as_bytes();
    let date_ok = b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
        && (b.len() == 10 || (b[10] == b'.' && b.len() > 11));
    if !date_ok {
        return Err(ApiError::invalid(format!(
            "Invalid Stripe API version: {header}"
        )));
    }
    let betas: Vec<String> = parts.map(str::to_string).collect();
    if let Some(bad) = betas.iter().find(|b| !b.contains('=')) {
        return Err(ApiError::invalid(format!(
            "Invalid Stripe API version: {header} (beta `{bad}` is not of the form name=version)"
        )));
    }
    Ok((version, betas))
}

/// Adds a `Request-Id` to every response (and to the request, for handlers).
pub async fn request_id_layer(mut req: Request, next: Next) -> Response {
    let id = new_request_id();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).await;
    if !resp.headers().contains_key("request-id") {
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert("request-id", v);
        }
    }
    resp
}

fn redact(key: &str) -> String {
    let prefix_len = key
        .match_indices('_')
        .nth(1)
        .map_or(0, |(i, _)| i + 1)
        .min(key.len());
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let stars = key.chars().count().saturating_sub(prefix_len + 4);
    format!(
        "{}{}{}",
        key.get(..prefix_len).unwrap_or(""),
        "*".repeat(stars),
        tail
    )
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.trim().bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        buf = (buf << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Checks the API key: `Authorization: Bearer sk_test_...` or HTTP basic with the key as user.
///
/// Test keys (`sk_test_`, `rk_test_`) are accepted; live keys are refused.
pub fn authenticate(headers: &HeaderMap) -> ApiResult<String> {
    let unauthorized =
        |m: String| ApiError::new(StatusCode::UNAUTHORIZED, ErrorType::InvalidRequest, m);
    let missing = || {
        unauthorized("You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.".into())
    };
    let Some(raw) = headers.get("authorization") else {
        return Err(missing());
    };
    let raw = raw
        .to_str()
        .map_err(|_| {
            unauthorized(
                "Invalid API Key provided: the Authorization header is not valid text.".into(),
            )
        })?
        .trim();
    let key = if let Some(k) = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
    {
        k.trim().to_string()
    } else if let Some(b) = raw
        .strip_prefix("Basic ")
        .or_else(|| raw.strip_prefix("basic "))
    {
        let decoded = base64_decode(b)
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| {
                unauthorized("Invalid API Key provided: malformed Basic credentials.".into())
            })?;
        decoded.split(':').next().unwrap_or("").to_string()
    } else {
        return Err(unauthorized(format!(
            "Invalid API Key provided: {}",
            redact(raw)
        )));
    };
    if key.is_empty() {
        return Err(missing());
    }
    if key.starts_with("pk_") {
        return Err(unauthorized("This API call cannot be made with a publishable API key. Please use a secret API key. You can find a list of your API keys at https://dashboard.stripe.com/account/apikeys.".into()));
    }
    let test = ["sk_test_", "rk_test_"]
        .iter()
        .any(|p| key.starts_with(p) && key.len() > p.len());
    if !test {
        let why = if key.starts_with("sk_live_") || key.starts_with("rk_live_") {
            " (the Stripe emulator only accepts test mode keys)"
        } else {
            ""
        };
        return Err(unauthorized(format!(
            "Invalid API Key provided: {}{why}",
            redact(&key)
        )));
    }
    Ok(key)
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, axum::Json(body.clone())).into_response();
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp
}

fn set_header(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// A response whose connection is closed instead of answered.
///
/// [`crate::Emulator::serve`] sees the [`DropConnection`] marker and closes the socket
/// before writing anything; under a plain `axum::serve` the failing body aborts the
/// connection mid-response instead.
pub fn drop_connection_response() -> Response {
    let mut resp = Response::new(Body::new(FailingBody));
    resp.extensions_mut().insert(DropConnection);
    resp
}

/// A body that fails on first poll, which makes hyper abort the connection.
struct FailingBody;

impl http_body::Body for FailingBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "stripe-emulator: injected dropped connection",
        ))))
    }
}

/// Handles every request outside the control API: `/v1/...` and unknown URLs.
pub async fn handle(State(em): State<Emulator>, req: Request) -> Response {
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map_or_else(new_request_id, |r| r.0.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let headers = req.headers().clone();
    let idem_key = header(&headers, "idempotency-key");
    let version_header = header(&headers, "stripe-version");

    if !(path == "/v1" || path.starts_with("/v1/")) {
        let e = ApiError::unrecognized_url(method.as_str(), &path);
        return json_response(e.status, &e.body(&request_id));
    }

    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => Ok(b),
        Err(_) => Err(ApiError::invalid(format!(
            "The request body is too large (more than {MAX_BODY} bytes) or could not be read."
        ))
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)),
    };
    let parsed: ApiResult<Value> = body.and_then(|b| {
        let src: &[u8] = if method == Method::GET || method == Method::DELETE {
            query.as_deref().unwrap_or("").as_bytes()
        } else {
            &b
        };
        form::parse_bytes(src).map_err(|e| ApiError::param(e.param, e.message))
    });
    let logged_params = parsed.clone().unwrap_or(Value::Null);

    let mut entry = LoggedRequest {
        seq: 0,
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        idempotency_key: idem_key.clone(),
        stripe_version: version_header.clone(),
        params: logged_params,
        status: 0,
        request_id: request_id.clone(),
        replayed: false,
        faulted: false,
        fault_id: None,
        time: em.now(),
    };

    // Injected faults come first: they stand for failures before Stripe's API runs.
    let fault = em.with(|inner| inner.faults.take(method.as_str(), &path));
    if let Some(f) = &fault {
        entry.faulted = true;
        entry.fault_id = Some(f.id.clone());
        if let Some(ms) = f.spec.delay_ms.filter(|ms| *ms > 0) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if f.spec.drop_connection == Some(true) {
            em.with(|inner| inner.log.push(entry));
            return drop_connection_response();
        }
        if let Some(status) = f.spec.status {
            let resp = fault_response(f, status, &request_id);
            entry.status = resp.status().as_u16();
            em.with(|inner| inner.log.push(entry));
            return resp;
        }
        // A delay alone: the request then runs normally.
    }

    let mut resp = run(
        &em,
        &method,
        &path,
        &headers,
        parsed,
        idem_key.as_deref(),
        version_header.as_deref(),
        &request_id,
        &mut entry,
    );
    if let Some(f) = &fault {
        if let Some(retry) = f.spec.should_retry {
            set_header(
                &mut resp,
                "stripe-should-retry",
                if retry { "true" } else { "false" },
            );
        }
    }
    entry.status = resp.status().as_u16();
    em.with(|inner| inner.log.push(entry));
    resp
}

fn fault_response(f: &Fault, status: u16, request_id: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let e = ApiError {
        status,
        kind: f
            .spec
            .error_type
            .clone()
            .unwrap_or_else(|| "api_error".into()),
        code: f.spec.error_code.clone(),
        message: f.spec.message.clone().unwrap_or_else(|| {
            "An unknown error occurred while processing your request (injected by the Stripe emulator).".into()
        }),
        param: None,
    };
    let mut resp = json_response(status, &e.body(request_id));
    if let Some(retry) = f.spec.should_retry {
        set_header(
            &mut resp,
            "stripe-should-retry",
            if retry { "true" } else { "false" },
        );
    }
    resp
}

#[allow(clippy::too_many_arguments)]
fn run(
    em: &Emulator,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    parsed: ApiResult<Value>,
    idem_key: Option<&str>,
    version_header: Option<&str>,
    request_id: &str,
    entry: &mut LoggedRequest,
) -> Response {
    let error = |e: ApiError| json_response(e.status, &e.body(request_id));
    if let Err(e) = authenticate(headers) {
        return error(e);
    }
    let (version, betas) = match version_header {
        Some(v) => match parse_version(v) {
            Ok(x) => x,
            Err(e) => return error(e),
        },
        None => (DEFAULT_VERSION.to_string(), Vec::new()),
    };
    let params = match parsed {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    let keyed = if *method == Method::POST {
        idem_key
    } else {
        None
    };
    if let Some(k) = keyed {
        if let Err(e) = idempotency::check_key(k) {
            return error(e);
        }
    }

    let result = em.with(|inner| {
        inner.store.expire_due();
        let ctx = Ctx {
            now: inner.store.now(),
            version: version.clone(),
            betas,
        };
        if let Some(k) = keyed {
            match inner
                .idem
                .lookup(k, method.as_str(), path, &params, ctx.now)
            {
                Err(e) => return Err(e),
                Ok(Lookup::Replay(saved)) => return Ok((saved, true)),
                Ok(Lookup::Fresh) => {}
            }
        }
        let (status, body) = match route(&mut inner.store, &ctx, method, path, &params) {
            Ok(v) => (StatusCode::OK, v),
            Err(e) => (e.status, e.body(request_id)),
        };
        let saved = Saved {
            method: method.to_string(),
            path: path.to_string(),
            params: params.clone(),
            status,
            body,
            request_id: request_id.to_string(),
            saved_at: ctx.now,
        };
        if let Some(k) = keyed {
            inner.idem.save(k, saved.clone());
        }
        Ok((saved, false))
    });
    let (saved, replayed) = match result {
        Ok(x) => x,
        Err(e) => return error(e),
    };
    entry.replayed = replayed;
    let mut resp = json_response(saved.status, &saved.body);
    set_header(&mut resp, "stripe-version", &version);
    if let Some(k) = keyed {
        set_header(&mut resp, "idempotency-key", k);
        set_header(&mut resp, "original-request", &saved.request_id);
        if replayed {
            set_header(&mut resp, "idempotent-replayed", "true");
        }
    }
    resp
}

fn decode(seg: &str) -> String {
    percent_encoding::percent_decode_str(seg)
        .decode_utf8_lossy()
        .into_owned()
}

/// Dispatches a `/v1` request to its endpoint.
pub fn route(
    store: &mut Store,
    ctx: &Ctx,
    method: &Method,
    path: &str,
    params: &Value,
) -> ApiResult<Value> {
    let empty = serde_json::Map::new();
    let p = Params::root(params.as_object().unwrap_or(&empty));
    let rest = path.strip_prefix("/v1/").unwrap_or("");
    let segs: Vec<String> = rest.split('/').map(decode).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = method.as_str();
    match (m, segs.as_slice()) {
        ("POST", ["customers"]) => customers::create(store, ctx, &p),
        ("GET", ["customers", id]) if !id.is_empty() => customers::retrieve(store, id, &p),
        ("POST", ["customers", id]) if !id.is_empty() => customers::update(store, id, &p),
        ("DELETE", ["customers", id]) if !id.is_empty() => customers::delete(store, id),
        ("POST", ["coupons"]) => coupons::create(store, ctx, &p),
        ("GET", ["coupons", id]) if !id.is_empty() => coupons::retrieve(store, ctx, id, &p),
        ("DELETE", ["coupons", id]) if !id.is_empty() => coupons::delete(store, id),
        ("POST", ["products"]) => prices::create_product(store, ctx, &p),
        ("GET", ["products", id]) if !id.is_empty() => prices::retrieve_product(store, id, &p),
        ("POST", ["prices"]) => prices::create_price(store, ctx, &p),
        ("GET", ["prices", id]) if !id.is_empty() => prices::retrieve_price(store, id, &p),
        ("POST", ["shipping_rates"]) => prices::create_shipping_rate(store, ctx, &p),
        ("GET", ["shipping_rates", id]) if !id.is_empty() => {
            prices::retrieve_shipping_rate(store, id, &p)
        }
        ("POST", ["checkout", "sessions"]) => checkout::create(store, ctx, &p),
        ("GET", ["checkout", "sessions", id]) if !id.is_empty() => {
            checkout::retrieve(store, ctx, id, &p)
        }
        ("POST", ["checkout", "sessions", id]) if !id.is_empty() => {
            checkout::update(store, ctx, id, &p)
        }
        ("POST", ["checkout", "sessions", id, "expire"]) if !id.is_empty() => {
            checkout::expire(store, ctx, id, &p)
        }
        ("GET", ["checkout", "sessions", id, "line_items"]) if !id.is_empty() => {
            checkout::list_line_items(store, ctx, id, &p)
        }
        _ => Err(ApiError::unrecognized_url(m, path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let (v, b) = parse_version("2025-03-31.basil; checkout_server_update_beta=v1;").unwrap();
        assert_eq!(v, "2025-03-31.basil");
        assert_eq!(b, vec!["checkout_server_update_beta=v1"]);
        assert!(parse_version("2020-08-27").is_ok());
        assert!(parse_version("basil").is_err());
        assert!(parse_version("2025-03-31.basil; nonsense").is_err());
        let ctx = Ctx {
            now: 0,
            version: "2025-09-30.clover".into(),
            betas: vec![],
        };
        assert!(ctx.is_clover() && !ctx.before_basil());
    }

    #[test]
    fn auth_rules() {
        let mut h = HeaderMap::new();
        assert_eq!(
            authenticate(&h).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer sk_test_123"),
        );
        assert_eq!(authenticate(&h).unwrap(), "sk_test_123");
        // curl -u sk_test_abc:  → Basic c2tfdGVzdF9hYmM6
        h.insert(
            "authorization",
            HeaderValue::from_static("Basic c2tfdGVzdF9hYmM6"),
        );
        assert_eq!(authenticate(&h).unwrap(), "sk_test_abc");
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer sk_live_abcdefgh1234"),
        );
        let e = authenticate(&h).unwrap_err();
        assert!(e.message.contains("sk_live_********1234"), "{}", e.message);
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer pk_test_1"),
        );
        assert!(authenticate(&h).is_err());
    }
}
