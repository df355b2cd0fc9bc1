//! `policy-runner replay`: re-evaluates a decision from the host's decision log against
//! the session fixture `fetch --from-log` saved, and says whether it comes out the same.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use policy_engine::audit::{input_digest, AuditRecord};
use policy_engine::mapping;
use serde::Serialize;
use serde_json::Value;

use crate::clock::parse_time;
use crate::fetch::select_record;
use crate::report::{self, Amounts, Outcome, Scenario};
use crate::run::{load_fixture, load_policy, parse_input, PolicyArgs};
use crate::test::json_diff;

/// Arguments of `policy-runner replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy component to replay with (the logged version, or a new one).
    pub component: PathBuf,
    /// The record: `<id>.record.json` from `fetch --from-log`, or the decision log itself.
    #[arg(long)]
    pub record: PathBuf,
    /// With a whole log: the record of this session (the last one) ...
    #[arg(long)]
    pub session: Option<String>,
    /// ... or the record on this line (1-based).
    #[arg(long)]
    pub line: Option<usize>,
    /// The session fixture [default: `<session id>.json` beside the record].
    #[arg(short, long)]
    pub fixture: Option<PathBuf>,
    /// The storefront input, when the record holds none (JSON, or `@file.json`).
    #[arg(short, long)]
    pub input: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// How the replay compares with the log.
#[derive(Debug, Serialize)]
pub struct Replay {
    /// The logged record.
    pub record: AuditRecord,
    /// The replayed evaluation.
    pub outcome: Outcome,
    /// The component is the logged version.
    pub same_version: bool,
    /// The policy's input (session, route, body) hashes as logged.
    pub same_input: Option<bool>,
    /// The replayed decision equals the logged one.
    pub same_decision: bool,
    /// How the decisions differ.
    pub decision_diff: Vec<String>,
    /// Notes on what may explain a difference.
    pub notes: Vec<String>,
}

/// Runs `policy-runner replay`; exits 1 when the decision differs or the policy fails.
pub fn run(args: Args) -> Result<()> {
    let (_, record) = select_record(&args.record, args.session.as_deref(), args.line)?;
    let session_id = record
        .session_id
        .clone()
        .context("the record names no Checkout Session")?;
    let fixture = args.fixture.clone().unwrap_or_else(|| {
        args.record
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(format!("{session_id}.json"))
    });
    let loaded = load_policy(&args.component, &args.policy, &[])?;
    let session = load_fixture(&fixture, &loaded.policy.settings.expand)?;
    let input = match (&args.input, &record.input) {
        (Some(text), _) => parse_input(text)?,
        (None, Some(input)) => input.clone(),
        (None, None) => Default::default(),
    };
    let now = parse_time(&record.time).context("the record's `time`")?;
    let mut notes = Vec::new();
    if session.id != session_id {
        notes.push(format!(
            "the fixture is session {}, the record {session_id}",
            session.id
        ));
    }
    let same_input = record.input_digest.as_ref().map(|logged| {
        let request = mapping::policy_request(&record.route, &input);
        let view = mapping::expanded_copy(&session, &loaded.policy.settings.expand);
        &input_digest(&view, &request) == logged
    });
    match same_input {
        Some(false) => notes.push(
            "the input differs from the logged one: the session changed since (a fetched \
             session shows the decision's own discount), or the input was not logged"
                .to_string(),
        ),
        None => notes.push("the record has no input digest".to_string()),
        Some(true) => {}
    }
    if let Some(before) = &record.amounts_before {
        let now_amounts = report::amounts_before(&session);
        if before.amount_subtotal != Some(now_amounts.subtotal) {
            notes.push(format!(
                "the cart changed: logged subtotal {:?}, fixture {}",
                before.amount_subtotal, now_amounts.subtotal
            ));
        } else if before.amount_discount != now_amounts.discount {
            notes.push(format!(
                "the discount changed since (logged {} before the decision, fixture {})",
                before.amount_discount, now_amounts.discount
            ));
        }
    }
    let scenario = Scenario {
        session,
        action: record.route.clone(),
        input,
        now,
        caps: loaded.caps.clone(),
    };
    let outcome = report::evaluate(&loaded.policy, &scenario);
    let same_version = record.version.as_deref() == Some(outcome.policy.version.as_str());
    if !same_version {
        notes.push(format!(
            "replaying component {} but the log has version {}",
            short(&outcome.policy.version),
            record.version.as_deref().map_or("(none)", short)
        ));
    }
    let settings = &outcome.policy.settings_digest;
    if let Some(logged) = record.settings_digest.as_deref().filter(|d| *d != settings) {
        notes.push(format!(
            "replaying settings {} but the log has settings {}",
            short(settings),
            short(logged)
        ));
    }
    let logged = record
        .decision
        .as_ref()
        .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    let replayed = outcome
        .decision
        .as_ref()
        .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    let mut decision_diff = Vec::new();
    json_diff("", &logged, &replayed, &mut decision_diff);
    let replay = Replay {
        same_decision: decision_diff.is_empty(),
        record,
        same_version,
        same_input,
        decision_diff,
        notes,
        outcome,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&replay)?);
    } else {
        print!("{}", render(&replay));
    }
    crate::run::exit_if(!replay.same_decision || replay.outcome.error.is_some())
}

fn short(v: &str) -> &str {
    v.get(..12).unwrap_or(v)
}

fn render(r: &Replay) -> String {
    let mut s = report::render_text(&r.outcome);
    let rec = &r.record;
    let _ = writeln!(
        s,
        "\nreplay of the log record at {} ({} {})",
        rec.time, rec.route, rec.outcome
    );
    let yes = |b: bool| if b { "same" } else { "DIFFERENT" };
    let _ = writeln!(s, "  version   {}", yes(r.same_version));
    let _ = writeln!(s, "  input     {}", r.same_input.map_or("unknown", yes));
    let _ = writeln!(
        s,
        "  guard     logged {}, replayed {}",
        rec.guard.verdict, r.outcome.guard.verdict
    );
    if let Some(fuel) = &rec.fuel {
        let _ = writeln!(
            s,
            "  fuel      logged {}, replayed {}",
            fuel.used, r.outcome.cost.cost.fuel_used
        );
    }
    if let Some(after) = &rec.amounts_after {
        let amount =
            |total: Option<i64>| total.map_or_else(|| "none".to_string(), |t| t.to_string());
        let replayed = r.outcome.totals.after.map(|a: Amounts| a.total);
        let _ = writeln!(
            s,
            "  total     logged {} after the update, replayed {}",
            amount(after.amount_total),
            amount(replayed)
        );
    }
    for n in &r.notes {
        let _ = writeln!(s, "  note: {n}");
    }
    if r.same_decision {
        let _ = writeln!(s, "  decision  SAME as logged");
    } else {
        let _ = writeln!(s, "  decision  DIFFERS from the log:");
        for d in &r.decision_diff {
            let _ = writeln!(s, "    {d}");
        }
    }
    s
}
