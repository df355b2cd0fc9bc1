//! Policies in C, JavaScript and Python (built by `scripts/build-lang-policies.sh`) through
//! the real host: loaded, served against the Stripe emulator, and hot-reloaded.

mod common;

use common::tempdir::TempDir;
use common::{built_policies, workspace, Host, Stripe};
use policy_engine::engine::content_hash;
use policy_engine::{EngineConfig, PolicyEngine, PolicySettings};
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const C_ROUTE: &str = "/apply-c-cart-discount";
const JS_ROUTE: &str = "/apply-js-limited-time-offer";
const PY_ROUTE: &str = "/apply-py-location-discount";

fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(built_policies().join(format!("{name}.wasm")))
        .unwrap_or_else(|e| panic!("{name}.wasm: {e}; run scripts/build-lang-policies.sh"))
}

fn toml(name: &str) -> String {
    std::fs::read_to_string(built_policies().join(format!("{name}.toml"))).unwrap()
}

/// The component with a `policy-build` custom section appended: same code, new version
/// (a new content hash), as a rebuild stamped with a build id would be.
fn rebuilt(component: &[u8], build: &str) -> Vec<u8> {
    let name = b"policy-build";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(build.as_bytes());
    assert!(payload.len() < 128);
    let mut out = component.to_vec();
    out.push(0); // custom section
    out.push(payload.len() as u8);
    out.extend_from_slice(&payload);
    out
}

/// A tag for builds that no earlier run compiled.
fn nonce() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Settings of the JS time-limited offer with a window around the real clock (the host's now).
fn js_settings(percent: &str, name: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let limits = toml("js-time-limited");
    let limits = &limits[limits
        .find("[limits]")
        .expect("[limits] in js-time-limited.toml")..];
    format!(
        "routes = [\"{JS_ROUTE}\"]\nexpand = []\nwarm_up = true\n[config]\nstarts_at = \"{}\"\nends_at = \"{}\"\npercent = \"{percent}\"\nname = \"{name}\"\n{limits}",
        now - 3_600,
        now + 86_400
    )
}

/// The settings file with `name = "..."` replaced and one line added to `[config]`.
fn edited(settings: &str, name: &str, extra: &str) -> String {
    let mut out = String::new();
    for line in settings.lines() {
        if line.starts_with("name = ") {
            out.push_str(&format!("name = \"{name}\"\n{extra}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(out.contains(name), "no name line in {settings}");
    out
}

/// Compiles components, and takes the warm-up snapshots of those with `warm_up = true`,
/// into the host's compile cache ahead of starting it, so the host's start and reloads
/// (which the harness bounds in time) load artifacts instead of compiling 12–18 MB
/// components; the same cache serves later runs.
fn warm_cache(policies: &[(&[u8], &str)]) {
    let engine = cache_engine();
    for (i, (bytes, settings)) in policies.iter().enumerate() {
        let settings = PolicySettings::from_toml(settings).unwrap();
        engine
            .load(&format!("warm-{i}"), bytes, settings)
            .unwrap_or_else(|e| panic!("component {i} does not load: {e}"));
    }
}

/// An engine configured as the test hosts are, over their compile cache.
fn cache_engine() -> PolicyEngine {
    PolicyEngine::new(EngineConfig {
        cache_dir: Some(workspace().join("target/test-policy-cache")),
        ..EngineConfig::default()
    })
    .unwrap()
}

/// Whether the test hosts' cache holds this component compiled with these settings.
fn is_compiled(component: &[u8], settings: &str) -> bool {
    cache_engine().is_compiled(component, &PolicySettings::from_toml(settings).unwrap())
}

/// The host's running compile processes.
fn compile_processes(host: &Host) -> Vec<u32> {
    let parent = host.pid().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            stat_field(pid, 4).as_ref() == Some(&parent)
                && String::from_utf8_lossy(&cmdline).contains("compile-policy")
        })
        .collect()
}

/// Field `n` of `/proc/<pid>/stat` (4: the parent's pid, 19: the niceness).
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command's closing parenthesis start at field 3.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n - 3).map(str::to_string)
}

/// Waits until the host runs a compile process (for the JavaScript policy); returns its pid.
async fn wait_compile_process(host: &Host) -> u32 {
    let pid = std::cell::Cell::new(0);
    wait_status(host, "js-time-limited", "ran a compile process", |_| {
        compile_processes(host)
            .first()
            .map(|&p| pid.set(p))
            .is_some()
    })
    .await;
    pid.get()
}

/// The most memory the process has had resident, in MiB (`VmHWM`).
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kib / 1024
}

async fn status_of(host: &Host, name: &str) -> Value {
    let all = host.get_json("/admin/policies").await;
    all.as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

/// Waits (up to 3 min: a cold compile of a JS or Python component takes seconds) until the
/// host serves `version` of the policy.
async fn wait_version(host: &Host, name: &str, version: &str) {
    wait_status(host, name, &format!("served {version}"), |s| {
        s["version"] == version
    })
    .await;
}

async fn serve(
    stripe: &Stripe,
    host: &Host,
    route: &str,
    id: &str,
    coupon: &str,
    discount: i64,
    total: i64,
) {
    let a = host.post(route, json!({"checkout_session_id": id})).await;
    assert_eq!(a.status, 200, "{route}: {:#}", a.body);
    assert_eq!(a.body["value"]["decision"]["type"], "apply", "{:#}", a.body);
    assert_eq!(a.body["value"]["decision"]["coupon_data"]["name"], coupon);
    assert_eq!(a.body["value"]["session"]["amount_discount"], discount);
    let s = stripe.get_session(id).await;
    assert_eq!(s["total_details"]["amount_discount"], discount, "{s:#}");
    assert_eq!(s["amount_total"], total, "{s:#}");
    assert_eq!(s["discounts"][0]["coupon"]["name"], coupon);
}

/// A 150.00 USD session shipping to Paris (75001).
async fn paris_session(stripe: &Stripe) -> String {
    let id = stripe.session("usd", &[(15_000, 1)], None).await;
    let r = stripe
        .http
        .post(format!(
            "{}/_emulator/sessions/{id}/shipping_details",
            stripe.url()
        ))
        .json(&json!({"name": "Jeanne", "address": {"country": "FR", "postal_code": "75001", "city": "Paris"}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    id
}

#[tokio::test]
async fn c_js_and_python_policies_are_served_and_hot_reloaded() {
    let (c1, js1, py1) = (
        wasm("c-cart-threshold"),
        wasm("js-time-limited"),
        wasm("py-location"),
    );
    let (c2, js2, py2) = (rebuilt(&c1, "v2"), rebuilt(&js1, "v2"), rebuilt(&py1, "v2"));
    let js_toml = js_settings("20", "JS offer");
    let (c_toml, py_toml) = (toml("c-cart-threshold"), toml("py-location"));
    assert!(py_toml.contains("warm_up = true"), "{py_toml}");
    let c2_toml = edited(&c_toml, "C v2", "").replace("percent = \"10\"", "percent = \"12\"");
    let js2_toml = js_settings("25", "JS v2");
    let py2_toml = edited(&py_toml, "Py v2", "")
        .replace("\"postal.FR.75\" = \"12\"", "\"postal.FR.75\" = \"20\"");
    // Version 2's settings land before its component: the host may load that pair too.
    warm_cache(&[
        (&c1, &c_toml),
        (&js1, &js_toml),
        (&py1, &py_toml),
        (&c2, &c2_toml),
        (&js2, &js2_toml),
        (&py2, &py2_toml),
        (&c1, &c2_toml),
        (&js1, &js2_toml),
        (&py1, &py2_toml),
    ]);

    let dir = TempDir::new();
    common::install_policy(dir.path(), "c-cart-threshold", &c1, &c_toml);
    common::install_policy(dir.path(), "js-time-limited", &js1, &js_toml);
    common::install_policy(dir.path(), "py-location", &py1, &py_toml);
    let stripe = Stripe::start().await;
    let host = Host::start(&stripe.url(), dir.path(), "");
    for (name, component) in [
        ("c-cart-threshold", &c1),
        ("js-time-limited", &js1),
        ("py-location", &py1),
    ] {
        wait_version(&host, name, &content_hash(component)).await;
    }

    // Version 1 of each, through the real host and the emulator.
    // C: 10 % of 150.00 is 15.00.
    let id = stripe.session("usd", &[(15_000, 1)], None).await;
    serve(&stripe, &host, C_ROUTE, &id, "Cart discount", 1_500, 13_500).await;
    // A cart of exactly 100.00 gets no discount: `clear`.
    let small = stripe.session("usd", &[(5_000, 2)], None).await;
    let a = host
        .post(C_ROUTE, json!({"checkout_session_id": small}))
        .await;
    assert_eq!(a.body["value"]["decision"]["type"], "clear", "{:#}", a.body);
    // JavaScript: the offer runs now, 20 % of 150.00.
    let id = stripe.session("usd", &[(15_000, 1)], None).await;
    serve(&stripe, &host, JS_ROUTE, &id, "JS offer", 3_000, 12_000).await;
    // Python: shipping to Paris, postal.FR.75 = 12 %.
    let paris = paris_session(&stripe).await;
    serve(
        &stripe,
        &host,
        PY_ROUTE,
        &paris,
        "Regional discount",
        1_800,
        13_200,
    )
    .await;

    // Version 2 of each: a new component and new settings dropped into the directory.
    common::install_policy(dir.path(), "c-cart-threshold", &c2, &c2_toml);
    common::install_policy(dir.path(), "js-time-limited", &js2, &js2_toml);
    common::install_policy(dir.path(), "py-location", &py2, &py2_toml);
    for (name, component) in [
        ("c-cart-threshold", &c2),
        ("js-time-limited", &js2),
        ("py-location", &py2),
    ] {
        wait_version(&host, name, &content_hash(component)).await;
    }
    // Settings land with or before the component; wait until the new name serves.
    let id = stripe.session("usd", &[(15_000, 1)], None).await;
    serve(&stripe, &host, C_ROUTE, &id, "C v2", 1_800, 13_200).await;
    let id = stripe.session("usd", &[(15_000, 1)], None).await;
    serve(&stripe, &host, JS_ROUTE, &id, "JS v2", 3_750, 11_250).await;
    // The same Paris session again: the new rate replaces the old discount.
    serve(&stripe, &host, PY_ROUTE, &paris, "Py v2", 3_000, 12_000).await;
}

/// Waits (up to 180 s) until `name`'s status satisfies `what`; returns it.
async fn wait_status(host: &Host, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let s = status_of(host, name).await;
        if done(&s) {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "{name} never {what}: {s:#}\n{}",
            host.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The log line of an overtaken load of `component` whose thread has ended.
fn discarded(component: &[u8]) -> String {
    let version = content_hash(component);
    format!(
        "an overtaken policy load finished; discarded policy=js-time-limited version={}",
        &version[..12]
    )
}

/// Writes a new JavaScript build and waits until the host is loading it.
async fn start_slow_load(host: &Host, dir: &std::path::Path, component: &[u8], settings: &str) {
    common::install_policy(dir, "js-time-limited", component, settings);
    let version = content_hash(component);
    wait_status(host, "js-time-limited", "started loading", |s| {
        s["loading"] == version.as_str()
    })
    .await;
}

/// Waits until the overtaken load of `component` has ended; it must never have served.
/// Returns the policy's status then.
async fn wait_discarded(host: &Host, component: &[u8]) -> Value {
    let wanted = discarded(component);
    let js = wait_status(
        host,
        "js-time-limited",
        "finished the overtaken load",
        |_| host.logs().contains(&wanted),
    )
    .await;
    assert!(
        !loaded_versions(&js).contains(&content_hash(component)),
        "an overtaken load served: {js:#}"
    );
    js
}

fn loaded_versions(status: &Value) -> Vec<String> {
    status["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["outcome"] == "loaded")
        .map(|e| e["version"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// New JavaScript builds load for seconds (a warm-up snapshot, then a compile), in a
/// compile process. While one loads, another policy's change serves at once, and the load
/// is never swapped in once newer files overtook it: the files going back to the serving
/// version, or a newer version (here one the cache has, which does not wait for the
/// compile). An overtaken compile is stopped; one that dies fails its load alone; the
/// compiler's memory is never the host's.
#[tokio::test]
async fn a_slow_load_holds_back_no_other_policy_and_an_overtaken_one_never_serves() {
    let (c1, js1) = (wasm("c-cart-threshold"), wasm("js-time-limited"));
    // Builds no earlier run compiled.
    let nonce = nonce();
    let c2 = rebuilt(&c1, &format!("v2-{nonce}"));
    let slow = [
        rebuilt(&js1, &format!("slow-a-{nonce}")),
        rebuilt(&js1, &format!("slow-b-{nonce}")),
    ];
    let (c_toml, js_toml) = (toml("c-cart-threshold"), toml("js-time-limited"));
    let c2_toml = edited(&c_toml, "C v2", "");
    let js2_toml = edited(&js_toml, "JS v2", "");
    // The C policy's new build compiles while the JavaScript one does.
    warm_cache(&[(&c1, &c_toml), (&js1, &js_toml), (&js1, &js2_toml)]);
    let js2_digest = PolicySettings::from_toml(&js2_toml).unwrap().digest();

    let dir = TempDir::new();
    common::install_policy(dir.path(), "c-cart-threshold", &c1, &c_toml);
    common::install_policy(dir.path(), "js-time-limited", &js1, &js_toml);
    let stripe = Stripe::start().await;
    let host = Host::start(&stripe.url(), dir.path(), "");
    wait_version(&host, "c-cart-threshold", &content_hash(&c1)).await;
    wait_version(&host, "js-time-limited", &content_hash(&js1)).await;
    // A new JavaScript build starts loading; the C policy's new version serves meanwhile.
    start_slow_load(&host, dir.path(), &slow[0], &js_toml).await;
    let compiling = wait_compile_process(&host).await;
    assert_eq!(
        stat_field(compiling, 19).as_deref(),
        Some("10"),
        "requests come first"
    );
    common::install_policy(dir.path(), "c-cart-threshold", &c2, &c2_toml);
    wait_version(&host, "c-cart-threshold", &content_hash(&c2)).await;
    let js = status_of(&host, "js-time-limited").await;
    assert_eq!(js["version"], content_hash(&js1), "{js:#}");
    assert_eq!(
        js["loading"],
        content_hash(&slow[0]),
        "still loading: {js:#}"
    );
    let id = stripe.session("usd", &[(15_000, 1)], None).await;
    serve(&stripe, &host, C_ROUTE, &id, "C v2", 1_500, 13_500).await;

    // The files go back to the serving version: the load is overtaken, its compile
    // process stopped, and its result discarded.
    common::install_policy(dir.path(), "js-time-limited", &js1, &js_toml);
    wait_status(&host, "js-time-limited", "stopped loading", |s| {
        s["loading"].is_null()
    })
    .await;
    let js = wait_discarded(&host, &slow[0]).await;
    assert_eq!(js["version"], content_hash(&js1), "{js:#}");
    assert!(compile_processes(&host).is_empty(), "{}", host.logs());
    assert!(
        !is_compiled(&slow[0], &js_toml),
        "the overtaken compile ran to its end"
    );

    // Another new build starts loading, then newer settings arrive for the serving
    // component, compiled already: they serve, and the slow load never does.
    start_slow_load(&host, dir.path(), &slow[1], &js_toml).await;
    common::install_policy(dir.path(), "js-time-limited", &js1, &js2_toml);
    wait_status(&host, "js-time-limited", "served the new settings", |s| {
        s["settings_digest"] == js2_digest.as_str()
    })
    .await;
    let js = wait_discarded(&host, &slow[1]).await;
    assert_eq!(js["version"], content_hash(&js1), "{js:#}");
    assert_eq!(js["settings_digest"], js2_digest.as_str(), "{js:#}");
    assert!(js["loading"].is_null(), "{js:#}");
    assert!(
        !is_compiled(&slow[1], &js_toml),
        "the overtaken compile ran to its end"
    );

    // A compile process killed mid-compile (as the out-of-memory killer would) fails
    // that load alone: the host and the serving version stay.
    start_slow_load(&host, dir.path(), &slow[0], &js2_toml).await;
    let compiling = wait_compile_process(&host).await;
    assert_eq!(unsafe { libc::kill(compiling as i32, libc::SIGKILL) }, 0);
    let js = wait_status(&host, "js-time-limited", "failed the killed load", |s| {
        s["loading"].is_null() && !s["last_error"].is_null()
    })
    .await;
    let error = js["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("killed by signal 9") && error.contains("tried again by POST /admin/reload"),
        "{js:#}"
    );
    assert_eq!(js["version"], content_hash(&js1), "{js:#}");
    let id = stripe.session("usd", &[(15_000, 1)], None).await;
    serve(&stripe, &host, C_ROUTE, &id, "C v2", 1_500, 13_500).await;

    // Not the files' fault: an admin reload tries them again. The build compiles in its
    // process and serves; the compiler's gigabyte never was the host's.
    let report = host.reload().await;
    assert_eq!(report["loaded"], json!(["js-time-limited"]), "{report:#}");
    let js = status_of(&host, "js-time-limited").await;
    assert_eq!(js["version"], content_hash(&slow[0]), "{js:#}");
    assert!(js["last_error"].is_null(), "{js:#}");
    let loaded = js["history"]
        .as_array()
        .and_then(|h| h.iter().rev().find(|e| e["outcome"] == "loaded"));
    let loaded = loaded.unwrap_or_else(|| panic!("no loaded event: {js:#}"));
    assert_eq!(loaded["from_cache"], false, "{js:#}");
    assert_eq!(loaded["trigger"], "admin", "{js:#}");
    assert!(is_compiled(&slow[0], &js2_toml));
    let peak = peak_rss_mib(host.pid());
    assert!(peak < 400, "the host peaked at {peak} MiB resident");
}

/// Writes a version that must fail, and waits until the host reports it; returns the
/// policy's status and the error.
async fn install_failing(
    host: &Host,
    dir: &std::path::Path,
    name: &str,
    component: &[u8],
    settings: &str,
) -> (Value, String) {
    common::install_policy(dir, name, component, settings);
    let status = wait_status(host, name, "reported the failure", |s| {
        !s["last_error"].is_null()
    })
    .await;
    let error = status["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status, error)
}

/// A compile that runs past `compile_timeout_ms` is stopped, and the serving version
/// stays. With `compile_process = "all"`, small components compile in a process too, and
/// a refusal there reads as the host's own.
#[tokio::test]
async fn compile_processes_have_a_deadline_and_refuse_as_the_host_does() {
    let (c1, js1) = (wasm("c-cart-threshold"), wasm("js-time-limited"));
    let nonce = nonce();
    let (c_toml, js_toml) = (toml("c-cart-threshold"), toml("js-time-limited"));
    warm_cache(&[(&c1, &c_toml), (&js1, &js_toml)]);
    let dir = TempDir::new();
    common::install_policy(dir.path(), "c-cart-threshold", &c1, &c_toml);
    common::install_policy(dir.path(), "js-time-limited", &js1, &js_toml);
    let stripe = Stripe::start().await;
    let host = Host::start(
        &stripe.url(),
        dir.path(),
        "[reload]\ncompile_process = \"all\"\ncompile_timeout_ms = 2000\n",
    );
    wait_version(&host, "c-cart-threshold", &content_hash(&c1)).await;
    wait_version(&host, "js-time-limited", &content_hash(&js1)).await;

    // A new JavaScript build needs far more than 2 s.
    let slow = rebuilt(&js1, &format!("deadline-{nonce}"));
    let (js, error) = install_failing(&host, dir.path(), "js-time-limited", &slow, &js_toml).await;
    assert!(
        error.contains("did not compile within 2 s; its compile process was stopped"),
        "{js:#}"
    );
    assert_eq!(js["version"], content_hash(&js1), "{js:#}");
    assert!(compile_processes(&host).is_empty(), "{}", host.logs());
    assert!(!is_compiled(&slow, &js_toml));
    let id = stripe.session("usd", &[(15_000, 1)], None).await;
    serve(&stripe, &host, C_ROUTE, &id, "Cart discount", 1_500, 13_500).await;

    // A new C build compiles in a process of its own, and serves.
    let c2 = rebuilt(&c1, &format!("all-{nonce}"));
    let c2_toml = edited(&c_toml, "C v2", "");
    common::install_policy(dir.path(), "c-cart-threshold", &c2, &c2_toml);
    wait_version(&host, "c-cart-threshold", &content_hash(&c2)).await;
    assert!(
        host.logs()
            .contains("compiling in a compile process policy=\"c-cart-threshold\""),
        "{}",
        host.logs()
    );
    serve(&stripe, &host, C_ROUTE, &id, "C v2", 1_500, 13_500).await;

    // A truncated build is refused with the host's own message; version 2 keeps serving.
    let broken = &c2[..c2.len() / 2];
    let (c, error) = install_failing(&host, dir.path(), "c-cart-threshold", broken, &c2_toml).await;
    assert!(
        error.starts_with("the component does not compile: "),
        "{c:#}"
    );
    assert_eq!(c["version"], content_hash(&c2), "{c:#}");
}
