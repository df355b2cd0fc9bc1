//! Protocol check: every request the real host sends to Stripe while serving apply
//! (`amount_off` and `percent_off`), clear and keep decisions is validated against the
//! parameter shapes of `stripe/spec/spec_extract_private_preview.json`, an extract of
//! Stripe's private-preview OpenAPI spec. The rules are read from the spec at test time.

mod common;

use common::{policy_dir, Host, Stripe};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The spec extract kept in the repository (`stripe/spec/`), or `STRIPE_SPEC_EXTRACT`.
fn load_spec() -> Value {
    let path = std::env::var_os("STRIPE_SPEC_EXTRACT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../stripe/spec/spec_extract_private_preview.json")
        });
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the Stripe spec extract is missing at {} ({e}): the protocol check reads \
             stripe/spec/ in the repository, or STRIPE_SPEC_EXTRACT set to the file",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// An operation the host may call: its name in `x-stripeOperations`, method and path template.
#[derive(Debug, Clone)]
struct Operation {
    name: String,
    method: String,
    template: String,
}

/// What the spec allows, as far as the host's requests go.
#[derive(Debug)]
struct Rules {
    /// The operations the host may use (retrieve, list line items, update).
    operations: Vec<Operation>,
    /// `maxLength` of the `{id}` path parameter.
    max_id_len: usize,
    /// Query parameters of the retrieve.
    retrieve_query: BTreeSet<String>,
    /// Top-level parameters of the update.
    update_params: BTreeSet<String>,
    /// Keys of one `discounts[]` item (`discount_params`).
    discount_keys: BTreeSet<String>,
    /// Keys of `coupon_data`.
    coupon_data_keys: BTreeSet<String>,
    /// `coupon_data.duration` values.
    durations: BTreeSet<String>,
    /// `coupon_data.name` maximum length.
    name_max: usize,
    /// `coupon` (id) maximum length.
    coupon_max: usize,
    /// Expandable paths of a Checkout Session (`customer`, `discounts.coupon`, ...).
    expandable: BTreeSet<String>,
}

/// A key without its parenthesized annotation: `coupon_data (title coupon_data)` → `coupon_data`.
fn bare(key: &str) -> String {
    key.split(" (").next().unwrap_or(key).trim().to_string()
}

/// The first `maxLength N` in a spec description.
fn max_length(desc: &str) -> usize {
    let rest = desc
        .split("maxLength")
        .nth(1)
        .unwrap_or_else(|| panic!("no maxLength in {desc:?}"));
    rest.trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("bad maxLength in {desc:?}"))
}

/// The values of `enum [a, b, c]` in a spec description.
fn enum_values(desc: &str) -> BTreeSet<String> {
    let start = desc.find('[').expect("an enum");
    let end = desc[start..].find(']').expect("a closed enum") + start;
    desc[start + 1..end]
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Keys of a spec object, without annotations and `_`-prefixed notes.
fn keys(obj: &Value) -> BTreeSet<String> {
    obj.as_object()
        .expect("a spec object")
        .keys()
        .filter(|k| !k.starts_with('_'))
        .map(|k| bare(k))
        .collect()
}

/// The entry of `obj` whose bare key is `name`.
fn field<'a>(obj: &'a Value, name: &str) -> &'a Value {
    obj.as_object()
        .expect("a spec object")
        .iter()
        .find(|(k, _)| bare(k) == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("the spec has no {name:?} in {obj}"))
}

impl Rules {
    fn from_spec(spec: &Value) -> Rules {
        let session_path = &spec["paths"]["/v1/checkout/sessions/{id}"];
        let get = &session_path["get"];
        let post = &session_path["post"];
        let params = &post["params"];
        let discounts = &params["discounts"];
        let item = field(discounts, "items");
        let coupon_data = field(item, "coupon_data");
        let schemas = &spec["components.schemas"];
        let session = &schemas["checkout.session"];

        let operations = session["x-stripeOperations"]
            .as_array()
            .expect("x-stripeOperations")
            .iter()
            .filter_map(|op| {
                let mut parts = op.as_str()?.split_whitespace();
                let (name, method, template) = (parts.next()?, parts.next()?, parts.next()?);
                ["retrieve", "list_line_items", "update"]
                    .contains(&name)
                    .then(|| Operation {
                        name: name.into(),
                        method: method.into(),
                        template: template.into(),
                    })
            })
            .collect::<Vec<_>>();
        assert_eq!(operations.len(), 3, "{operations:?}");

        let mut expandable: BTreeSet<String> = session["properties_selected"]
            .as_object()
            .expect("properties_selected")
            .iter()
            .filter(|(_, d)| d.as_str().is_some_and(|d| d.contains("expandable")))
            .map(|(k, _)| k.clone())
            .collect();
        let discount_schema = &schemas["payment_pages_checkout_session_discount"];
        for (k, d) in discount_schema.as_object().expect("discount schema") {
            if d.as_str().is_some_and(|d| d.contains("expandable")) {
                expandable.insert(format!("discounts.{k}"));
            }
        }

        Rules {
            operations,
            max_id_len: get["path_id_maxLength"]
                .as_u64()
                .expect("path_id_maxLength") as usize,
            retrieve_query: get["query"]
                .as_array()
                .expect("query")
                .iter()
                .map(|q| q.as_str().unwrap().to_string())
                .collect(),
            update_params: keys(params),
            discount_keys: keys(item),
            coupon_data_keys: keys(coupon_data),
            durations: enum_values(coupon_data["duration"].as_str().expect("duration")),
            name_max: max_length(coupon_data["name"].as_str().expect("name")),
            coupon_max: max_length(item["coupon"].as_str().expect("coupon")),
            expandable,
        }
    }

    /// The operation a method and path belong to, and the session id in the path.
    fn operation(&self, method: &str, path: &str) -> Result<(&Operation, String), String> {
        for op in &self.operations {
            if op.method != method {
                continue;
            }
            let (prefix, suffix) = op.template.split_once("{id}").expect("an {id} template");
            if let Some(id) = path
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(suffix))
            {
                if !id.is_empty() && !id.contains('/') {
                    return Ok((op, id.to_string()));
                }
            }
        }
        Err(format!(
            "{method} {path} is not an operation the host may call"
        ))
    }
}

/// Problems with one request; empty when it conforms.
fn validate(rules: &Rules, r: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let method = r["method"].as_str().unwrap_or_default();
    let path = r["path"].as_str().unwrap_or_default();
    let mut bad = |m: String| problems.push(format!("{method} {path}: {m}"));

    let version = r["stripe_version"].as_str().unwrap_or_default();
    if version != stripe_checkout::STRIPE_VERSION
        || !version.contains("checkout_server_update_beta=v1")
    {
        bad(format!(
            "Stripe-Version {version:?} is not the beta version"
        ));
    }
    if r["status"] != 200 {
        bad(format!("the emulator answered {}", r["status"]));
    }

    let (op, id) = match rules.operation(method, path) {
        Ok(found) => found,
        Err(e) => {
            bad(e);
            return problems;
        }
    };
    if id.len() > rules.max_id_len {
        bad(format!(
            "session id longer than {} characters",
            rules.max_id_len
        ));
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        bad(format!("session id {id:?} has unexpected characters"));
    }
    let params = r["params"].as_object().cloned().unwrap_or_default();
    let key = r["idempotency_key"].as_str();

    match op.name.as_str() {
        "retrieve" => {
            let query = r["query"].as_str().unwrap_or_default();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let name = pair
                    .split('=')
                    .next()
                    .unwrap_or_default()
                    .replace("%5B", "[")
                    .replace("%5D", "]");
                if !rules.retrieve_query.contains(&name) {
                    bad(format!("query parameter {name:?} is not in the spec"));
                }
            }
            check_expand(rules, &params, &mut bad);
            if key.is_some() {
                bad("a GET carries an Idempotency-Key".into());
            }
        }
        "list_line_items" => {
            // Standard list parameters; the extract does not spell them out.
            for (name, value) in &params {
                match name.as_str() {
                    "limit" => {
                        let n = value.as_str().and_then(|v| v.parse::<u32>().ok());
                        if !n.is_some_and(|n| (1..=100).contains(&n)) {
                            bad(format!("limit {value} is not 1..=100"));
                        }
                    }
                    "starting_after" | "ending_before" => {
                        if !value.as_str().is_some_and(|v| v.starts_with("li_")) {
                            bad(format!("{name} {value} is not a line item id"));
                        }
                    }
                    other => bad(format!("list parameter {other:?} is not a list parameter")),
                }
            }
            if key.is_some() {
                bad("a GET carries an Idempotency-Key".into());
            }
        }
        "update" => {
            match key {
                Some(k)
                    if !k.is_empty()
                        && k.len() <= 255
                        && k.bytes().all(|b| b.is_ascii_graphic()) => {}
                other => bad(format!("Idempotency-Key {other:?} is missing or invalid")),
            }
            for name in params.keys() {
                if !rules.update_params.contains(name) {
                    bad(format!("update parameter {name:?} is not in the spec"));
                } else if name != "discounts" && name != "expand" {
                    bad(format!(
                        "update parameter {name:?} is not one the host may send"
                    ));
                }
            }
            check_expand(rules, &params, &mut bad);
            match params.get("discounts") {
                None => bad("an update without `discounts`".into()),
                Some(Value::String(s)) if s.is_empty() => {}
                Some(Value::Array(items)) if !items.is_empty() => {
                    for item in items {
                        check_discount(rules, item, &mut bad);
                    }
                }
                Some(other) => bad(format!("discounts {other} is neither \"\" nor a list")),
            }
        }
        _ => unreachable!("only three operations are allowed"),
    }
    problems
}

/// `expand[]` values are strings naming expandable fields.
fn check_expand(rules: &Rules, params: &Map<String, Value>, bad: &mut impl FnMut(String)) {
    let Some(expand) = params.get("expand") else {
        return;
    };
    let Some(list) = expand.as_array() else {
        return bad(format!("expand {expand} is not a list"));
    };
    for e in list {
        match e.as_str() {
            Some(s) if s.len() <= 5000 && rules.expandable.contains(s) => {}
            _ => bad(format!(
                "expand {e} is not an expandable field of the session"
            )),
        }
    }
}

/// One `discounts[]` item: exactly one of `coupon` / `coupon_data`, typed as the spec says.
fn check_discount(rules: &Rules, item: &Value, bad: &mut impl FnMut(String)) {
    let Some(item) = item.as_object() else {
        return bad(format!("discount {item} is not an object"));
    };
    for k in item.keys() {
        if !rules.discount_keys.contains(k) {
            bad(format!("discounts[] key {k:?} is not in discount_params"));
        }
    }
    match (item.get("coupon"), item.get("coupon_data")) {
        (Some(coupon), None) => {
            if !coupon
                .as_str()
                .is_some_and(|c| !c.is_empty() && c.chars().count() <= rules.coupon_max)
            {
                bad(format!("coupon {coupon} is not a coupon id"));
            }
        }
        (None, Some(Value::Object(data))) => check_coupon_data(rules, data, bad),
        _ => bad("a discount needs exactly one of coupon and coupon_data".into()),
    }
}

fn check_coupon_data(rules: &Rules, data: &Map<String, Value>, bad: &mut impl FnMut(String)) {
    for k in data.keys() {
        if !rules.coupon_data_keys.contains(k) {
            bad(format!("coupon_data key {k:?} is not in the spec"));
        }
    }
    let text = |k: &str| data.get(k).and_then(Value::as_str);
    match (text("amount_off"), text("percent_off")) {
        (Some(amount), None) => {
            if !amount.parse::<i64>().is_ok_and(|a| a > 0) {
                bad(format!("amount_off {amount:?} is not a positive integer"));
            }
            if !text("currency")
                .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_lowercase()))
            {
                bad("amount_off without a currency code".into());
            }
        }
        (None, Some(percent)) => {
            if !percent
                .parse::<f64>()
                .is_ok_and(|p| p.is_finite() && p > 0.0 && p <= 100.0)
            {
                bad(format!("percent_off {percent:?} is not in (0, 100]"));
            }
        }
        _ => bad("coupon_data needs exactly one of amount_off and percent_off".into()),
    }
    if let Some(duration) = data.get("duration") {
        if !duration
            .as_str()
            .is_some_and(|d| rules.durations.contains(d))
        {
            bad(format!(
                "duration {duration} is not one of {:?}",
                rules.durations
            ));
        }
    }
    if let Some(name) = data.get("name") {
        if name
            .as_str()
            .is_none_or(|n| n.chars().count() > rules.name_max)
        {
            bad(format!(
                "name {name} is not a string of at most {}",
                rules.name_max
            ));
        }
    }
    match data.get("metadata") {
        None => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::Object(m)) if m.values().all(Value::is_string) => {}
        Some(other) => bad(format!("metadata {other} is not a string map")),
    }
}

#[test]
fn rules_come_from_the_spec() {
    let rules = Rules::from_spec(&load_spec());
    assert_eq!(rules.max_id_len, 66);
    assert!(rules.retrieve_query.contains("expand[]"));
    assert!(rules.update_params.contains("discounts") && rules.update_params.contains("expand"));
    assert_eq!(
        rules.discount_keys,
        BTreeSet::from(["coupon".to_string(), "coupon_data".to_string()])
    );
    assert_eq!(
        rules.coupon_data_keys,
        [
            "amount_off",
            "currency",
            "duration",
            "metadata",
            "name",
            "percent_off"
        ]
        .map(String::from)
        .into()
    );
    assert!(rules.durations.contains("once") && rules.durations.contains("forever"));
    assert_eq!(rules.name_max, 40);
    for e in ["line_items", "customer", "discounts.coupon"] {
        assert!(rules.expandable.contains(e), "{e}: {:?}", rules.expandable);
    }

    // The validator itself refuses what the spec does not allow.
    let ok = json!({"method": "POST", "path": "/v1/checkout/sessions/cs_test_1", "status": 200,
        "stripe_version": stripe_checkout::STRIPE_VERSION, "idempotency_key": "k",
        "params": {"discounts": [{"coupon_data": {"amount_off": "100", "currency": "usd", "name": "x"}}], "expand": ["line_items"]}});
    assert!(
        validate(&rules, &ok).is_empty(),
        "{:?}",
        validate(&rules, &ok)
    );
    let mutations: Vec<(&str, Value)> = vec![
        ("/idempotency_key", Value::Null),
        ("/stripe_version", json!("2025-03-31.basil")),
        (
            "/path",
            json!(format!("/v1/checkout/sessions/{}", "a".repeat(67))),
        ),
        ("/path", json!("/v1/customers/cus_1")),
        ("/params/metadata", json!({"a": "b"})),
        ("/params/discounts/0/coupon_data/amount_off", json!("-5")),
        ("/params/discounts/0/coupon_data/amount_off", json!("1.5")),
        ("/params/discounts/0/coupon_data/percent_off", json!("10")),
        (
            "/params/discounts/0/coupon_data/name",
            json!("n".repeat(41)),
        ),
        ("/params/discounts/0/coupon_data/duration", json!("weekly")),
        (
            "/params/discounts/0/coupon_data/max_redemptions",
            json!("1"),
        ),
        ("/params/discounts/0/promotion_code", json!("promo_1")),
        ("/params/discounts", json!("x")),
        ("/params/expand/0", json!("payment_intent")),
    ];
    for (pointer, value) in mutations {
        let mut r = ok.clone();
        let (parent, last) = pointer.rsplit_once('/').unwrap();
        match r.pointer_mut(parent).unwrap() {
            Value::Object(m) => {
                m.insert(last.to_string(), value.clone());
            }
            Value::Array(a) => a[last.parse::<usize>().unwrap()] = value.clone(),
            _ => unreachable!(),
        }
        assert!(
            !validate(&rules, &r).is_empty(),
            "{pointer} = {value} should be refused"
        );
    }
}

#[tokio::test]
async fn the_host_speaks_the_spec() {
    let rules = Rules::from_spec(&load_spec());
    let stripe = Stripe::start().await;
    // c-cart-threshold expands line items; the other two expand less (`expand`).
    let dir = policy_dir(&["cart-threshold", "loyalty-tier", "c-cart-threshold"]);
    let host = Host::start(&stripe.url(), dir.path(), "");

    let gold = stripe.customer(json!({"tier": "gold"})).await;
    let big = stripe.session("usd", &[(6_000, 2)], None).await;
    let small = stripe.session("usd", &[(4_000, 1)], None).await;
    // Twelve lines: the expansion holds ten, the host lists the rest.
    let many = stripe.session("eur", &[(1_000, 1); 12], None).await;
    let loyal = stripe.session("usd", &[(10_000, 1)], Some(&gold)).await;
    // Setup mode has no currency or subtotal: cart-threshold keeps the session as it is.
    let setup = stripe
        .client
        .create_checkout_session(
            &json!({"mode": "setup", "ui_mode": "custom", "return_url": "https://example.com/r",
                "permissions": {"update_discounts": "server_only"}}),
            None,
            None,
        )
        .await
        .unwrap()
        .body
        .id;

    // From here on, only the host talks to the emulator.
    stripe
        .http
        .delete(format!("{}/_emulator/requests", stripe.url()))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();

    let drive = [
        ("/apply-cart-discount", &big, "apply"),
        ("/apply-cart-discount", &small, "clear"),
        ("/apply-c-cart-discount", &many, "apply"),
        ("/apply-cart-discount", &setup, "keep"),
        ("/apply-loyalty-discount", &loyal, "apply"),
    ];
    for (route, id, decision) in drive {
        let a = host.post(route, json!({"checkout_session_id": id})).await;
        assert_eq!(a.status, 200, "{route} {id}: {:?}", a.body);
        assert_eq!(
            a.body["value"]["decision"]["type"], decision,
            "{:?}",
            a.body
        );
    }

    let log = stripe.requests().await;
    let mut problems = Vec::new();
    for r in &log {
        problems.extend(validate(&rules, r));
    }
    assert!(
        problems.is_empty(),
        "requests outside the spec:\n{}",
        problems.join("\n")
    );

    // What the log covered: both coupon_data variants, a clear, a line-item listing,
    // and a keep that sent no update.
    let updates: Vec<&Value> = log.iter().filter(|r| r["method"] == "POST").collect();
    let data = |r: &&Value| r["params"]["discounts"][0]["coupon_data"].clone();
    assert!(updates.iter().any(|r| data(r)["amount_off"].is_string()));
    assert!(updates.iter().any(|r| data(r)["percent_off"].is_string()));
    assert!(updates.iter().any(|r| r["params"]["discounts"] == ""));
    assert!(log
        .iter()
        .any(|r| r["path"] == format!("/v1/checkout/sessions/{many}/line_items").as_str()));
    let setup_path = format!("/v1/checkout/sessions/{setup}");
    assert!(log.iter().any(|r| r["path"] == setup_path.as_str()));
    assert!(!updates.iter().any(|r| r["path"] == setup_path.as_str()));
    assert_eq!(updates.len(), 4, "one update per apply/clear");
    let keys: BTreeSet<&str> = updates
        .iter()
        .filter_map(|r| r["idempotency_key"].as_str())
        .collect();
    assert_eq!(keys.len(), updates.len(), "every update has its own key");
}
