//! `policy-runner fetch`: saves a Checkout Session as a fixture, as Stripe returns it,
//! with `line_items` (every page), `customer` and `discounts.coupon` expanded.
//!
//! From Stripe with a test-mode key (`STRIPE_SECRET_KEY`), or from the emulator
//! (`--api-base`). With `--from-log`, the session of a record in the host's decision
//! log is saved with the record beside it, ready for `policy-runner replay`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use policy_engine::audit::AuditRecord;
use stripe_checkout::{ClientConfig, StripeClient};

/// The environment variable holding the Stripe key.
pub const SECRET_KEY_ENV: &str = "STRIPE_SECRET_KEY";
/// The key sent to an emulator when none is set.
pub const EMULATOR_KEY: &str = "sk_test_emulator";

/// Arguments of `policy-runner fetch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Checkout Session id (`cs_test_...`); with `--from-log`, the record's session.
    pub session_id: Option<String>,
    /// Where to write the fixture [default: `<out-dir>/<session id>.json`].
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// The folder for the fixture (and the record, with `--from-log`).
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,
    /// Stripe's API origin, or the emulator's (`http://127.0.0.1:12111`).
    #[arg(long, default_value = stripe_checkout::client::DEFAULT_API_BASE)]
    pub api_base: String,
    /// The host's decision log (JSON lines): fetch the session of one of its records.
    #[arg(long)]
    pub from_log: Option<PathBuf>,
    /// With `--from-log`: the record on this line (1-based) [default: the last record of
    /// the session given, else the last record].
    #[arg(long)]
    pub line: Option<usize>,
    /// Accept a live-mode key (read-only use; prefer a restricted `rk_live_` key).
    #[arg(long)]
    pub allow_live: bool,
}

/// Runs `policy-runner fetch`.
pub fn run(args: Args) -> Result<()> {
    let record = match &args.from_log {
        Some(log) => Some(select_record(log, args.session_id.as_deref(), args.line)?),
        None => None,
    };
    let session_id = match (&record, &args.session_id) {
        (Some((_, r)), _) => r
            .session_id
            .clone()
            .context("that log record names no Checkout Session")?,
        (None, Some(id)) => id.clone(),
        (None, None) => bail!("give a Checkout Session id, or --from-log"),
    };
    let key = std::env::var(SECRET_KEY_ENV).ok();
    let client = client(&args.api_base, key.as_deref(), args.allow_live)?;
    if let Some((_, r)) = &record {
        let live_key = key.as_deref().is_some_and(is_live);
        if r.livemode == Some(true) && !live_key {
            bail!(
                "that record is a live-mode decision: set {SECRET_KEY_ENV} to a live key \
                 (a read-only restricted rk_live_ key) and pass --allow-live"
            );
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let response = runtime
        .block_on(client.retrieve_checkout_session_full_json(&session_id, None))
        .with_context(|| format!("cannot retrieve {session_id} from {}", args.api_base))?;
    let json = response.body;
    let session: stripe_checkout::CheckoutSession = serde_json::from_value(json.clone())
        .context("Stripe returned something that is not a Checkout Session")?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| args.out_dir.join(format!("{session_id}.json")));
    write(&output, &serde_json::to_string_pretty(&json)?)?;
    let items = session.line_items.as_ref().map_or(0, |l| l.data.len());
    println!(
        "{}: {session_id} ({} {}, {items} line items, customer {}, status {}; request {})",
        output.display(),
        session.amount_subtotal.unwrap_or(0),
        session.currency.as_deref().unwrap_or("-"),
        session.customer.as_ref().map_or("none", |c| c.id()),
        session.status.as_deref().unwrap_or("-"),
        response.request_id.as_deref().unwrap_or("-"),
    );
    if let Some((line, record)) = record {
        let record_path = output.with_extension("record.json");
        write(&record_path, &serde_json::to_string_pretty(&record)?)?;
        println!(
            "{}: log line {line} ({} {} at {})",
            record_path.display(),
            record.route,
            record.outcome,
            record.time
        );
        println!(
            "replay it: policy-runner replay <component.wasm> --record {} --fixture {}",
            record_path.display(),
            output.display()
        );
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, format!("{text}\n"))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Whether a key is a live-mode one.
fn is_live(key: &str) -> bool {
    let key = key.trim();
    key.starts_with("sk_live_") || key.starts_with("rk_live_")
}

/// A Stripe client for `api_base` with `key` (from the environment).
fn client(api_base: &str, key: Option<&str>, allow_live: bool) -> Result<StripeClient> {
    let is_stripe = api_base.trim_end_matches('/') == stripe_checkout::client::DEFAULT_API_BASE;
    let key = match key {
        Some(k) if !k.trim().is_empty() => k.trim().to_string(),
        _ if !is_stripe => EMULATOR_KEY.to_string(),
        _ => bail!(
            "set {SECRET_KEY_ENV} to a test-mode key (sk_test_... or rk_test_...), \
             or pass --api-base of the Stripe emulator"
        ),
    };
    if is_live(&key) && !allow_live {
        bail!(
            "{SECRET_KEY_ENV} is a live-mode key: pass --allow-live to read live sessions with it"
        );
    }
    let mut config = ClientConfig::new(key);
    config.api_base = api_base.to_string();
    StripeClient::new(config).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Picks a record of a JSON-lines decision log: by line, else the last one of the session,
/// else the last one.
pub fn select_record(
    log: &Path,
    session_id: Option<&str>,
    line: Option<usize>,
) -> Result<(usize, AuditRecord)> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("cannot read {}", log.display()))?;
    let parse = |n: usize, l: &str| -> Result<AuditRecord> {
        serde_json::from_str(l)
            .with_context(|| format!("{}:{n} is not a decision record", log.display()))
    };
    if let Some(n) = line {
        let l = text
            .lines()
            .nth(n.saturating_sub(1))
            .filter(|_| n > 0)
            .with_context(|| format!("{} has no line {n}", log.display()))?;
        return Ok((n, parse(n, l)?));
    }
    // A single pretty-printed record (such as `<id>.record.json`).
    if let Ok(record) = serde_json::from_str::<AuditRecord>(&text) {
        return Ok((1, record));
    }
    let mut found = None;
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let record = parse(i + 1, l)?;
        if session_id.is_none_or(|id| record.session_id.as_deref() == Some(id)) {
            found = Some((i + 1, record));
        }
    }
    found.with_context(|| match session_id {
        Some(id) => format!("no record of {id} in {}", log.display()),
        None => format!("no record in {}", log.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let stripe = stripe_checkout::client::DEFAULT_API_BASE;
        assert!(client(stripe, Some("sk_test_x"), false).is_ok());
        let err = client(stripe, None, false).unwrap_err();
        assert!(err.to_string().contains(SECRET_KEY_ENV), "{err}");
        let err = client(stripe, Some("sk_live_x"), false).unwrap_err();
        assert!(err.to_string().contains("--allow-live"), "{err}");
        assert!(client(stripe, Some("rk_live_x"), true).is_ok());
        // The emulator needs no key.
        let emulator = client("http://127.0.0.1:12111", None, false).unwrap();
        assert_eq!(emulator.config().secret_key, EMULATOR_KEY);
    }

    #[test]
    fn picks_records() {
        let dir = std::env::temp_dir().join(format!("runner-fetch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("decisions.jsonl");
        let line = |session: &str, outcome: &str| {
            serde_json::json!({
                "time": "2026-11-27T09:00:00.000Z", "route": "/r", "session_id": session,
                "livemode": false, "policy": "p", "version": "v", "input_digest": "d",
                "decision": {"type": "clear"}, "guard": {"verdict": "passed"},
                "stripe_request_id": null, "amounts_before": null, "amounts_after": null,
                "timing": {"total_us": 1, "retrieve_us": 0, "evaluate_us": 0, "update_us": 0},
                "fuel": null, "outcome": outcome
            })
            .to_string()
        };
        let text = [
            line("cs_a", "one"),
            line("cs_b", "two"),
            line("cs_a", "three"),
        ]
        .join("\n");
        std::fs::write(&log, text).unwrap();
        assert_eq!(
            select_record(&log, Some("cs_a"), None).unwrap().1.outcome,
            "three"
        );
        assert_eq!(select_record(&log, None, Some(2)).unwrap().1.outcome, "two");
        assert_eq!(select_record(&log, None, None).unwrap().0, 3);
        assert!(select_record(&log, Some("cs_z"), None).is_err());
        assert!(select_record(&log, None, Some(9)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
