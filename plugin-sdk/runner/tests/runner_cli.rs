//! The runner CLI on the real reference policies (built by `scripts/build-policies.sh`).

mod common;

use common::*;
use serde_json::Value;

const REFERENCE: &[&str] = &[
    "cart-threshold",
    "loyalty-tier",
    "time-limited",
    "location-based",
    "customer-offers",
    "promo-code",
];

#[test]
fn every_reference_policys_cases_pass() {
    for name in REFERENCE {
        let out = runner(&[
            "test",
            &s(&cases(name)),
            "--component",
            &s(&component(name)),
        ]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{name}:\n{stdout}\n{stderr}");
        assert!(stdout.contains(" 0 failed"), "{name}:\n{stdout}");
        let passes = stdout
            .lines()
            .filter(|l| l.trim_start().starts_with("PASS"))
            .count();
        assert!(passes >= 5, "{name}: only {passes} cases\n{stdout}");
    }
}

#[test]
fn test_finds_components_by_folder_name() {
    let out = runner(&[
        "test",
        &s(&cases("promo-code")),
        &s(&cases("time-limited")),
        "--policy-dir",
        &s(&policies()),
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let results: Vec<Value> = serde_json::from_str(&stdout).expect("JSON results");
    assert!(results.len() >= 12, "{}", results.len());
    assert!(results.iter().all(|r| r["passed"] == true));
    let wrong = results.iter().find(|r| r["name"] == "wrong-code").unwrap();
    assert_eq!(wrong["outcome"]["decision"]["type"], "reject");
}

#[test]
fn a_failing_case_exits_non_zero_with_a_readable_diff() {
    let dir = TempDir::new("failing");
    let from = cases("cart-threshold");
    std::fs::create_dir_all(dir.path().join("fixtures")).unwrap();
    std::fs::copy(
        from.join("fixtures/cart-150.json"),
        dir.path().join("fixtures/cart-150.json"),
    )
    .unwrap();
    let good = std::fs::read_to_string(from.join("over-threshold.toml")).unwrap();
    std::fs::write(dir.path().join("a-good.toml"), &good).unwrap();
    let bad = good
        .replace("amount_off = 1500", "amount_off = 999")
        .replace("total = 13500", "total = 14001");
    assert_ne!(bad, good);
    std::fs::write(dir.path().join("b-bad.toml"), bad).unwrap();

    let out = runner(&[
        "test",
        &s(dir.path()),
        "--component",
        &s(&component("cart-threshold")),
    ]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("PASS  a-good"), "{stdout}");
    assert!(stdout.contains("FAIL  b-bad"), "{stdout}");
    assert!(
        stdout.contains("coupon_data.amount_off: expected 999, got 1500"),
        "{stdout}"
    );
    assert!(
        stdout.contains("totals.total: expected 14001, got 13500"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 1 failed"), "{stdout}");
}

#[test]
fn a_broken_case_file_fails_the_run() {
    let dir = TempDir::new("broken");
    std::fs::write(
        dir.path().join("typo.toml"),
        "fixture = \"nope.json\"\n[expect]\ndecison = { type = \"clear\" }\n",
    )
    .unwrap();
    let out = runner(&[
        "test",
        &s(dir.path()),
        "--component",
        &s(&component("cart-threshold")),
    ]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("decison"), "{stdout}");
}

#[test]
fn an_over_budget_policy_is_flagged() {
    let fixture = cases("cart-threshold").join("fixtures/cart-150.json");
    let wasm = component("cart-threshold");
    let out = runner(&[
        "run",
        &s(&wasm),
        "--fixture",
        &s(&fixture),
        "--fuel",
        "2000",
    ]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let fuel_line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("fuel"))
        .unwrap();
    assert!(fuel_line.contains("OVER LIMIT"), "{stdout}");
    assert!(stdout.contains("fuel_exhausted"), "{stdout}");

    let out = runner(&[
        "run",
        &s(&wasm),
        "--fixture",
        &s(&fixture),
        "--fuel",
        "2000",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["kind"], "fuel_exhausted");
    assert_eq!(v["cost"]["fuel_budget"], 2000);
    let over = v["cost"]["over_limit"].as_array().unwrap();
    assert!(over.contains(&Value::from("fuel")), "{over:?}");

    // With the default budget, nothing is flagged.
    let out = runner(&["run", &s(&wasm), "--fixture", &s(&fixture), "--json"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let over = v["cost"]["over_limit"].as_array().unwrap();
    assert!(!over.contains(&Value::from("fuel")), "{over:?}");
}

#[test]
fn json_output_parses_and_has_everything() {
    let fixture = cases("promo-code").join("fixtures/cart-150.json");
    let out = runner(&[
        "run",
        &s(&component("promo-code")),
        "--fixture",
        &s(&fixture),
        "--input",
        r#"{"checkout_session_id":"cs_ignored","promo_code":"spring15"}"#,
        "--now",
        "2026-11-27T09:00:00Z",
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let v: Value = serde_json::from_str(&stdout).expect("--json prints JSON");
    assert_eq!(v["ok"], true);
    assert_eq!(v["action"], "/apply-promo-code");
    assert_eq!(v["now"], 1_795_770_000);
    assert!(v["input"].get("checkout_session_id").is_none());
    assert_eq!(v["decision"]["type"], "apply");
    assert_eq!(v["decision"]["coupon_data"]["percent_off"], 15.0);
    assert_eq!(v["guard"]["verdict"], "passed");
    assert_eq!(v["totals"]["before"]["total"], 15000);
    assert_eq!(v["totals"]["after"]["discount"], 2250);
    assert_eq!(v["totals"]["after"]["total"], 12750);
    let update: Vec<&str> = v["stripe_update"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        update.contains(&"discounts[0][coupon_data][percent_off]=15"),
        "{update:?}"
    );
    assert_eq!(v["logs"][0]["message"], "applying promo code");
    assert!(v["cost"]["fuel_used"].as_u64().unwrap() > 0);
    assert_eq!(v["cost"]["fuel_budget"], 11_000_000);
    assert!(v["cost"]["peak_memory_bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["policy"]["version"].as_str().unwrap().len(), 64);
}

#[test]
fn a_guard_refusal_exits_non_zero() {
    let dir = TempDir::new("caps");
    let caps = dir.join("host.toml");
    std::fs::write(&caps, "[caps]\nmax_amount_off = { usd = 1000 }\n").unwrap();
    let fixture = cases("cart-threshold").join("fixtures/cart-150.json");
    let out = runner(&[
        "run",
        &s(&component("cart-threshold")),
        "--fixture",
        &s(&fixture),
        "--caps",
        &caps,
    ]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("REFUSED above_merchant_cap"), "{stdout}");
}

#[test]
fn config_and_now_overrides_reach_the_policy() {
    let fixture = cases("time-limited").join("fixtures/cart-150.json");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run".to_string(),
            s(&component("time-limited")),
            "--fixture".into(),
            s(&fixture),
            "--json".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = runner(&args);
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let v = run(&["--now", "2026-11-01T00:00:00Z"]);
    assert_eq!(v["decision"]["type"], "clear");
    let v = run(&[
        "--now",
        "1795780000",
        "--config",
        "percent=30",
        "--config",
        "name=Thirty",
    ]);
    assert_eq!(v["decision"]["coupon_data"]["percent_off"], 30.0);
    assert_eq!(v["decision"]["coupon_data"]["name"], "Thirty");
    assert_eq!(v["totals"]["after"]["total"], 10500);
}

#[test]
fn new_scaffolds_a_standalone_project() {
    let dir = TempDir::new("new");
    let project = dir.path().join("welcome-offer");
    let out = runner(&["new", "welcome-offer", "--dir", &s(&project)]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("name = \"welcome-offer\""), "{manifest}");
    assert!(manifest.contains("\n[workspace]\n"), "{manifest}");
    let sdk = std::fs::canonicalize(workspace().join("plugin-sdk/rust")).unwrap();
    assert!(
        manifest.contains(&format!("path = \"{}\"", s(&sdk))),
        "{manifest}"
    );
    let settings = std::fs::read_to_string(project.join("policy.toml")).unwrap();
    assert!(
        settings.contains("routes = [\"/apply-welcome-offer\"]"),
        "{settings}"
    );
    let lib = std::fs::read_to_string(project.join("src/lib.rs")).unwrap();
    assert!(lib.contains("export_policy!(WelcomeOffer)"), "{lib}");
    assert!(project.join("cases/fixtures/session.json").exists());
    assert!(project.join("cases/big-cart.toml").exists());
    // Never over an existing project.
    let again = runner(&["new", "welcome-offer", "--dir", &s(&project)]);
    assert!(!again.status.success());
    let bad = runner(&["new", "Bad_Name", "--dir", &dir.join("x")]);
    assert!(!bad.status.success());
}

/// Runs the runner, which must fail; returns its stderr.
fn refused(args: &[&str]) -> String {
    let out = runner(args);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}:\n{stdout}\n{stderr}");
    stderr
}

#[test]
fn inspect_loads_the_component_as_the_host_does() {
    let good = runner(&["inspect", &s(&component("loyalty-tier"))]);
    let (stdout, stderr) = text(&good);
    assert!(good.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("exports: evaluate (func)"), "{stdout}");
    assert!(stdout.contains("the host accepts it"), "{stdout}");

    // `evaluate` of another type: its name alone used to pass.
    let err = refused(&["inspect", &s(&test_component("wrong-signature"))]);
    assert!(err.contains("the host would refuse"), "{err}");
    assert!(
        err.contains(
            "`evaluate: func(session: checkout-session, request: policy-request) -> decision`"
        ),
        "{err}"
    );
    let err = refused(&["inspect", &s(&test_component("other-version"))]);
    assert!(
        err.contains("stripe-discount:policy/host@0.2.0, another version of the contract"),
        "{err}"
    );
    assert!(!err.contains("WASI"), "{err}");
    let err = refused(&["inspect", &s(&test_component("not-a-component"))]);
    assert!(
        err.contains("a core WebAssembly module, not a component"),
        "{err}"
    );
    let err = refused(&["inspect", &s(&test_component("ungranted-import"))]);
    assert!(err.contains("evil:net/socket"), "{err}");
}

#[test]
fn settings_the_host_refuses_are_refused() {
    let dir = TempDir::new("settings");
    let fixture = s(&cases("cart-threshold").join("fixtures/cart-100.json"));
    // No settings file beside the component.
    let alone = dir.join("alone.wasm");
    std::fs::copy(component("cart-threshold"), &alone).unwrap();
    let err = refused(&["run", &alone, "--fixture", &fixture]);
    assert!(err.contains("alone.toml is missing"), "{err}");
    // Settings without a route, or with one the host cannot serve.
    for (settings, why) in [
        ("[config]\nthreshold = 1\n", "no routes"),
        (
            "routes = [\"apply\"]\n",
            "route \"apply\" must start with '/'",
        ),
        (
            "routes = [\"/x\"]\n[limits]\nfuel = 0\n",
            "limits.fuel is 0",
        ),
    ] {
        let path = dir.join("settings.toml");
        std::fs::write(&path, settings).unwrap();
        let args = ["run", &alone, "--fixture", &fixture, "--settings", &path];
        let err = refused(&args);
        assert!(err.contains("the host would refuse"), "{settings}: {err}");
        assert!(err.contains(why), "{settings}: {err}");
    }
    let cart = s(&component("cart-threshold"));
    let err = refused(&["run", &cart, "--fixture", &fixture, "--timeout-ms", "0"]);
    assert!(err.contains("with this command's limits"), "{err}");
    assert!(err.contains("limits.timeout_ms is 0"), "{err}");
}

#[test]
fn a_fixture_of_the_wrong_shape_names_the_field() {
    let dir = TempDir::new("fixture");
    let text = std::fs::read_to_string(cases("cart-threshold").join("fixtures/cart-100.json"));
    let mut session: Value = serde_json::from_str(&text.unwrap()).unwrap();
    session["line_items"]["data"][0]["quantity"] = "two".into();
    let path = dir.join("session.json");
    std::fs::write(&path, session.to_string()).unwrap();
    let cart = s(&component("cart-threshold"));
    let err = refused(&["run", &cart, "--fixture", &path]);
    assert!(
        err.contains("is not a Checkout Session as Stripe returns it"),
        "{err}"
    );
    assert!(
        err.contains("line_items.data[0].quantity: invalid type: string \"two\""),
        "{err}"
    );
}

#[test]
fn a_filter_that_matches_no_case_says_so() {
    let out = runner(&[
        "test",
        &s(&cases("promo-code")),
        "--component",
        &s(&component("promo-code")),
        "--filter",
        "no-such-case",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("no case name contains \"no-such-case\" (--filter)"),
        "{stdout}"
    );
}

#[test]
fn other_languages_scaffold_without_the_rust_sdk() {
    let dir = TempDir::new("new-lang");
    for lang in ["c", "js", "python"] {
        let project = dir.path().join(lang);
        let out = runner(&[
            "new",
            "welcome-offer",
            "--lang",
            lang,
            "--dir",
            &s(&project),
            "--sdk-path",
            "/no/such/sdk",
        ]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{lang}:\n{stdout}\n{stderr}");
        assert!(!stdout.contains("SDK"), "{lang}: {stdout}");
        assert!(project.join("policy.toml").exists(), "{lang}");
    }
    let rust = runner(&[
        "new",
        "welcome-offer",
        "--dir",
        &dir.join("rust"),
        "--sdk-path",
        "/no/such/sdk",
    ]);
    let (_, stderr) = text(&rust);
    assert!(
        stderr.contains("the SDK is not at /no/such/sdk"),
        "{stderr}"
    );
}
