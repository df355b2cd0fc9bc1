//! Several replicas, one policy volume: three host processes share one policy
//! directory laid out like a Kubernetes ConfigMap volume (files are symlinks
//! through `..data`, and an update swaps the `..data` symlink atomically) and one
//! Stripe. A promotion published once reaches every replica.

mod common;

use common::{tempdir::TempDir, Host, Stripe};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const ROUTE: &str = "/apply-cart-discount";

/// Publishes a ConfigMap version the way the kubelet does: a new timestamped
/// directory, a `..data_tmp` symlink to it renamed over `..data`, and per-key
/// symlinks `name -> ..data/name`.
fn publish(volume: &Path, version: u32, files: &[(&str, Vec<u8>)]) {
    let dir_name = format!("..2026_11_26_00_00_{version:02}.000000001");
    let dir = volume.join(&dir_name);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let tmp = volume.join("..data_tmp");
    std::os::unix::fs::symlink(&dir_name, &tmp).unwrap();
    std::fs::rename(&tmp, volume.join("..data")).unwrap();
    for (name, _) in files {
        let link = volume.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
}

fn settings(threshold: &str) -> Vec<u8> {
    format!(
        "routes = [\"{ROUTE}\"]\n\n[config]\nthreshold = \"{threshold}\"\npercent = \"10\"\ncap = \"2000\"\n"
    )
    .into_bytes()
}

/// The serving settings digest of cart-threshold on one replica.
async fn serving(host: &Host) -> Option<String> {
    let status: Value = host.get_json("/admin/policies").await;
    status
        .as_array()?
        .iter()
        .find(|p| p["name"] == "cart-threshold")?["settings_digest"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test]
async fn every_replica_picks_up_a_promotion() {
    let stripe = Stripe::start().await;
    let volume = TempDir::new();
    let wasm = std::fs::read(common::built_policies().join("cart-threshold.wasm")).unwrap();
    publish(
        volume.path(),
        1,
        &[
            ("cart-threshold.wasm", wasm.clone()),
            ("cart-threshold.toml", settings("10000")),
        ],
    );
    let replicas: Vec<Host> = (0..3)
        .map(|_| Host::start(&stripe.url(), volume.path(), ""))
        .collect();

    // Version 1: a 120.00 cart is over the 100.00 threshold everywhere.
    let mut first = Vec::new();
    for host in &replicas {
        let id = stripe.session("usd", &[(12_000, 1)], None).await;
        let a = host.post(ROUTE, json!({"checkout_session_id": id})).await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        assert_eq!(a.body["value"]["decision"]["type"], "apply");
        first.push(serving(host).await.expect("cart-threshold serves"));
    }
    assert!(first.windows(2).all(|w| w[0] == w[1]), "{first:?}");

    // Version 2 raises the threshold to 500.00: published once, for all replicas.
    publish(
        volume.path(),
        2,
        &[
            ("cart-threshold.wasm", wasm),
            ("cart-threshold.toml", settings("50000")),
        ],
    );
    for (i, host) in replicas.iter().enumerate() {
        let mut now = None;
        for _ in 0..300 {
            now = serving(host).await;
            if now.as_ref().is_some_and(|v| v != &first[0]) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            now.as_ref().is_some_and(|v| v != &first[0]),
            "replica {i} still serves {first:?}"
        );
        let id = stripe.session("usd", &[(12_000, 1)], None).await;
        let a = host.post(ROUTE, json!({"checkout_session_id": id})).await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        assert_eq!(
            a.body["value"]["decision"]["type"], "clear",
            "replica {i} decides with the new threshold"
        );
        let status: Value = host.get_json("/admin/policies").await;
        let history = status[0]["history"].as_array().unwrap();
        assert!(
            history.iter().filter(|e| e["outcome"] == "loaded").count() >= 2,
            "replica {i}: {history:?}"
        );
    }
    // Every replica now serves the same version.
    let mut last = Vec::new();
    for host in &replicas {
        last.push(serving(host).await.unwrap());
    }
    assert!(last.windows(2).all(|w| w[0] == w[1]), "{last:?}");
}
