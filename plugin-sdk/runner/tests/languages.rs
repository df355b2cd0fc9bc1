//! Policies in JavaScript, Python and C (built by `scripts/build-lang-policies.sh`) through
//! the runner: their own cases, their interface, and parity with their Rust counterparts.

mod common;

use common::*;
use serde_json::Value;

/// Each non-Rust reference policy and its Rust counterpart.
const PAIRS: &[(&str, &str)] = &[
    ("c-cart-threshold", "cart-threshold"),
    ("js-time-limited", "time-limited"),
    ("py-location", "location-based"),
];

/// The persistent compile cache, so JS and Python components compile once per version.
fn cache_dir() -> String {
    s(&workspace().join("target/policy-cache"))
}

/// Runs a cases folder against a component; the per-case JSON results.
fn results(cases_dir: &str, component: &str) -> Vec<Value> {
    let out = runner(&[
        "test",
        cases_dir,
        "--component",
        component,
        "--json",
        "--cache-dir",
        &cache_dir(),
    ]);
    let (stdout, stderr) = text(&out);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{cases_dir} on {component}: {e}\n{stdout}\n{stderr}"))
}

#[test]
fn each_language_policys_cases_pass() {
    for (name, _) in PAIRS {
        let out = runner(&[
            "test",
            &s(&cases(name)),
            "--component",
            &s(&component(name)),
            "--cache-dir",
            &cache_dir(),
        ]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{name}:\n{stdout}\n{stderr}");
        let passes = stdout
            .lines()
            .filter(|l| l.trim_start().starts_with("PASS"))
            .count();
        assert!(passes >= 5, "{name}: only {passes} cases\n{stdout}");
    }
}

#[test]
fn language_policies_import_only_the_host_interface() {
    for (name, _) in PAIRS {
        let out = runner(&["inspect", &s(&component(name))]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{name}:\n{stdout}\n{stderr}");
        assert!(
            stdout.contains("stripe-discount:policy/host@0.1.0 (instance)"),
            "{stdout}"
        );
        assert!(!stdout.contains("wasi:"), "{name} imports WASI:\n{stdout}");
    }
}

#[test]
fn inspect_refuses_a_component_with_wasi_imports() {
    // A core module is not a component: inspect fails rather than approving it.
    let dir = TempDir::new("inspect");
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let out = runner(&["inspect", &dir.join("core.wasm")]);
    assert!(!out.status.success());
}

/// What parity compares: whether there is a decision, the decision, and the guard's verdict.
fn verdict(result: &Value) -> Value {
    let o = &result["outcome"];
    serde_json::json!({
        "ok": o["ok"],
        "decision": o["decision"],
        "error": o["error"]["kind"],
        "guard": o["guard"]["verdict"],
        "totals": o["totals"],
    })
}

#[test]
fn same_cases_same_decisions_in_rust_and_other_languages() {
    for (other, rust) in PAIRS {
        let mut compared = 0;
        // Both policies' cases, each run through both components.
        for folder in [cases(rust), cases(other)] {
            let folder = s(&folder);
            let ours = results(&folder, &s(&component(other)));
            let theirs = results(&folder, &s(&component(rust)));
            assert_eq!(ours.len(), theirs.len(), "{folder}");
            for (a, b) in ours.iter().zip(&theirs) {
                assert_eq!(a["name"], b["name"]);
                assert_eq!(
                    verdict(a),
                    verdict(b),
                    "{other} and {rust} differ on {folder}/{}",
                    a["name"]
                );
                assert!(
                    a["outcome"]["decision"].is_object(),
                    "{}: no decision",
                    a["name"]
                );
                compared += 1;
            }
        }
        assert!(compared >= 10, "{other}: only {compared} cases compared");
    }
}

/// Runs a scaffolded project's `build.sh` with the toolchains `scripts/build-lang-policies.sh`
/// cached, the way an author would after `policy-runner new`.
fn build_scaffold(dir: &std::path::Path) {
    let cache = workspace().join(".cache");
    let out = std::process::Command::new(dir.join("build.sh"))
        .env("POLICY_RUNNER", env!("CARGO_BIN_EXE_policy-runner"))
        .env(
            "COMPONENTIZE_JS",
            cache.join("node/node_modules/.bin/componentize-js"),
        )
        .env(
            "COMPONENTIZE_PY",
            cache.join("venv-componentize/bin/componentize-py"),
        )
        .output()
        .expect("build.sh runs");
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "{}:\n{stdout}\n{stderr}",
        dir.display()
    );
}

#[test]
fn new_scaffolds_js_python_and_c_policies_that_build_and_pass() {
    let root = TempDir::new("new-langs");
    for lang in ["c", "js", "python"] {
        let name = format!("welcome-{lang}");
        let dir = root.path().join(&name);
        let out = runner(&["new", &name, "--lang", lang, "--dir", &s(&dir)]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{lang}:\n{stdout}\n{stderr}");
        assert!(stdout.contains("./build.sh"), "{stdout}");
        build_scaffold(&dir);
        let component = s(&dir.join(format!("build/{name}.wasm")));
        let out = runner(&["inspect", &component]);
        assert!(out.status.success(), "{lang}: {:?}", text(&out));
        let out = runner(&[
            "test",
            &s(&dir.join("cases")),
            "--component",
            &component,
            // componentize-js and componentize-py builds are not byte-identical from one
            // build to the next: caching these one-off versions would only fill the cache.
            "--cache-dir",
            "none",
        ]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{lang}:\n{stdout}\n{stderr}");
        assert!(stdout.contains("2 passed, 0 failed"), "{lang}:\n{stdout}");
    }
}
