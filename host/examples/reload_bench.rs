//! Hot reload benchmark against the real `discount-host` binary and the Stripe emulator.
//!
//! 1. Reload latency: from the rename of a new `promo.wasm` (a Rust policy, new content
//!    hash, so compiled) into the watched directory to the new version serving;
//!    also for a settings-only change and for a component already in the cache.
//!    Then the same new-component reload while a new build of `js-time-limited` (when
//!    built) compiles, written 0.5 s before: it must not wait for that compile. The
//!    host's resident memory is read once each JS build serves, and its peak at the end.
//! 2. Restart time (spawn to the ready line) with a cold and a warm compilation cache,
//!    for every policy in `target/policies` (Rust, JS and Python when built).
//!
//! Run: `cargo build --release -p discount-host && cargo run --release -p discount-host
//! --example reload_bench [-- RELOADS RESTARTS DURING]` (defaults 30, 2 and 3).
//! `DISCOUNT_HOST_BIN` runs another build; `BENCH_COMPILE_PROCESS` sets the hosts'
//! `[reload] compile_process` (`large`, `all` or `none`).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The admin API's bearer token for the spawned hosts.
const ADMIN_TOKEN: &str = "reload-bench-token";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("reload-bench-{tag}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The same component with a unique custom section first: a new content hash.
fn unique(wasm: &[u8], n: usize) -> Vec<u8> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let payload = format!("{}-{n}-{nanos}", std::process::id());
    let mut section = vec![5u8];
    section.extend_from_slice(b"bench");
    section.extend_from_slice(payload.as_bytes());
    let mut out = wasm[..8].to_vec();
    out.push(0);
    out.push(section.len() as u8); // < 128
    out.extend_from_slice(&section);
    out.extend_from_slice(&wasm[8..]);
    out
}

fn write_atomic(path: &Path, bytes: &[u8]) -> (PathBuf, PathBuf) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, bytes).unwrap();
    (tmp, path.to_path_buf())
}

struct HostProcess {
    child: Child,
    url: String,
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Spawns the host; returns it and the time from spawn to its ready line.
fn spawn_host(
    stripe: &str,
    policies: &Path,
    cache: &Path,
    config: &str,
) -> (HostProcess, Duration) {
    let bin = std::env::var_os("DISCOUNT_HOST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/release/discount-host"));
    assert!(
        bin.exists(),
        "{} missing: cargo build --release -p discount-host",
        bin.display()
    );
    let config_path = policies.with_extension("host.toml");
    std::fs::write(&config_path, config).unwrap();
    let started = Instant::now();
    let mut child = Command::new(bin)
        .env("STRIPE_SECRET_KEY", "sk_test_bench")
        .env("DISCOUNT_HOST_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("STRIPE_API_BASE", stripe)
        .env("DISCOUNT_HOST_LISTEN", "127.0.0.1:0")
        .env("DISCOUNT_HOST_POLICY_DIR", policies)
        .env("DISCOUNT_HOST_CACHE_DIR", cache)
        .env("DISCOUNT_HOST_CONFIG", &config_path)
        .env("RUST_LOG", "info,wasmtime=warn,cranelift=warn")
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("BENCH_HOST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().expect("host exited before ready").unwrap();
        if let Some(rest) = line.strip_prefix("discount-host ready: listen=") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let elapsed = started.elapsed();
    std::thread::spawn(move || for _ in lines {});
    (HostProcess { child, url }, elapsed)
}

/// A `/proc/<pid>/status` memory field (`VmRSS`, `VmHWM`), in MiB.
fn memory_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{name:<44} n={:<3} p50={:>7.1} ms  p95={:>7.1} ms  max={:>7.1} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.95),
        ms[ms.len() - 1]
    );
}

async fn promo_status(http: &reqwest::Client, url: &str) -> Value {
    status_of(http, url, "promo").await
}

async fn status_of(http: &reqwest::Client, url: &str, name: &str) -> Value {
    let all: Value = http
        .get(format!("{url}/admin/policies"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    all.as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

/// Renames `tmp` over `path`, then polls until the status reports `want` serving
/// (the status is updated after the swap); returns the latency.
async fn timed_swap(
    http: &reqwest::Client,
    url: &str,
    (tmp, path): (PathBuf, PathBuf),
    want: impl Fn(&Value) -> bool,
) -> f64 {
    let started = Instant::now();
    std::fs::rename(tmp, path).unwrap();
    loop {
        if want(&promo_status(http, url).await) {
            return started.elapsed().as_secs_f64() * 1e3;
        }
        // A host that loads one policy at a time waits for a whole JavaScript compile.
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "reload never happened"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let reloads = args.first().copied().unwrap_or(30);
    let restarts = args.get(1).copied().unwrap_or(2);
    let during = args.get(2).copied().unwrap_or(3);
    let built = workspace().join("target/policies");
    let emulator = stripe_emulator::Emulator::new()
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let stripe = emulator.base_url();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
    );
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();

    // 1. Reload latency, default [reload] settings (watch, debounce 50 ms, settle 100 ms).
    let dir = temp_dir("reload");
    let cache = temp_dir("reload-cache");
    let base = std::fs::read(built.join("cart-threshold.wasm")).unwrap();
    let toml = |percent: usize| {
        format!("routes = [\"/apply-cart-discount\"]\n[config]\npercent = \"{percent}\"\n")
    };
    std::fs::write(dir.join("promo.toml"), toml(10)).unwrap();
    std::fs::write(dir.join("promo.wasm"), &base).unwrap();
    let compile_process = match std::env::var("BENCH_COMPILE_PROCESS") {
        Ok(which) => format!("compile_process = \"{which}\"\n"),
        Err(_) => String::new(),
    };
    let (host, _) = spawn_host(
        &stripe,
        &dir,
        &cache,
        &format!("[reload]\n{compile_process}"),
    );
    let mut compiled = vec![];
    let mut compile_ms = vec![];
    let mut seen = vec![];
    for n in 0..reloads {
        let wasm = unique(&base, n);
        let hash = policy_engine::engine::content_hash(&wasm);
        let swap = write_atomic(&dir.join("promo.wasm"), &wasm);
        compiled.push(timed_swap(&http, &host.url, swap, |s| s["version"] == hash.as_str()).await);
        let s = promo_status(&http, &host.url).await;
        compile_ms.push(
            s["history"].as_array().unwrap().last().unwrap()["compile_ms"]
                .as_f64()
                .unwrap(),
        );
        seen.push((wasm, hash));
    }
    let mut settings_only = vec![];
    for n in 0..reloads {
        let text = toml(11 + n % 50);
        let digest = policy_engine::PolicySettings::from_toml(&text)
            .unwrap()
            .digest();
        let swap = write_atomic(&dir.join("promo.toml"), text.as_bytes());
        settings_only.push(
            timed_swap(&http, &host.url, swap, |s| {
                s["settings_digest"] == digest.as_str()
            })
            .await,
        );
    }
    let mut cached = vec![];
    for (wasm, hash) in seen.iter().take(reloads) {
        let swap = write_atomic(&dir.join("promo.wasm"), wasm);
        cached.push(timed_swap(&http, &host.url, swap, |s| s["version"] == hash.as_str()).await);
    }
    // A new promo build while a new JavaScript build compiles (written 0.5 s before).
    let js = std::fs::read(built.join("js-time-limited.wasm")).ok();
    let js_toml = std::fs::read(built.join("js-time-limited.toml")).ok();
    let (mut promo_during, mut js_serving, mut resident) = (vec![], vec![], vec![]);
    if let (Some(js), Some(js_toml)) = (&js, &js_toml) {
        std::fs::write(dir.join("js-time-limited.toml"), js_toml).unwrap();
        for n in 0..during {
            let js_build = unique(js, n);
            let js_hash = policy_engine::engine::content_hash(&js_build);
            let (tmp, path) = write_atomic(&dir.join("js-time-limited.wasm"), &js_build);
            let js_written = Instant::now();
            std::fs::rename(tmp, path).unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let wasm = unique(&base, reloads + n);
            let hash = policy_engine::engine::content_hash(&wasm);
            let swap = write_atomic(&dir.join("promo.wasm"), &wasm);
            promo_during
                .push(timed_swap(&http, &host.url, swap, |s| s["version"] == hash.as_str()).await);
            while status_of(&http, &host.url, "js-time-limited").await["version"]
                != js_hash.as_str()
            {
                assert!(
                    js_written.elapsed() < Duration::from_secs(300),
                    "the JS build never served"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            js_serving.push(js_written.elapsed().as_secs_f64() * 1e3 - 500.0);
            tokio::time::sleep(Duration::from_secs(1)).await;
            resident.push(memory_mib(host.child.id(), "VmRSS"));
        }
    }
    let peak = memory_mib(host.child.id(), "VmHWM");
    // The route serves after all that.
    let r = http
        .post(format!("{}/apply-cart-discount", host.url))
        .json(&json!({"checkout_session_id": "cs_test_missing"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "an unknown session answers 404 from a serving route"
    );
    drop(host);
    println!(
        "reload latency, rename -> new version serving (Rust cart-threshold, {} KiB):",
        base.len() / 1024
    );
    summary("  new component (compiled)", compiled);
    summary("    of which compile", compile_ms);
    summary("  settings-only change", settings_only);
    summary("  component already in the cache", cached);
    if !promo_during.is_empty() {
        println!(
            "while a new js-time-limited build ({} KiB) compiles, written 0.5 s before the promo:",
            js.as_ref().map_or(0, |j| j.len() / 1024)
        );
        summary("  new promo component (compiled)", promo_during);
        summary("  the JS build, from the promo's write", js_serving);
        let resident: Vec<String> = resident.iter().map(|m| format!("{m:.0}")).collect();
        println!(
            "  host resident 1 s after each JS build served: {} MiB; peak {peak:.0} MiB",
            resident.join(", ")
        );
    }

    // 2. Restart with a cold and a warm compilation cache (RESTARTS = 0 skips it).
    if restarts == 0 {
        for d in [dir, cache] {
            std::fs::remove_dir_all(d).ok();
        }
        return;
    }
    let all = temp_dir("restart");
    let mut names = vec![];
    for entry in std::fs::read_dir(&built).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            std::fs::copy(&path, all.join(format!("{stem}.wasm"))).unwrap();
            std::fs::copy(
                built.join(format!("{stem}.toml")),
                all.join(format!("{stem}.toml")),
            )
            .ok();
            names.push(stem);
        }
    }
    names.sort();
    let config = &format!("[reload]\nwatch = false\npoll_interval_ms = 3600000\n{compile_process}");
    let warm_cache = temp_dir("restart-warm");
    let (mut cold, mut cold_resident) = (vec![], vec![]);
    for i in 0..restarts {
        let c = temp_dir(&format!("restart-cold-{i}"));
        let (host, elapsed) = spawn_host(&stripe, &all, &c, config);
        cold.push(elapsed.as_secs_f64() * 1e3);
        cold_resident.push(format!(
            "{:.0} (peak {:.0})",
            memory_mib(host.child.id(), "VmRSS"),
            memory_mib(host.child.id(), "VmHWM")
        ));
        drop(host);
        std::fs::remove_dir_all(c).ok();
    }
    spawn_host(&stripe, &all, &warm_cache, config); // fills the cache
    let mut warm = vec![];
    for _ in 0..restarts + 1 {
        warm.push(
            spawn_host(&stripe, &all, &warm_cache, config)
                .1
                .as_secs_f64()
                * 1e3,
        );
    }
    println!("restart, spawn -> ready, policies: {}", names.join(", "));
    summary("  cold compilation cache", cold);
    println!(
        "  host resident when ready, cold: {} MiB",
        cold_resident.join(", ")
    );
    summary("  warm compilation cache", warm);
    for d in [dir, cache, all, warm_cache] {
        std::fs::remove_dir_all(d).ok();
    }
}
