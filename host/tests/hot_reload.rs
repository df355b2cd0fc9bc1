//! Hot reload through the real host: files change in the policy directory while
//! storefront requests keep flowing against the Stripe emulator.

mod common;

use common::tempdir::TempDir;
use common::{built_policies, workspace, Host, Stripe};
use policy_engine::engine::content_hash;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROUTE: &str = "/apply-cart-discount";

/// Settings of version A: cart-threshold, 10 % (12.00 off a 120.00 cart).
fn settings_a() -> String {
    format!("routes = [\"{ROUTE}\"]\n[config]\nthreshold = \"10000\"\npercent = \"10\"\ncap = \"2000\"\nname = \"Version A\"\n")
}

/// Settings of version B: cart-threshold, 20 % (24.00 off).
fn settings_b() -> String {
    format!("routes = [\"{ROUTE}\"]\n[config]\nthreshold = \"10000\"\npercent = \"20\"\ncap = \"5000\"\nname = \"Version B\"\n")
}

/// Settings of version L: loyalty-tier on the same route, gold 15 % (18.00 off).
fn settings_l() -> String {
    format!("routes = [\"{ROUTE}\"]\n[config]\nmetadata_key = \"tier\"\n\"tier.gold\" = \"15\"\n")
}

fn component(name: &str) -> Vec<u8> {
    std::fs::read(built_policies().join(format!("{name}.wasm"))).unwrap()
}

/// A good version: its label, component and settings.
#[derive(Clone)]
struct Version {
    label: &'static str,
    wasm: Vec<u8>,
    toml: String,
}

fn version(label: &'static str) -> Version {
    match label {
        "A" => Version {
            label,
            wasm: component("cart-threshold"),
            toml: settings_a(),
        },
        "B" => Version {
            label,
            wasm: component("cart-threshold"),
            toml: settings_b(),
        },
        _ => Version {
            label: "L",
            wasm: component("loyalty-tier"),
            toml: settings_l(),
        },
    }
}

/// Which good version answered, from the decision and the updated session.
fn label_of(body: &Value) -> Option<&'static str> {
    let coupon = &body["value"]["decision"]["coupon_data"];
    let discount = body["value"]["session"]["amount_discount"].as_i64();
    match (
        coupon["name"].as_str(),
        coupon["amount_off"].as_i64(),
        coupon["percent_off"].as_f64(),
        discount,
    ) {
        (Some("Version A"), Some(1_200), None, Some(1_200)) => Some("A"),
        (Some("Version B"), Some(2_400), None, Some(2_400)) => Some("B"),
        (Some("Gold member discount"), None, Some(15.0), Some(1_800)) => Some("L"),
        _ => None,
    }
}

/// Writes a file the way careful tools do: a hidden temporary file, then a rename.
fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Puts a version in place as plain files (settings first, then the component).
fn deploy(dir: &Path, name: &str, v: &Version) {
    write_atomic(&dir.join(format!("{name}.toml")), v.toml.as_bytes());
    write_atomic(&dir.join(format!("{name}.wasm")), &v.wasm);
}

/// A component with a unique custom section first: same behaviour, new content hash
/// (and so a compile, not a cache hit), even when truncated.
fn unique(wasm: Vec<u8>, tag: &str) -> Vec<u8> {
    let name = b"hot-reload-test";
    let payload = format!(
        "{tag}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    );
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(payload.as_bytes());
    let mut out = wasm[..8].to_vec();
    out.push(0);
    leb128(&mut out, section.len());
    out.extend_from_slice(&section);
    out.extend_from_slice(&wasm[8..]);
    out
}

fn leb128(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A component of another world: the hostile build's `wrong-world` when present
/// (scripts/build-test-policies.sh), else a minimal component exporting `run: func() -> u32`.
fn wrong_world() -> Vec<u8> {
    let built = workspace().join("target/test-policies/wrong-world.wasm");
    if let Ok(bytes) = std::fs::read(built) {
        return bytes;
    }
    let module: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // core module header
        0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, // type: () -> i32
        0x03, 0x02, 0x01, 0x00, // func 0: type 0
        0x07, 0x07, 0x01, 0x03, b'r', b'u', b'n', 0x00, 0x00, // export "run"
        0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x2a, 0x0b, // body: i32.const 42
    ];
    let mut c = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    c.push(0x01); // core module section
    leb128(&mut c, module.len());
    c.extend_from_slice(module);
    c.extend_from_slice(&[0x02, 0x04, 0x01, 0x00, 0x00, 0x00]); // core instance of module 0
    c.extend_from_slice(&[
        0x06, 0x09, 0x01, 0x00, 0x00, 0x01, 0x00, 0x03, b'r', b'u', b'n',
    ]); // alias core func
    c.extend_from_slice(&[0x07, 0x05, 0x01, 0x40, 0x00, 0x00, 0x79]); // type: func() -> u32
    c.extend_from_slice(&[0x08, 0x06, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00]); // canon lift
    c.extend_from_slice(&[
        0x0b, 0x09, 0x01, 0x00, 0x03, b'r', b'u', b'n', 0x01, 0x00, 0x00,
    ]); // export "run"
    c
}

/// The status of one policy, or Null.
async fn status_of(host: &Host, name: &str) -> Value {
    let all = host.get_json("/admin/policies").await;
    all.as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

/// Polls the status API (up to 15 s) until `pred` holds for the policy.
async fn wait_status(host: &Host, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = status_of(host, name).await;
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "status of {name} never showed {what}: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The serving version and settings of a good version, as the status reports them.
fn serves(s: &Value, v: &Version) -> bool {
    let settings = policy_engine::PolicySettings::from_toml(&v.toml).unwrap();
    s["version"] == content_hash(&v.wasm).as_str()
        && s["settings_digest"] == settings.digest().as_str()
}

/// A failure of this component in the history, and `last_error` set.
fn failed_with(s: &Value, wasm: &[u8]) -> bool {
    let version = content_hash(wasm);
    s["last_error"].is_string()
        && s["history"].as_array().is_some_and(|h| {
            h.iter()
                .any(|e| e["outcome"] == "failed" && e["version"] == version.as_str())
        })
}

fn history(s: &Value) -> Vec<Value> {
    s["history"].as_array().cloned().unwrap_or_default()
}

async fn gold_session(stripe: &Stripe) -> String {
    let customer = stripe.customer(json!({"tier": "gold"})).await;
    stripe.session("usd", &[(6_000, 2)], Some(&customer)).await
}

/// A ConfigMap volume: `..<stamp>/` directories, the `..data` symlink to the
/// current one, and `name.ext -> ..data/name.ext` symlinks.
struct ConfigMap {
    dir: PathBuf,
    generation: u32,
}

impl ConfigMap {
    fn new(dir: &Path) -> ConfigMap {
        ConfigMap {
            dir: dir.to_path_buf(),
            generation: 0,
        }
    }

    /// Publishes a new set of files the way the kubelet does: a new timestamped
    /// directory, `..data_tmp` pointing at it renamed over `..data`, the old one removed.
    fn publish(&mut self, files: &[(&str, &[u8])]) {
        self.generation += 1;
        let stamp = format!(
            "..2026_11_26_14_00_{:02}.{}",
            self.generation,
            std::process::id()
        );
        let new_dir = self.dir.join(&stamp);
        std::fs::create_dir(&new_dir).unwrap();
        for (file, bytes) in files {
            std::fs::write(new_dir.join(file), bytes).unwrap();
        }
        let old = std::fs::read_link(self.dir.join("..data")).ok();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&stamp, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        for (file, _) in files {
            let link = self.dir.join(file);
            if std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
                continue;
            }
            // A key new to the volume (or plain files before): its symlink, swapped in atomically.
            let tmp = self.dir.join(format!(".{file}.link"));
            std::os::unix::fs::symlink(format!("..data/{file}"), &tmp).unwrap();
            std::fs::rename(&tmp, &link).unwrap();
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(self.dir.join(old)).ok();
        }
    }
}

/// Publishes the `promo` policy through a ConfigMap swap or as plain files.
fn publish(cm: &mut ConfigMap, configmap: bool, wasm: &[u8], toml: &[u8]) {
    if configmap {
        cm.publish(&[("promo.wasm", wasm), ("promo.toml", toml)]);
    } else {
        write_atomic(&cm.dir.join("promo.toml"), toml);
        write_atomic(&cm.dir.join("promo.wasm"), wasm);
    }
}

/// What one storefront request saw.
struct Seen {
    started: Instant,
    ended: Instant,
    outcome: Result<Option<&'static str>, String>,
}

/// When a serving state (a good version, or `None` for removed) was written and
/// when the status API confirmed it.
struct Deployed {
    label: Option<&'static str>,
    written: Instant,
    confirmed: Instant,
}

/// Whether a request over [started, ended] may have seen this state: it was
/// written before the request ended, and not yet replaced when it started.
fn possible(timeline: &[Deployed], label: Option<&str>, started: Instant, ended: Instant) -> bool {
    timeline.iter().enumerate().any(|(i, d)| {
        d.label == label
            && d.written <= ended
            && timeline
                .get(i + 1)
                .is_none_or(|next| next.confirmed >= started)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_storm_under_load_serves_only_good_versions() {
    let stripe = Stripe::start().await;
    let dir = TempDir::new();
    let name = "promo";
    let a = version("A");
    let b = version("B");
    let l = version("L");
    let mut timeline = vec![];
    let written = Instant::now();
    deploy(dir.path(), name, &a);
    let host = Arc::new(Host::start(
        &stripe.url(),
        dir.path(),
        "[reload]\nwatch = true\ndebounce_ms = 30\nsettle_ms = 60\n",
    ));
    wait_status(&host, name, "version A", |s| serves(s, &a)).await;
    timeline.push(Deployed {
        label: Some("A"),
        written,
        confirmed: Instant::now(),
    });

    // Eight workers, each on its own gold customer's session, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let mut workers = vec![];
    for _ in 0..8 {
        let session = gold_session(&stripe).await;
        let (host, stop, seen) = (host.clone(), stop.clone(), seen.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let r = host
                    .http
                    .post(format!("{}{ROUTE}", host.url))
                    .json(&json!({"checkout_session_id": session}))
                    .send()
                    .await;
                let outcome = match r {
                    Err(e) => Err(format!("transport: {e}")),
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let text = r.text().await.unwrap_or_default();
                        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                        match status {
                            200 => label_of(&body)
                                .map(Some)
                                .ok_or(format!("200 from no good version: {text}")),
                            404 if body["type"] == "error"
                                && body["message"] == "This discount is not available." =>
                            {
                                // A retired route: do not spin while it is gone.
                                tokio::time::sleep(Duration::from_millis(2)).await;
                                Ok(None)
                            }
                            _ => Err(format!("{status}: {text}")),
                        }
                    }
                };
                seen.lock().unwrap().push(Seen {
                    started,
                    ended: Instant::now(),
                    outcome,
                });
            }
        }));
    }

    let mut reloads = 0;
    let mut failures = 0;
    let mut cm = ConfigMap::new(dir.path());
    let cycles = 7;
    for cycle in 0..cycles {
        // Odd cycles publish through ConfigMap `..data` swaps, even ones through plain files.
        let configmap = cycle % 2 == 1;
        let plan: [(&str, Option<&Version>); 8] = [
            ("good", Some(&b)),
            ("garbage", None),
            ("good", Some(&l)),
            ("truncated", None),
            ("wrong-world", None),
            ("good", Some(&a)),
            ("remove", None),
            ("good", Some(&l)),
        ];
        let mut serving = timeline.last().unwrap().label;
        for (kind, good) in plan {
            let written = Instant::now();
            match (kind, good) {
                ("good", Some(v)) => {
                    publish(&mut cm, configmap, &v.wasm, v.toml.as_bytes());
                    wait_status(&host, name, v.label, |s| serves(s, v)).await;
                    timeline.push(Deployed {
                        label: Some(v.label),
                        written,
                        confirmed: Instant::now(),
                    });
                    serving = Some(v.label);
                }
                ("remove", _) => {
                    if configmap {
                        // A key dropped from the ConfigMap: its symlinks go with the swap.
                        cm.publish(&[]);
                    }
                    std::fs::remove_file(dir.path().join("promo.wasm")).unwrap();
                    std::fs::remove_file(dir.path().join("promo.toml")).unwrap();
                    let s = wait_status(&host, name, "removed", |s| s["version"].is_null()).await;
                    assert_eq!(history(&s).last().unwrap()["outcome"], "removed", "{s:#}");
                    timeline.push(Deployed {
                        label: None,
                        written,
                        confirmed: Instant::now(),
                    });
                    let gone = host
                        .post(ROUTE, json!({"checkout_session_id": "cs_test_x"}))
                        .await;
                    assert_eq!(gone.status, 404, "{:?}", gone.body);
                    assert_eq!(gone.body["message"], "This discount is not available.");
                    serving = None;
                }
                (bad, _) => {
                    let base = match serving {
                        Some("L") => &a.wasm,
                        _ => &l.wasm,
                    };
                    let wasm = match bad {
                        "garbage" => {
                            format!("garbage bytes, cycle {cycle}: not a component at all")
                                .into_bytes()
                        }
                        "truncated" => unique(base.clone(), &format!("truncated-{cycle}"))
                            [..base.len() * 2 / 3]
                            .to_vec(),
                        _ => unique(wrong_world(), &format!("wrong-world-{cycle}")),
                    };
                    let current_toml = match serving {
                        Some("A") => a.toml.clone(),
                        Some("B") => b.toml.clone(),
                        _ => l.toml.clone(),
                    };
                    publish(&mut cm, configmap, &wasm, current_toml.as_bytes());
                    let s = wait_status(&host, name, &format!("the {bad} failure"), |s| {
                        failed_with(s, &wasm)
                    })
                    .await;
                    let error = s["last_error"].as_str().unwrap().to_string();
                    match bad {
                        "garbage" => {
                            assert!(error.contains("not a WebAssembly component"), "{error}")
                        }
                        "wrong-world" => assert!(error.contains("world"), "{error}"),
                        _ => {}
                    }
                    // The last good version keeps serving.
                    let last = [&a, &b, &l]
                        .into_iter()
                        .find(|v| Some(v.label) == serving)
                        .unwrap();
                    assert!(serves(&s, last), "after {bad}: {s:#}");
                    failures += 1;
                }
            }
            reloads += 1;
        }
    }
    // Let the workers see the last version for a moment, then stop them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    assert!(
        reloads >= 50 && failures == cycles * 3,
        "{reloads} reloads, {failures} failures"
    );
    // The status API shows every failure.
    let s = status_of(&host, name).await;
    let failed_events = history(&s)
        .iter()
        .filter(|e| e["outcome"] == "failed")
        .count();
    assert!(
        failed_events >= failures,
        "{failed_events} failures in history: {s:#}"
    );
    let logged = host.logs().matches("policy failed to load").count();
    assert!(logged >= failures, "{logged} failures logged");

    let seen = seen.lock().unwrap();
    let bad: Vec<&String> = seen
        .iter()
        .filter_map(|s| s.outcome.as_ref().err())
        .collect();
    assert!(
        bad.is_empty(),
        "{} failed requests of {}: {:?}",
        bad.len(),
        seen.len(),
        &bad[..bad.len().min(5)]
    );
    let mut by_label = std::collections::BTreeMap::new();
    for s in seen.iter() {
        let label = *s.outcome.as_ref().unwrap();
        assert!(
            possible(&timeline, label, s.started, s.ended),
            "a response from {label:?} when that version could not have been serving"
        );
        *by_label.entry(label.unwrap_or("404")).or_insert(0) += 1;
    }
    eprintln!(
        "{} requests during {reloads} reloads: {by_label:?}",
        seen.len()
    );
    for label in ["A", "B", "L"] {
        assert!(
            by_label.get(label).is_some_and(|n| *n > 0),
            "no response from {label}: {by_label:?}"
        );
    }
}

/// One storefront request on a gold session; the label of the version that answered.
async fn served_by(host: &Host, session: &str) -> Option<&'static str> {
    let a = host
        .post(ROUTE, json!({"checkout_session_id": session}))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    label_of(&a.body)
}

/// A host over a fresh directory holding version A as `promo`.
async fn promo_host(extra: &str) -> (Stripe, Host, TempDir, String) {
    let stripe = Stripe::start().await;
    let dir = TempDir::new();
    deploy(dir.path(), "promo", &version("A"));
    let host = Host::start(&stripe.url(), dir.path(), extra);
    let session = gold_session(&stripe).await;
    assert_eq!(served_by(&host, &session).await, Some("A"));
    (stripe, host, dir, session)
}

#[tokio::test]
async fn editor_rename_saves_swap_the_version_without_a_gap() {
    let (_stripe, host, dir, session) = promo_host("").await;
    let (b, l) = (version("B"), version("L"));
    let wasm = dir.path().join("promo.wasm");
    let toml = dir.path().join("promo.toml");

    // Save through a swap file renamed over the original.
    std::fs::write(dir.path().join(".promo.toml.swp"), &b.toml).unwrap();
    std::fs::rename(dir.path().join(".promo.toml.swp"), &toml).unwrap();
    wait_status(&host, "promo", "B", |s| serves(s, &b)).await;
    assert_eq!(served_by(&host, &session).await, Some("B"));

    // vim's default: move the original to a backup, write a new file, drop the backup.
    std::fs::write(dir.path().join("promo.toml.new"), &l.toml).unwrap();
    std::fs::rename(&wasm, dir.path().join("promo.wasm~")).unwrap();
    std::fs::write(&wasm, &l.wasm).unwrap();
    std::fs::rename(dir.path().join("promo.toml.new"), &toml).unwrap();
    std::fs::remove_file(dir.path().join("promo.wasm~")).unwrap();
    let s = wait_status(&host, "promo", "L", |s| serves(s, &l)).await;
    assert_eq!(served_by(&host, &session).await, Some("L"));
    // The moment without promo.wasm was never taken for a removal.
    let outcomes: Vec<Value> = history(&s).iter().map(|e| e["outcome"].clone()).collect();
    assert_eq!(outcomes, vec!["loaded", "loaded", "loaded"], "{s:#}");

    // The same with the settings file: the moment without promo.toml is no failure.
    let b_settings_on_l = settings_b();
    std::fs::rename(&toml, dir.path().join("promo.toml~")).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    std::fs::write(&toml, &b_settings_on_l).unwrap();
    std::fs::remove_file(dir.path().join("promo.toml~")).unwrap();
    let digest = policy_engine::PolicySettings::from_toml(&b_settings_on_l)
        .unwrap()
        .digest();
    let s = wait_status(&host, "promo", "the new settings", |s| {
        s["settings_digest"] == digest.as_str()
    })
    .await;
    assert!(s["last_error"].is_null(), "{s:#}");
    let outcomes: Vec<Value> = history(&s).iter().map(|e| e["outcome"].clone()).collect();
    assert_eq!(outcomes, vec!["loaded"; 4], "{s:#}");
}

#[tokio::test]
async fn partial_write_never_replaces_the_good_version() {
    let (_stripe, host, dir, session) = promo_host("").await;
    let l = version("L");
    std::fs::write(dir.path().join("promo.toml.next"), &l.toml).unwrap();
    let half = &l.wasm[..l.wasm.len() / 2];
    // A slow copy in place: truncate, write half, stall past the debounce and settle times.
    let mut file = std::fs::File::create(dir.path().join("promo.wasm")).unwrap();
    std::io::Write::write_all(&mut file, half).unwrap();
    file.sync_all().unwrap();
    let s = wait_status(&host, "promo", "the half-written failure", |s| {
        failed_with(s, half)
    })
    .await;
    assert!(serves(&s, &version("A")), "{s:#}");
    assert!(
        s["last_error"]
            .as_str()
            .unwrap()
            .contains("does not compile"),
        "{s:#}"
    );
    assert_eq!(served_by(&host, &session).await, Some("A"));

    // The copy completes, then the settings follow.
    std::io::Write::write_all(&mut file, &l.wasm[half.len()..]).unwrap();
    drop(file);
    std::fs::rename(
        dir.path().join("promo.toml.next"),
        dir.path().join("promo.toml"),
    )
    .unwrap();
    let s = wait_status(&host, "promo", "L", |s| serves(s, &l)).await;
    assert!(s["last_error"].is_null(), "{s:#}");
    assert_eq!(served_by(&host, &session).await, Some("L"));
}

#[tokio::test]
async fn settings_only_change_reloads_that_policy_alone() {
    let stripe = Stripe::start().await;
    let dir = common::policy_dir(&["cart-threshold", "loyalty-tier"]);
    let host = Host::start(&stripe.url(), dir.path(), "");
    let session = stripe.session("usd", &[(6_000, 2)], None).await;
    let before_cart = status_of(&host, "cart-threshold").await;
    let before_loyalty = status_of(&host, "loyalty-tier").await;

    let toml = dir.path().join("cart-threshold.toml");
    let text = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("percent = \"10\"", "percent = \"15\"");
    assert!(text.contains("percent = \"15\""));
    write_atomic(&toml, text.as_bytes());
    let s = wait_status(&host, "cart-threshold", "new settings", |s| {
        s["settings_digest"] != before_cart["settings_digest"]
    })
    .await;
    // Same component, new settings: one more load of cart-threshold, none of loyalty-tier.
    assert_eq!(s["version"], before_cart["version"]);
    assert_eq!(history(&s).len(), history(&before_cart).len() + 1);
    let loyalty = status_of(&host, "loyalty-tier").await;
    assert_eq!(history(&loyalty).len(), history(&before_loyalty).len());
    assert_eq!(loyalty["loaded_at"], before_loyalty["loaded_at"]);

    let a = host
        .post(
            "/apply-cart-discount",
            json!({"checkout_session_id": session}),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    // 15 % of 120.00.
    assert_eq!(a.body["value"]["session"]["amount_discount"], 1_800);
}

/// The trigger of the newest history event.
fn last_trigger(s: &Value) -> Value {
    history(s)
        .last()
        .map(|e| e["trigger"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn polling_picks_up_changes_with_watching_off() {
    let (_stripe, host, dir, session) =
        promo_host("[reload]\nwatch = false\npoll_interval_ms = 200\n").await;
    let l = version("L");
    deploy(dir.path(), "promo", &l);
    let s = wait_status(&host, "promo", "L", |s| serves(s, &l)).await;
    assert_eq!(last_trigger(&s), "poll", "{s:#}");
    assert_eq!(served_by(&host, &session).await, Some("L"));
}

/// Neither watching nor (in practice) polling: only SIGHUP and the admin API reload.
const MANUAL: &str = "[reload]\nwatch = false\npoll_interval_ms = 3600000\n";

#[tokio::test]
async fn sighup_reloads() {
    let (_stripe, host, dir, session) = promo_host(MANUAL).await;
    let b = version("B");
    deploy(dir.path(), "promo", &b);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &host.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let s = wait_status(&host, "promo", "B", |s| serves(s, &b)).await;
    assert_eq!(last_trigger(&s), "signal", "{s:#}");
    assert_eq!(served_by(&host, &session).await, Some("B"));
}

#[tokio::test]
async fn admin_reload_answers_what_it_did() {
    let (_stripe, host, dir, session) = promo_host(MANUAL).await;
    let b = version("B");
    deploy(dir.path(), "promo", &b);
    let report = host.reload().await;
    assert_eq!(report["loaded"], json!(["promo"]), "{report:#}");
    assert_eq!(report["serving"], json!(["promo"]), "{report:#}");
    let s = status_of(&host, "promo").await;
    assert!(serves(&s, &b), "{s:#}");
    assert_eq!(last_trigger(&s), "admin");
    assert_eq!(served_by(&host, &session).await, Some("B"));

    // A bad version: reported, B keeps serving, and it is not retried until it changes.
    let garbage = b"\0asm\x0d\x00\x01\x00 and then nothing sensible".to_vec();
    write_atomic(&dir.path().join("promo.wasm"), &garbage);
    let report = host.reload().await;
    assert_eq!(report["loaded"], json!([]), "{report:#}");
    assert_eq!(report["failed"][0]["policy"], "promo", "{report:#}");
    assert_eq!(report["failed"][0]["version"], content_hash(&garbage));
    assert!(report["failed"][0]["error"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
    assert_eq!(served_by(&host, &session).await, Some("B"));
    let report = host.reload().await;
    assert_eq!(report["failed"], json!([]), "{report:#}");
    assert_eq!(report["still_failing"], json!(["promo"]), "{report:#}");
    let s = status_of(&host, "promo").await;
    assert!(failed_with(&s, &garbage), "{s:#}");

    // Putting the serving version back clears the error.
    write_atomic(&dir.path().join("promo.wasm"), &b.wasm);
    let report = host.reload().await;
    assert_eq!(report["loaded"], json!([]), "{report:#}");
    assert!(status_of(&host, "promo").await["last_error"].is_null());
}

#[tokio::test]
async fn removed_policy_answers_404_and_comes_back_when_re_added() {
    let (_stripe, host, dir, session) = promo_host("").await;
    std::fs::remove_file(dir.path().join("promo.wasm")).unwrap();
    std::fs::remove_file(dir.path().join("promo.toml")).unwrap();
    let s = wait_status(&host, "promo", "removed", |s| s["version"].is_null()).await;
    assert_eq!(history(&s).last().unwrap()["outcome"], "removed");
    assert_eq!(s["routes"], json!([]));
    let a = host
        .post(ROUTE, json!({"checkout_session_id": session}))
        .await;
    assert_eq!(a.status, 404, "{:?}", a.body);
    assert_eq!(
        a.body,
        json!({"type": "error", "message": "This discount is not available."})
    );

    let b = version("B");
    deploy(dir.path(), "promo", &b);
    wait_status(&host, "promo", "B", |s| serves(s, &b)).await;
    assert_eq!(served_by(&host, &session).await, Some("B"));
}

#[tokio::test]
async fn configmap_data_swap_reloads_both_files_together() {
    let stripe = Stripe::start().await;
    let dir = TempDir::new();
    let mut cm = ConfigMap::new(dir.path());
    let (a, l) = (version("A"), version("L"));
    cm.publish(&[
        ("promo.wasm", a.wasm.as_slice()),
        ("promo.toml", a.toml.as_bytes()),
    ]);
    let host = Host::start(&stripe.url(), dir.path(), "");
    let session = gold_session(&stripe).await;
    assert_eq!(served_by(&host, &session).await, Some("A"));
    cm.publish(&[
        ("promo.wasm", l.wasm.as_slice()),
        ("promo.toml", l.toml.as_bytes()),
    ]);
    let s = wait_status(&host, "promo", "L", |s| serves(s, &l)).await;
    assert_eq!(served_by(&host, &session).await, Some("L"));
    // One load for the swap: never a mix of the old component and the new settings.
    assert_eq!(history(&s).len(), 2, "{s:#}");
}

#[tokio::test]
async fn a_restart_trims_a_cache_over_its_cap_but_keeps_what_it_loads() {
    let stripe = Stripe::start().await;
    let (dir, cache) = (TempDir::new(), TempDir::new());
    let fresh = Version {
        label: "A",
        wasm: unique(component("cart-threshold"), "trim"),
        toml: settings_a(),
    };
    deploy(dir.path(), "promo", &fresh);
    let env = [("DISCOUNT_HOST_CACHE_DIR", cache.path().to_str().unwrap())];
    drop(Host::start_env(&stripe.url(), dir.path(), "", &env));
    let artifacts = cwasm_files(cache.path());
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");

    // What an older host left: an artifact unused for a day, and a write it never finished.
    let day_ago = std::time::SystemTime::now() - Duration::from_secs(86_400);
    for name in ["old-0000000000000000.cwasm", "new.cwasm.tmp4242"] {
        let file = std::fs::File::create(cache.path().join(name)).unwrap();
        file.set_len(1 << 20).unwrap();
        file.set_modified(day_ago).unwrap();
    }
    // The cap now holds the loaded artifact alone, and the restart compiles nothing.
    let cap = std::fs::metadata(&artifacts[0]).unwrap().len() + 1024;
    let second = Host::start_env(
        &stripe.url(),
        dir.path(),
        &format!("cache_max_bytes = {cap}\n"),
        &env,
    );
    let s = status_of(&second, "promo").await;
    assert_eq!(history(&s)[0]["from_cache"], true, "{s:#}");
    let logs = second.wait_for_log("pruned the compilation cache").await;
    assert!(logs.contains("pruned the compilation cache"), "{logs}");
    assert_eq!(cwasm_files(cache.path()), artifacts);
    assert!(!cache.path().join("new.cwasm.tmp4242").exists());
    let session = gold_session(&stripe).await;
    assert_eq!(served_by(&second, &session).await, Some("A"));
}

/// Two hosts on one cache directory: a prune by one never removes an artifact the other
/// has loaded (it holds it locked), so the other's restart loads from the cache. Once
/// the other host is gone, the next prune removes it like any other.
#[tokio::test]
async fn a_host_never_prunes_an_artifact_another_host_has_loaded() {
    let stripe = Stripe::start().await;
    let (dir_a, dir_b, cache) = (TempDir::new(), TempDir::new(), TempDir::new());
    let a = Version {
        label: "A",
        wasm: unique(component("cart-threshold"), "shared-a"),
        toml: settings_a(),
    };
    let b = Version {
        label: "B",
        wasm: unique(component("cart-threshold"), "shared-b"),
        toml: settings_b(),
    };
    deploy(dir_a.path(), "promo", &a);
    deploy(dir_b.path(), "promo", &b);
    let env = [("DISCOUNT_HOST_CACHE_DIR", cache.path().to_str().unwrap())];
    let first = Host::start_env(&stripe.url(), dir_a.path(), "", &env);
    assert!(!promo_from_cache(&first).await);
    let artifact_a = cwasm_files(cache.path());
    assert_eq!(artifact_a.len(), 1, "{artifact_a:?}");

    // A second host whose cap holds one artifact: after compiling B it is over the cap,
    // and A's artifact, the least recently used, is the one to go; but the first host
    // holds it.
    let cap = std::fs::metadata(&artifact_a[0]).unwrap().len() + 1024;
    let capped = format!("cache_max_bytes = {cap}\n");
    let second = Host::start_env(&stripe.url(), dir_b.path(), &capped, &env);
    assert!(!promo_from_cache(&second).await);
    let logs = second.wait_for_log("pruned the compilation cache").await;
    assert!(logs.contains("held_elsewhere=1"), "{logs}");
    assert_eq!(cwasm_files(cache.path()).len(), 2);
    let session = gold_session(&stripe).await;
    assert_eq!(served_by(&second, &session).await, Some("B"));

    // The first host restarts from the cache.
    drop(first);
    let first = Host::start_env(&stripe.url(), dir_a.path(), "", &env);
    assert!(promo_from_cache(&first).await);
    let session = gold_session(&stripe).await;
    assert_eq!(served_by(&first, &session).await, Some("A"));
    drop(first);

    // With no one holding A's artifact, a prune (a restart of the second host) removes it.
    drop(second);
    let second = Host::start_env(&stripe.url(), dir_b.path(), &capped, &env);
    assert!(promo_from_cache(&second).await);
    let logs = second.wait_for_log("pruned the compilation cache").await;
    assert!(logs.contains("files=1"), "{logs}");
    assert!(!artifact_a[0].exists(), "{:?}", cwasm_files(cache.path()));
}

/// Whether `promo`'s serving version on `host` was loaded from the compilation cache.
async fn promo_from_cache(host: &Host) -> bool {
    history(&status_of(host, "promo").await)[0]["from_cache"] == true
}

/// The compiled artifacts directly in a cache directory, sorted.
fn cwasm_files(cache: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn restart_loads_from_the_compilation_cache() {
    let stripe = Stripe::start().await;
    let dir = TempDir::new();
    // A version no earlier run has compiled.
    let fresh = Version {
        label: "A",
        wasm: unique(component("cart-threshold"), "cache"),
        toml: settings_a(),
    };
    deploy(dir.path(), "promo", &fresh);
    let first = Host::start(&stripe.url(), dir.path(), "");
    let s = status_of(&first, "promo").await;
    assert!(serves(&s, &fresh), "{s:#}");
    assert_eq!(history(&s)[0]["from_cache"], false, "{s:#}");
    drop(first);

    let second = Host::start(&stripe.url(), dir.path(), "");
    let s = status_of(&second, "promo").await;
    assert!(serves(&s, &fresh), "{s:#}");
    assert_eq!(history(&s)[0]["from_cache"], true, "{s:#}");
    let session = gold_session(&stripe).await;
    assert_eq!(served_by(&second, &session).await, Some("A"));
}

/// A version claiming a route another policy serves does not serve, and takes nothing
/// from its own last good version: it is reported as failed, and serves once its routes
/// are free. A route can so move from one policy to another in either order.
#[tokio::test]
async fn a_version_claiming_a_served_route_waits_for_it() {
    let dir = common::policy_dir(&["cart-threshold", "promo-code"]);
    let stripe = Stripe::start().await;
    let host = Host::start(&stripe.url(), dir.path(), "");
    let cart_toml = std::fs::read_to_string(dir.path().join("cart-threshold.toml")).unwrap();
    let promo_toml = std::fs::read_to_string(dir.path().join("promo-code.toml")).unwrap();
    wait_status(&host, "cart-threshold", "loaded", |s| {
        !s["version"].is_null()
    })
    .await;
    wait_status(&host, "promo-code", "loaded", |s| !s["version"].is_null()).await;
    let promo_route = r#"routes = ["/apply-promo-code"]"#;
    let cart_route = r#"routes = ["/apply-cart-discount"]"#;
    assert!(cart_toml.contains(cart_route) && promo_toml.contains(promo_route));

    // The cart policy's new settings claim the promo code's route.
    let claiming = cart_toml.replace(cart_route, promo_route);
    write_atomic(&dir.path().join("cart-threshold.toml"), claiming.as_bytes());
    let cart = wait_status(&host, "cart-threshold", "reported the conflict", |s| {
        !s["last_error"].is_null()
    })
    .await;
    assert_eq!(
        cart["last_error"],
        "route /apply-promo-code is already served by policy promo-code; this version serves \
         once no other policy serves its routes",
        "{cart:#}"
    );
    assert_eq!(cart["routes"], json!(["/apply-cart-discount"]), "{cart:#}");
    assert_eq!(
        cart["history"].as_array().unwrap().last().unwrap()["outcome"],
        "failed"
    );
    // Both routes serve as before.
    let id = stripe.session("usd", &[(15_000, 1)], None).await;
    let served = host
        .post("/apply-cart-discount", json!({"checkout_session_id": id}))
        .await;
    assert_eq!(served.status, 200, "{:?}", served.body);
    assert_eq!(
        served.body["value"]["decision"]["coupon_data"]["name"],
        "Cart discount"
    );
    let body = json!({"checkout_session_id": id, "promo_code": "SPRING15"});
    let promo = host.post("/apply-promo-code", body.clone()).await;
    assert_eq!(promo.status, 200, "{:?}", promo.body);
    assert_eq!(
        promo.body["value"]["decision"]["coupon_data"]["name"],
        "Promo code SPRING15"
    );
    // A pass that finds nothing new does not load the waiting version again.
    assert_eq!(
        host.reload().await["still_failing"],
        json!(["cart-threshold"])
    );

    // The promo code policy moves to the cart's old route: both routes change hands.
    let moved = promo_toml.replace(promo_route, cart_route);
    write_atomic(&dir.path().join("promo-code.toml"), moved.as_bytes());
    let cart = wait_status(&host, "cart-threshold", "served the waiting version", |s| {
        s["routes"] == json!(["/apply-promo-code"])
    })
    .await;
    assert!(cart["last_error"].is_null(), "{cart:#}");
    let promo = wait_status(&host, "promo-code", "took the freed route", |s| {
        s["routes"] == json!(["/apply-cart-discount"])
    })
    .await;
    assert!(promo["last_error"].is_null(), "{promo:#}");
    let id = stripe.session("usd", &[(15_000, 1)], None).await;
    let served = host
        .post("/apply-promo-code", json!({"checkout_session_id": id}))
        .await;
    assert_eq!(served.status, 200, "{:?}", served.body);
    assert_eq!(
        served.body["value"]["decision"]["coupon_data"]["name"],
        "Cart discount"
    );
    let body = json!({"checkout_session_id": id, "promo_code": "TENOFF"});
    let promo = host.post("/apply-cart-discount", body).await;
    assert_eq!(promo.status, 200, "{:?}", promo.body);
    assert_eq!(
        promo.body["value"]["decision"]["coupon_data"]["name"],
        "Promo code TENOFF"
    );

    // The cart policy claims its old route back, then the promo code policy is deleted:
    // the waiting version takes the freed route.
    write_atomic(
        &dir.path().join("cart-threshold.toml"),
        cart_toml.as_bytes(),
    );
    wait_status(&host, "cart-threshold", "waited again", |s| {
        s["last_error"].as_str().is_some_and(|e| {
            e.contains("/apply-cart-discount is already served by policy promo-code")
        })
    })
    .await;
    for file in ["promo-code.wasm", "promo-code.toml"] {
        std::fs::remove_file(dir.path().join(file)).unwrap();
    }
    let cart = wait_status(&host, "cart-threshold", "took its route back", |s| {
        s["routes"] == json!(["/apply-cart-discount"])
    })
    .await;
    assert!(cart["last_error"].is_null(), "{cart:#}");
    let id = stripe.session("usd", &[(15_000, 1)], None).await;
    let served = host
        .post("/apply-cart-discount", json!({"checkout_session_id": id}))
        .await;
    assert_eq!(
        served.body["value"]["decision"]["coupon_data"]["name"],
        "Cart discount"
    );
    let gone = host
        .post("/apply-promo-code", json!({"checkout_session_id": id}))
        .await;
    assert_eq!(gone.status, 404, "{:?}", gone.body);
}

/// An entry that cannot be read fails on its own: a FIFO (which would block a read
/// forever), a symlink loop, a directory, settings that are not UTF-8. The policies
/// around them keep reloading, and a serving policy keeps its last good version.
#[tokio::test]
async fn unreadable_files_fail_alone_and_never_block_a_reload() {
    let dir = common::policy_dir(&["cart-threshold", "promo-code", "loyalty-tier"]);
    let stripe = Stripe::start().await;
    let host = Host::start(&stripe.url(), dir.path(), "");
    for name in ["cart-threshold", "promo-code", "loyalty-tier"] {
        wait_status(&host, name, "loaded", |s| !s["version"].is_null()).await;
    }
    let path = |file: &str| dir.path().join(file);
    std::fs::remove_file(path("promo-code.wasm")).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(path("promo-code.wasm"))
        .status()
        .unwrap();
    assert!(fifo.success());
    std::os::unix::fs::symlink("loop.wasm", path("loop.wasm")).unwrap();
    std::fs::create_dir(path("folder.wasm")).unwrap();
    write_atomic(
        &path("loyalty-tier.toml"),
        b"routes = [\"/x\"]\n# \xff\xfe\n",
    );
    // The reload someone asks for answers at once, with each entry's own error.
    let report = tokio::time::timeout(Duration::from_secs(10), host.reload())
        .await
        .expect("a FIFO must not block a reload");
    let failed = report["failed"].as_array().unwrap();
    let error_of = |name: &str| {
        failed
            .iter()
            .find(|f| f["policy"] == name)
            .and_then(|f| f["error"].as_str())
            .unwrap_or_else(|| panic!("no failure for {name}: {report:#}"))
            .to_string()
    };
    assert!(error_of("promo-code").ends_with("promo-code.wasm is not a regular file"));
    assert!(error_of("loop").contains("loop.wasm: Too many levels of symbolic links"));
    assert!(error_of("folder").ends_with("folder.wasm is a directory"));
    assert!(error_of("loyalty-tier").ends_with("loyalty-tier.toml is not UTF-8 text"));
    // The other policy still reloads, and the broken ones keep their last good version.
    let cart = std::fs::read_to_string(path("cart-threshold.toml")).unwrap();
    let renamed = cart.replace("name = \"Cart discount\"", "name = \"Cart discount v2\"");
    assert_ne!(cart, renamed);
    write_atomic(&path("cart-threshold.toml"), renamed.as_bytes());
    let digest = policy_engine::PolicySettings::from_toml(&renamed)
        .unwrap()
        .digest();
    wait_status(&host, "cart-threshold", "reloaded", |s| {
        s["settings_digest"] == digest.as_str()
    })
    .await;
    let id = stripe.session("usd", &[(15_000, 1)], None).await;
    let body = json!({"checkout_session_id": id, "promo_code": "SPRING15"});
    let promo = host.post("/apply-promo-code", body).await;
    assert_eq!(promo.status, 200, "{:?}", promo.body);
    let promo = status_of(&host, "promo-code").await;
    assert!(
        promo["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("not a regular file"),
        "{promo:#}"
    );
}

/// A reload pass reports the waiting versions its changes let serve.
#[tokio::test]
async fn a_reload_reports_the_waiting_versions_it_lets_serve() {
    let dir = common::policy_dir(&["cart-threshold", "promo-code"]);
    let stripe = Stripe::start().await;
    let host = Host::start(&stripe.url(), dir.path(), MANUAL);
    wait_status(&host, "promo-code", "loaded", |s| !s["version"].is_null()).await;
    let path = |file: &str| dir.path().join(file);
    let cart = std::fs::read_to_string(path("cart-threshold.toml")).unwrap();
    let claiming = cart.replace(
        r#"routes = ["/apply-cart-discount"]"#,
        r#"routes = ["/apply-promo-code"]"#,
    );
    write_atomic(&path("cart-threshold.toml"), claiming.as_bytes());
    let report = host.reload().await;
    assert_eq!(
        report["failed"][0]["policy"], "cart-threshold",
        "{report:#}"
    );
    assert_eq!(report["loaded"], json!([]), "{report:#}");
    for file in ["promo-code.wasm", "promo-code.toml"] {
        std::fs::remove_file(path(file)).unwrap();
    }
    let report = host.reload().await;
    assert_eq!(report["removed"], json!(["promo-code"]), "{report:#}");
    assert_eq!(report["loaded"], json!(["cart-threshold"]), "{report:#}");
    assert_eq!(report["serving"], json!(["cart-threshold"]), "{report:#}");
}
