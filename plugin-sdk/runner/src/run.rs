//! `policy-runner run`: one policy component, one session fixture, one report.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use policy_engine::settings::{ConfigValue, Expand, Expansion};
use policy_engine::{Caps, Clock, EngineConfig, Policy, PolicyEngine, PolicySettings};
use serde_json::{Map, Value};
use stripe_checkout::CheckoutSession;

use crate::clock::parse_time;
use crate::report::{self, Scenario};

/// Which policy to load and how: shared by `run`, `test` and `replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// Its settings (`routes`, `[config]`, `[limits]`) [default: `<component>.toml` beside it].
    #[arg(long)]
    pub settings: Option<PathBuf>,
    /// A TOML file of configuration values (a `[config]` table, or top-level keys).
    #[arg(long)]
    pub config_file: Option<PathBuf>,
    /// A configuration value, over the settings' and the config file's; repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Override the fuel (instruction) budget.
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Override the linear memory cap, in bytes.
    #[arg(long)]
    pub memory_bytes: Option<usize>,
    /// Override the wall-clock deadline, in milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// The merchant's caps the guard enforces: a host config with a `[caps]` table, or a
    /// file of caps (`max_percent_off`, `[max_amount_off]`, `allowed_coupons`).
    #[arg(long)]
    pub caps: Option<PathBuf>,
    /// Directory of compiled artifacts, so a component compiles once per version (JS and
    /// Python ones take seconds) [default: `$CARGO_TARGET_DIR/policy-cache`, else
    /// `target/policy-cache` when `target/` exists; `none` disables it].
    #[arg(long, env = "POLICY_RUNNER_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// The compile cache directory to use, if any, given the `--cache-dir` argument.
pub fn cache_dir(given: Option<&Path>) -> Option<PathBuf> {
    match given {
        Some(dir) if dir.as_os_str() == "none" => None,
        Some(dir) => Some(dir.to_path_buf()),
        None => match std::env::var_os("CARGO_TARGET_DIR") {
            Some(target) => Some(PathBuf::from(target).join("policy-cache")),
            None => Some(PathBuf::from("target"))
                .filter(|t| t.is_dir())
                .map(|t| t.join("policy-cache")),
        },
    }
}

/// Arguments of `policy-runner run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy component (`.wasm`), in any language.
    pub component: PathBuf,
    /// The Checkout Session JSON exactly as Stripe returns it, with `line_items` and
    /// `customer` expanded (`policy-runner fetch` saves one).
    #[arg(short, long)]
    pub fixture: PathBuf,
    /// The storefront's JSON body (without `checkout_session_id`), or `@file.json`.
    #[arg(short, long)]
    pub input: Option<String>,
    /// The route called [default: the first of the settings' `routes`].
    #[arg(long)]
    pub route: Option<String>,
    /// "now" for the policy: Unix seconds or RFC 3339 [default: the system clock].
    #[arg(long)]
    pub now: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// Runs `policy-runner run`; exits 1 when the policy fails or the guard refuses its decision.
pub fn run(args: Args) -> Result<()> {
    let loaded = load_policy(&args.component, &args.policy, &[])?;
    let session = load_fixture(&args.fixture, &loaded.policy.settings.expand)?;
    let input = match &args.input {
        Some(text) => parse_input(text)?,
        None => Map::new(),
    };
    let now = match &args.now {
        Some(t) => parse_time(t)?,
        None => Clock::System.now(),
    };
    let scenario = Scenario {
        session,
        action: route_for(&loaded.policy, args.route.as_deref()),
        input,
        now,
        caps: loaded.caps.clone(),
    };
    let outcome = report::evaluate(&loaded.policy, &scenario);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        print!("{}", report::render_text(&outcome));
    }
    exit_if(!outcome.ok)
}

/// Flushes stdout and exits 1 when `failed`.
pub fn exit_if(failed: bool) -> Result<()> {
    if failed {
        std::io::stdout().flush().ok();
        std::process::exit(1);
    }
    Ok(())
}

/// A loaded policy and the caps its decisions are checked against.
pub struct Loaded {
    /// The policy, ready to evaluate.
    pub policy: Policy,
    /// The merchant's caps.
    pub caps: Caps,
}

/// Loads a component with its settings, configuration overrides and limit overrides.
///
/// `extra_config` comes last (a test case's own `[config]`).
pub fn load_policy(
    component: &Path,
    args: &PolicyArgs,
    extra_config: &[(String, ConfigValue)],
) -> Result<Loaded> {
    let bytes = std::fs::read(component)
        .with_context(|| format!("cannot read the component {}", component.display()))?;
    let (settings_path, settings) = read_settings(component, args.settings.as_deref())?;
    let mut settings = settings.with_context(|| {
        format!(
            "{} is missing: a policy needs its settings file (routes, [config], [limits]), \
             beside its component as the host reads it, or given with --settings",
            settings_path.display()
        )
    })?;
    if let Some(path) = &args.config_file {
        settings.config.extend(read_config_file(path)?);
    }
    for kv in &args.config {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--config {kv:?}: expected KEY=VALUE"))?;
        settings
            .config
            .insert(k.trim().to_string(), ConfigValue::String(v.to_string()));
    }
    settings.config.extend(extra_config.iter().cloned());
    if let Some(fuel) = args.fuel {
        settings.limits.fuel = Some(fuel);
    }
    if let Some(memory) = args.memory_bytes {
        settings.limits.memory_bytes = Some(memory);
    }
    if let Some(timeout) = args.timeout_ms {
        settings.limits.timeout_ms = Some(timeout);
    }
    let overridden = args.fuel.or(args.timeout_ms).is_some() || args.memory_bytes.is_some();
    settings
        .check()
        .map_err(anyhow::Error::msg)
        .with_context(|| {
            format!(
                "the host would refuse {}{}",
                settings_path.display(),
                if overridden {
                    " with this command's limits"
                } else {
                    ""
                }
            )
        })?;
    let caps = match &args.caps {
        Some(path) => read_caps(path)?,
        None => Caps::default(),
    };
    let name = component
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "policy".to_string());
    let engine = PolicyEngine::new(EngineConfig {
        cache_dir: cache_dir(args.cache_dir.as_deref()),
        ..EngineConfig::default()
    })?;
    let policy = engine
        .load(&name, &bytes, settings)
        .with_context(|| format!("cannot load {}", component.display()))?;
    Ok(Loaded { policy, caps })
}

/// The settings file of `component` (`given`, else `<component>.toml` beside it) and its
/// settings; `None` when there is no such file beside it.
pub fn read_settings(
    component: &Path,
    given: Option<&Path>,
) -> Result<(PathBuf, Option<PolicySettings>)> {
    let path = given.map_or_else(|| component.with_extension("toml"), Path::to_path_buf);
    if !path.exists() {
        if given.is_some() {
            bail!("settings file {} not found", path.display());
        }
        return Ok((path, None));
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let settings = PolicySettings::from_toml(&text)
        .with_context(|| format!("{} is not a valid policy settings file", path.display()))?;
    Ok((path, Some(settings)))
}

/// The route to call: the one given, else the policy's first route, else `/<name>`.
pub fn route_for(policy: &Policy, route: Option<&str>) -> String {
    route
        .map(str::to_string)
        .or_else(|| policy.settings.routes.first().cloned())
        .unwrap_or_else(|| format!("/{}", policy.name))
}

/// Configuration values from a TOML file: its `[config]` table, or its top-level keys.
pub fn read_config_file(path: &Path) -> Result<Vec<(String, ConfigValue)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?;
    let table = match table.get("config") {
        Some(toml::Value::Table(t)) => t.clone(),
        _ => table,
    };
    config_values(&table).with_context(|| format!("in {}", path.display()))
}

/// Scalar TOML values as configuration values.
pub fn config_values(table: &toml::Table) -> Result<Vec<(String, ConfigValue)>> {
    table
        .iter()
        .map(|(k, v)| {
            let v = match v {
                toml::Value::String(s) => ConfigValue::String(s.clone()),
                toml::Value::Integer(i) => ConfigValue::Integer(*i),
                toml::Value::Float(f) => ConfigValue::Float(*f),
                toml::Value::Boolean(b) => ConfigValue::Boolean(*b),
                other => bail!(
                    "config key {k:?}: {} is not a scalar (quote dotted keys: \"tier.gold\" = \"15\")",
                    other.type_str()
                ),
            };
            Ok((k.clone(), v))
        })
        .collect()
}

/// Scalar JSON values as configuration values.
pub fn config_values_json(map: &Map<String, Value>) -> Result<Vec<(String, ConfigValue)>> {
    map.iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => ConfigValue::String(s.clone()),
                Value::Bool(b) => ConfigValue::Boolean(*b),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => ConfigValue::Integer(i),
                    None => ConfigValue::Float(n.as_f64().unwrap_or(0.0)),
                },
                _ => bail!("config key {k:?} is not a scalar"),
            };
            Ok((k.clone(), v))
        })
        .collect()
}

fn read_caps(path: &Path) -> Result<Caps> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?;
    let caps = match table.get("caps") {
        Some(v) => v.clone(),
        None => toml::Value::Table(table),
    };
    caps.try_into()
        .with_context(|| format!("{}: invalid caps", path.display()))
}

/// The storefront input: a JSON object, or `@path` to a file holding one.
pub fn parse_input(text: &str) -> Result<Map<String, Value>> {
    let owned;
    let json = match text.strip_prefix('@') {
        Some(path) => {
            owned = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
            owned.as_str()
        }
        None => text,
    };
    match serde_json::from_str::<Value>(json).context("--input is not JSON")? {
        Value::Object(mut map) => {
            map.remove("checkout_session_id");
            Ok(map)
        }
        other => bail!("the input must be a JSON object, got {other}"),
    }
}

/// Reads a session fixture; warns on stderr about missing expansions the policy reads.
pub fn load_fixture(path: &Path, expand: &Expand) -> Result<CheckoutSession> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the fixture {}", path.display()))?;
    parse_fixture(&text, path, expand)
}

/// Parses a session fixture (warnings name `path`).
pub fn parse_fixture(text: &str, path: &Path, expand: &Expand) -> Result<CheckoutSession> {
    let value: Value =
        serde_json::from_str(text).with_context(|| format!("{} is not JSON", path.display()))?;
    if let Some(object) = value.get("object").and_then(Value::as_str) {
        if object != "checkout.session" {
            bail!(
                "{} holds a {object:?}, not a checkout.session",
                path.display()
            );
        }
    }
    let session: CheckoutSession = stripe_checkout::json::from_slice(text.as_bytes())
        .map_err(anyhow::Error::msg)
        .with_context(|| {
            format!(
                "{} is not a Checkout Session as Stripe returns it",
                path.display()
            )
        })?;
    let p = path.display();
    let reads_line_items = expand.contains(Expansion::LineItems);
    if reads_line_items && value.get("line_items").is_none_or(Value::is_null) {
        eprintln!("warning: {p}: line_items not expanded (retrieve with expand[]=line_items, or use `policy-runner fetch`)");
    } else if reads_line_items && session.line_items.as_ref().is_some_and(|l| l.has_more) {
        eprintln!("warning: {p}: line_items has more pages; only the first is in the fixture (`policy-runner fetch` reads them all)");
    }
    if expand.contains(Expansion::Customer) && value.get("customer").is_some_and(Value::is_string) {
        eprintln!("warning: {p}: customer not expanded (expand[]=customer); the policy sees no customer metadata");
    }
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_a_json_object_without_the_session_id() {
        let m = parse_input(r#"{"checkout_session_id":"cs_1","promo_code":"X","n":2}"#).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m["promo_code"], "X");
        assert!(parse_input("[1]").is_err());
        assert!(parse_input("{").is_err());
    }

    #[test]
    fn config_and_caps_files() {
        let dir = std::env::temp_dir().join(format!("runner-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            "routes = [\"/x\"]\n[config]\n\"tier.gold\" = \"15\"\nn = 3\n",
        )
        .unwrap();
        let values = read_config_file(&config).unwrap();
        assert_eq!(values.len(), 2);
        assert!(values.contains(&("n".to_string(), ConfigValue::Integer(3))));
        std::fs::write(&config, "[config.tier]\ngold = \"15\"\n").unwrap();
        let err = read_config_file(&config).unwrap_err();
        assert!(format!("{err:#}").contains("quote dotted keys"), "{err:#}");

        let caps = dir.join("host.toml");
        std::fs::write(
            &caps,
            "listen = \"127.0.0.1:1\"\n[caps]\nmax_percent_off = 30.0\n",
        )
        .unwrap();
        assert_eq!(read_caps(&caps).unwrap().max_percent_off, Some(30.0));
        std::fs::write(&caps, "max_amount_off = { usd = 500 }\n").unwrap();
        assert_eq!(read_caps(&caps).unwrap().max_amount_off["usd"], 500);
        std::fs::write(&caps, "max_percent = 30\n").unwrap();
        assert!(read_caps(&caps).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
