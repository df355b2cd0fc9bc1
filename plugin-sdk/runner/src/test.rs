//! `policy-runner test`: runs folders of cases against policy components, for CI.
//!
//! A case is a TOML or JSON file at the top of a cases folder (fixtures go in a
//! subfolder, conventionally `fixtures/`):
//!
//! ```toml
//! description = "carts over 100.00 get 10 % off"
//! fixture = "fixtures/cart-150.json"    # relative to the case file
//! route = "/apply-cart-discount"        # default: the policy's first route
//! now = "2026-11-27T09:00:00Z"          # or Unix seconds; default: the session's `created`
//! [input]                               # the storefront's JSON body
//! promo_code = "SPRING"
//! [config]                              # over the policy's settings
//! percent = "10"
//! [expect]
//! decision = { type = "apply", coupon_data = { name = "Cart discount", amount_off = 1500, currency = "usd" } }
//! guard = "passed"                      # passed | refused | not_run | a rule name
//! totals = { subtotal = 15000, discount = 1500, total = 13500 }
//! logs = ["over threshold"]             # substrings some log message must contain
//! # error = "fuel_exhausted"            # expect no decision, failing this way
//! [caps]                                # the merchant's caps (default: --caps, else none)
//! max_amount_off = { usd = 1000 }
//! ```
//!
//! The decision is compared as the host's `DecisionView` JSON, field by field.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use policy_engine::decision::DecisionView;
use policy_engine::Caps;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::parse_time;
use crate::report::{self, decision_line, Outcome, Scenario};
use crate::run::{config_values_json, load_policy, parse_fixture, route_for, PolicyArgs};

/// Arguments of `policy-runner test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cases folders (or single case files), such as `plugins/cart-threshold/cases`.
    #[arg(required = true)]
    pub cases: Vec<PathBuf>,
    /// The component to test [default: `<policy-dir>/<name>.wasm`, where `<name>` is the
    /// folder holding `cases/`].
    #[arg(long)]
    pub component: Option<PathBuf>,
    /// Where built components are [default: `$CARGO_TARGET_DIR/policies`, else `target/policies`].
    #[arg(long)]
    pub policy_dir: Option<PathBuf>,
    /// Run only the cases whose name contains this.
    #[arg(long)]
    pub filter: Option<String>,
    /// Print each case's full report, passing or not.
    #[arg(short, long)]
    pub verbose: bool,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// A case file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case shows.
    #[serde(default)]
    pub description: Option<String>,
    /// The session fixture, relative to the case file.
    pub fixture: PathBuf,
    /// The route called.
    #[serde(default)]
    pub route: Option<String>,
    /// "now": Unix seconds or RFC 3339.
    #[serde(default)]
    pub now: Option<Value>,
    /// The storefront input.
    #[serde(default)]
    pub input: Map<String, Value>,
    /// Configuration over the policy's settings.
    #[serde(default)]
    pub config: Map<String, Value>,
    /// The merchant's caps for this case, instead of `--caps`.
    #[serde(default)]
    pub caps: Option<Caps>,
    /// What must come out.
    pub expect: Expect,
}

/// What a case expects.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The decision, as `DecisionView` JSON.
    #[serde(default)]
    pub decision: Option<DecisionView>,
    /// `passed`, `refused`, `not_run`, or the rule the guard must refuse with.
    #[serde(default)]
    pub guard: Option<String>,
    /// Totals after the decision; only the amounts given are compared.
    #[serde(default)]
    pub totals: Option<ExpectTotals>,
    /// Substrings that some log message must contain.
    #[serde(default)]
    pub logs: Vec<String>,
    /// The evaluation must fail with this kind (`fuel_exhausted`, `trap`, ...).
    #[serde(default)]
    pub error: Option<String>,
}

/// Expected amounts; unset ones are not compared.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectTotals {
    /// `amount_subtotal`.
    pub subtotal: Option<i64>,
    /// `total_details.amount_discount`.
    pub discount: Option<i64>,
    /// `total_details.amount_shipping`.
    pub shipping: Option<i64>,
    /// `amount_total`.
    pub total: Option<i64>,
}

/// One case's result.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// The case file's stem.
    pub name: String,
    /// The case file.
    pub file: PathBuf,
    /// The case's description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Passed.
    pub passed: bool,
    /// What differed (or why the case could not run).
    pub failures: Vec<String>,
    /// The full outcome, when the case ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

/// Runs `policy-runner test`; exits 1 on any failure.
pub fn run(args: Args) -> Result<()> {
    let mut all = Vec::new();
    for dir in &args.cases {
        let component = match &args.component {
            Some(c) => c.clone(),
            None => default_component(dir, args.policy_dir.as_deref())?,
        };
        let results = run_folder(dir, &component, &args)?;
        if !args.json {
            print_folder(dir, &component, &results, &args);
        }
        all.extend(results);
    }
    let failed = all.iter().filter(|r| !r.passed).count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        println!(
            "\n{} passed, {failed} failed ({} cases)",
            all.len() - failed,
            all.len()
        );
    }
    crate::run::exit_if(failed > 0 || all.is_empty())
}

/// `<policy-dir>/<name>.wasm` for `plugins/<name>/cases`.
fn default_component(dir: &Path, policy_dir: Option<&Path>) -> Result<PathBuf> {
    let dir =
        std::fs::canonicalize(dir).with_context(|| format!("no such folder {}", dir.display()))?;
    let dir = if dir.is_file() {
        dir.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        dir
    };
    let named = if dir.file_name().is_some_and(|n| n == "cases") {
        dir.parent().unwrap_or(&dir)
    } else {
        &dir
    };
    let name = named
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("cannot tell the policy's name from the cases folder; pass --component")?;
    let policy_dir = match policy_dir {
        Some(d) => d.to_path_buf(),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target"))
            .join("policies"),
    };
    let component = policy_dir.join(format!("{name}.wasm"));
    if !component.exists() {
        bail!(
            "{} not found: build the policy first (`policy-runner build`), or pass --component",
            component.display()
        );
    }
    Ok(component)
}

/// The case files of a folder (top level only), sorted; or the file itself.
fn case_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the cases folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml" || e == "json"))
        .collect();
    files.sort();
    Ok(files)
}

fn run_folder(dir: &Path, component: &Path, args: &Args) -> Result<Vec<CaseResult>> {
    let mut results = Vec::new();
    for file in case_files(dir)? {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if args
            .filter
            .as_ref()
            .is_some_and(|f| !name.contains(f.as_str()))
        {
            continue;
        }
        let description = read_case(&file).ok().and_then(|c| c.description);
        let result = match run_case(&file, component, &args.policy) {
            Ok((outcome, failures)) => CaseResult {
                name,
                file,
                description,
                passed: failures.is_empty(),
                failures,
                outcome: Some(outcome),
            },
            Err(e) => CaseResult {
                name,
                file,
                description,
                passed: false,
                failures: vec![format!("cannot run the case: {e:#}")],
                outcome: None,
            },
        };
        results.push(result);
    }
    Ok(results)
}

/// Reads a TOML or JSON case file.
pub fn read_case(file: &Path) -> Result<Case> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let value = if file.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?
    } else {
        let table: toml::Table =
            toml::from_str(&text).with_context(|| format!("{} is not TOML", file.display()))?;
        toml_to_json(toml::Value::Table(table))
    };
    serde_json::from_value(value).with_context(|| format!("{} is not a valid case", file.display()))
}

/// TOML as JSON; datetimes become their RFC 3339 text.
fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => Value::from(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

/// Runs one case; the failures are empty when it passed.
pub fn run_case(
    file: &Path,
    component: &Path,
    args: &PolicyArgs,
) -> Result<(Outcome, Vec<String>)> {
    let case = read_case(file)?;
    let e = &case.expect;
    if e.decision.is_none() && e.error.is_none() && e.guard.is_none() && e.totals.is_none() {
        bail!("[expect] needs at least one of decision, error, guard or totals");
    }
    let base = file.parent().unwrap_or(Path::new("."));
    let fixture_path = base.join(&case.fixture);
    let text = std::fs::read_to_string(&fixture_path)
        .with_context(|| format!("cannot read the fixture {}", fixture_path.display()))?;
    let loaded = load_policy(component, args, &config_values_json(&case.config)?)?;
    let session = parse_fixture(&text, &fixture_path, &loaded.policy.settings.expand)?;
    let now = match &case.now {
        None => session.created,
        Some(Value::Number(n)) => n.as_i64().context("`now` must be whole seconds")?,
        Some(Value::String(s)) => parse_time(s)?,
        Some(other) => bail!("`now` must be Unix seconds or RFC 3339 text, got {other}"),
    };
    let scenario = Scenario {
        action: route_for(&loaded.policy, case.route.as_deref()),
        session,
        input: case.input.clone(),
        now,
        caps: case.caps.clone().unwrap_or_else(|| loaded.caps.clone()),
    };
    let outcome = report::evaluate(&loaded.policy, &scenario);
    let failures = compare(&case.expect, &outcome);
    Ok((outcome, failures))
}

/// What differs between the expectation and the outcome, readably.
pub fn compare(expect: &Expect, o: &Outcome) -> Vec<String> {
    let mut failures = Vec::new();
    match (&expect.error, &o.error) {
        (Some(kind), Some(err)) if &err.kind != kind => failures.push(format!(
            "error: expected {kind}, got {} ({})",
            err.kind, err.message
        )),
        (Some(kind), None) => failures.push(format!(
            "error: expected the policy to fail with {kind}, but it decided {}",
            o.decision
                .as_ref()
                .map_or_else(|| "nothing".into(), decision_line)
        )),
        (None, Some(err)) => {
            failures.push(format!("the policy failed ({}): {}", err.kind, err.message))
        }
        _ => {}
    }
    if let Some(want) = &expect.decision {
        match &o.decision {
            None => failures.push(format!(
                "decision: expected {}, got none",
                decision_line(want)
            )),
            Some(got) => {
                let (w, g) = (to_json(want), to_json(got));
                let mut lines = Vec::new();
                json_diff("", &w, &g, &mut lines);
                if !lines.is_empty() {
                    let mut msg = String::from("decision differs:");
                    for l in &lines {
                        let _ = write!(msg, "\n  {l}");
                    }
                    let _ = write!(msg, "\n  expected: {w}\n  actual:   {g}");
                    failures.push(msg);
                }
            }
        }
    }
    if let Some(want) = &expect.guard {
        let got = &o.guard;
        let matches = match want.as_str() {
            "passed" | "refused" | "not_run" => &got.verdict == want,
            rule => got.verdict == "refused" && got.rule.as_deref() == Some(rule),
        };
        if !matches {
            failures.push(format!(
                "guard: expected {want}, got {}{}",
                got.verdict,
                got.rule
                    .as_ref()
                    .map(|r| format!(" {r}: {}", got.detail.as_deref().unwrap_or("")))
                    .unwrap_or_default()
            ));
        }
    }
    if let Some(want) = &expect.totals {
        match &o.totals.after {
            None => failures.push(format!(
                "totals: unknown after the decision ({})",
                o.totals.note
            )),
            Some(got) => {
                for (label, w, g) in [
                    ("subtotal", want.subtotal, got.subtotal),
                    ("discount", want.discount, got.discount),
                    ("shipping", want.shipping, got.shipping),
                    ("total", want.total, got.total),
                ] {
                    if let Some(w) = w {
                        if w != g {
                            failures.push(format!("totals.{label}: expected {w}, got {g}"));
                        }
                    }
                }
            }
        }
    }
    for needle in &expect.logs {
        if !o.logs.iter().any(|l| l.message.contains(needle.as_str())) {
            let seen: Vec<&str> = o.logs.iter().map(|l| l.message.as_str()).collect();
            failures.push(format!(
                "logs: no message contains {needle:?}; logged {seen:?}"
            ));
        }
    }
    failures
}

fn to_json(d: &DecisionView) -> Value {
    serde_json::to_value(d).unwrap_or(Value::Null)
}

/// Field-by-field differences: `coupon_data.amount_off: expected 1500, got 2000`.
pub fn json_diff(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    let at = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let keys: BTreeSet<&String> = e.keys().chain(a.keys()).collect();
            for k in keys {
                match (e.get(k), a.get(k)) {
                    (Some(ev), Some(av)) => json_diff(&at(k), ev, av, out),
                    (Some(ev), None) => out.push(format!("{}: expected {ev}, got nothing", at(k))),
                    (None, Some(av)) => out.push(format!("{}: not expected, got {av}", at(k))),
                    (None, None) => {}
                }
            }
        }
        (Value::Number(e), Value::Number(a)) if e.as_f64() == a.as_f64() => {}
        (e, a) if e == a => {}
        (e, a) => out.push(format!(
            "{}: expected {e}, got {a}",
            if path.is_empty() { "value" } else { path }
        )),
    }
}

fn print_folder(dir: &Path, component: &Path, results: &[CaseResult], args: &Args) {
    println!("{} (component {})", dir.display(), component.display());
    if results.is_empty() {
        match &args.filter {
            Some(filter) => println!("  no case name contains {filter:?} (--filter)"),
            None => println!("  no cases (TOML or JSON files) in {}", dir.display()),
        }
    }
    let width = results.iter().map(|r| r.name.len()).max().unwrap_or(0);
    for r in results {
        let summary = r
            .outcome
            .as_ref()
            .map(|o| match (&o.decision, &o.error) {
                (Some(d), _) => decision_line(d),
                (None, Some(e)) => format!("failed: {}", e.kind),
                _ => String::new(),
            })
            .unwrap_or_default();
        let mark = if r.passed { "PASS" } else { "FAIL" };
        println!("  {mark}  {:<width$}  {summary}", r.name);
        if !r.passed {
            println!("        {}", r.file.display());
            if let Some(d) = &r.description {
                println!("        ({d})");
            }
            for f in &r.failures {
                for line in f.lines() {
                    println!("        {line}");
                }
            }
        }
        if args.verbose || !r.passed {
            if let Some(o) = &r.outcome {
                if args.verbose {
                    for line in report::render_text(o).lines() {
                        println!("        | {line}");
                    }
                } else if !o.logs.is_empty() {
                    println!("        logs:");
                    for l in &o.logs {
                        println!("          {} {}", l.level, l.message);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_name_the_field() {
        let e = serde_json::json!({"type":"apply","coupon_data":{"amount_off":1500,"name":"A","percent_off":null}});
        let a = serde_json::json!({"type":"apply","coupon_data":{"amount_off":2000,"name":"A","currency":"usd"}});
        let mut out = Vec::new();
        json_diff("", &e, &a, &mut out);
        assert_eq!(
            out,
            vec![
                "coupon_data.amount_off: expected 1500, got 2000",
                "coupon_data.currency: not expected, got \"usd\"",
                "coupon_data.percent_off: expected null, got nothing",
            ]
        );
        let mut out = Vec::new();
        json_diff(
            "",
            &serde_json::json!(15),
            &serde_json::json!(15.0),
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn toml_cases_parse() {
        let dir = std::env::temp_dir().join(format!("runner-case-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "fixture = \"f.json\"\nnow = 2026-01-01T00:00:00Z\n[input]\ncode = \"X\"\n[expect]\ndecision = { type = \"apply\", coupon_data = { percent_off = 15 } }\n",
        )
        .unwrap();
        let case = read_case(&file).unwrap();
        assert_eq!(case.now, Some(Value::String("2026-01-01T00:00:00Z".into())));
        assert!(matches!(
            case.expect.decision,
            Some(DecisionView::Apply { .. })
        ));
        std::fs::write(&file, "fixture = \"f.json\"\n[expect]\ndecison = 1\n").unwrap();
        let err = read_case(&file).unwrap_err();
        assert!(format!("{err:#}").contains("decison"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
