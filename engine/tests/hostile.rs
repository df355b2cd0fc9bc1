//! The engine against the purpose-built hostile components of `testing/policies`
//! (built into `target/test-policies` by `scripts/build-test-policies.sh`): every limit
//! holds, its cost is reported, and evaluations are isolated from each other.

use policy_engine::bindings as wit;
use policy_engine::engine::{LoadError, QUICK_EVALUATION, QUICK_STREAK};
use policy_engine::{fixtures, mapping, Limits, PolicySettings};
use policy_engine::{
    guard, Attempt, Caps, Clock, Decision, DecommitReason, EngineConfig, EvalError, MemoryReset,
    PagemapScan, Policy, PolicyEngine, PoolSettings,
};
use std::path::PathBuf;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A built test component's bytes.
fn component(name: &str) -> Vec<u8> {
    let path = workspace().join(format!("target/test-policies/{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/build-test-policies.sh first",
            path.display()
        )
    })
}

/// A deadline no scheduling delay reaches, where a test expects another limit to hit first.
const SLOW_OK: &str = "timeout_ms = 10_000";

fn engine() -> PolicyEngine {
    PolicyEngine::new(EngineConfig {
        cache_dir: Some(workspace().join("target/test-policy-cache")),
        ..Default::default()
    })
    .unwrap()
}

/// The hostile policy in `mode`, with extra `[limits]` lines.
fn hostile(engine: &PolicyEngine, mode: &str, limits: &str) -> Policy {
    let settings = PolicySettings::from_toml(&format!(
        "routes = [\"/{mode}\"]\n[config]\nmode = \"{mode}\"\n[limits]\n{limits}\n"
    ))
    .unwrap();
    engine
        .load(mode, &component("hostile"), settings)
        .unwrap_or_else(|e| panic!("loading hostile in mode {mode}: {e}"))
}

fn session(currency: &str, subtotal: i64) -> wit::CheckoutSession {
    fixtures::open_session("cs_test_hostile", currency, subtotal)
}

fn request() -> wit::PolicyRequest {
    mapping::policy_request("/hostile", &Default::default())
}

/// The message of a reject decision.
fn rejection(d: Decision) -> String {
    match d {
        Decision::Reject(m) => m,
        other => panic!("expected a reject, got {other:?}"),
    }
}

fn run(policy: &Policy) -> policy_engine::Evaluation {
    policy.evaluate(
        &session("usd", 10_000),
        &request(),
        Clock::Fixed(1_700_000_000),
    )
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let e = engine();
    let p = hostile(&e, "infinite-loop", SLOW_OK);
    let ev = run(&p);
    assert_eq!(ev.result.unwrap_err(), EvalError::FuelExhausted(11_000_000));
    assert_eq!(ev.cost.fuel_budget, 11_000_000);
    assert_eq!(ev.cost.fuel_used, 11_000_000);
}

#[test]
fn infinite_loop_with_unbounded_fuel_hits_the_deadline() {
    let e = engine();
    let p = hostile(
        &e,
        "infinite-loop",
        "fuel = 1_000_000_000_000_000\ntimeout_ms = 20",
    );
    let ev = run(&p);
    assert_eq!(ev.result.unwrap_err(), EvalError::Timeout(20));
    assert_eq!(ev.cost.timeout_ms, 20);
}

#[test]
fn host_call_loop_is_stopped() {
    let e = engine();
    let err = run(&hostile(&e, "host-call-loop", "")).result.unwrap_err();
    assert!(
        matches!(err, EvalError::FuelExhausted(_) | EvalError::Timeout(_)),
        "{err:?}"
    );
    let p = hostile(&e, "host-call-loop", "fuel = 1_000_000_000_000_000");
    assert_eq!(run(&p).result.unwrap_err(), EvalError::Timeout(50));
}

#[test]
fn memory_growth_stops_at_the_cap() {
    let e = engine();
    let ev = run(&hostile(&e, "memory-growth", SLOW_OK));
    assert_eq!(
        ev.result.unwrap_err(),
        EvalError::MemoryLimit(10 * 1024 * 1024)
    );
    assert_eq!(ev.cost.memory_cap_bytes, 10 * 1024 * 1024);
    assert!(ev.cost.peak_memory_bytes > 8 * 1024 * 1024, "{:?}", ev.cost);
    assert!(
        ev.cost.peak_memory_bytes <= 10 * 1024 * 1024,
        "{:?}",
        ev.cost
    );

    let ev = run(&hostile(
        &e,
        "memory-growth",
        "memory_bytes = 4_194_304\ntimeout_ms = 10_000",
    ));
    assert_eq!(
        ev.result.unwrap_err(),
        EvalError::MemoryLimit(4 * 1024 * 1024)
    );
    assert!(
        ev.cost.peak_memory_bytes <= 4 * 1024 * 1024,
        "{:?}",
        ev.cost
    );
}

#[test]
fn single_use_allocator_reuses_freed_and_grown_memory_in_place() {
    let e = engine();
    const LONG: &str = "timeout_ms = 20_000\nfuel = 4_000_000_000";
    // 256 MiB of 1 MiB blocks, each freed before the next, under a 10 MiB cap.
    let ev = run(&hostile(&e, "alloc-churn", LONG));
    let msg = rejection(ev.result.unwrap_or_else(|err| panic!("alloc-churn: {err}")));
    assert!(msg.starts_with("churned "), "{msg}");
    assert!(ev.cost.peak_memory_bytes < 4 << 20, "{:?}", ev.cost);
    // A Vec pushed to 6 MiB (capacity 8 MiB) grows in place: growing by copying
    // would hold the 4 MiB and 8 MiB buffers at once, past the 10 MiB cap.
    let ev = run(&hostile(&e, "vec-growth", LONG));
    let msg = rejection(ev.result.unwrap_or_else(|err| panic!("vec-growth: {err}")));
    assert_eq!(msg, format!("grew {}", 6 << 20));
    assert!(ev.cost.peak_memory_bytes < 10 << 20, "{:?}", ev.cost);
}

#[test]
fn deep_recursion_panic_and_unreachable_trap() {
    let e = engine();
    for mode in ["deep-recursion", "panic", "unreachable"] {
        let err = run(&hostile(&e, mode, "")).result.unwrap_err();
        assert!(matches!(err, EvalError::Trap(_)), "{mode}: {err:?}");
    }
    // The SDK logs a panic's message and where it happened before the trap.
    let evaluation = run(&hostile(&e, "panic", ""));
    let logged = evaluation.logs.last().expect("the panic is logged");
    assert_eq!(logged.level, "error");
    assert_eq!(logged.message, "the policy panicked: a policy bug");
    let location = &logged.fields[0];
    assert_eq!(location.0, "location");
    assert!(location.1.contains("hostile/src/lib.rs:"), "{location:?}");
}

#[test]
fn oversized_output_is_refused() {
    let e = engine();
    let err = run(&hostile(&e, "huge-message", SLOW_OK))
        .result
        .unwrap_err();
    assert!(
        matches!(&err, EvalError::OutputTooLarge(m) if m.contains("100000 bytes")),
        "{err:?}"
    );
    let err = run(&hostile(&e, "metadata-flood", SLOW_OK))
        .result
        .unwrap_err();
    assert!(
        matches!(&err, EvalError::OutputTooLarge(m) if m.contains("1000 coupon metadata entries")),
        "{err:?}"
    );
}

#[test]
fn guard_refuses_what_stripe_would() {
    let e = engine();
    let caps = Caps::default();
    for (mode, rule) in [
        ("nan-percent", "percent_out_of_range"),
        ("negative-percent", "percent_out_of_range"),
        ("amount-above-subtotal", "amount_above_subtotal"),
        ("wrong-currency", "currency_mismatch"),
        ("huge-coupon-name", "invalid_name"),
        ("huge-coupon-id", "invalid_coupon_id"),
    ] {
        let s = session("usd", 10_000);
        let ev = hostile(&e, mode, "").evaluate(&s, &request(), Clock::System);
        let decision = ev.result.unwrap_or_else(|err| panic!("{mode}: {err}"));
        let violation = guard::check(&decision, &s, &caps).unwrap_err();
        assert_eq!(violation.rule, rule, "{mode}: {violation}");
    }
}

#[test]
fn log_flood_is_bounded_and_counted() {
    let e = engine();
    let ev = run(&hostile(&e, "log-flood", SLOW_OK));
    assert!(matches!(ev.result.unwrap(), Decision::Keep));
    assert_eq!(ev.logs.len(), 100);
    assert_eq!(ev.cost.logs_dropped, 4_900);

    let ev = run(&hostile(
        &e,
        "log-flood",
        "log_records = 10_000\nlog_bytes = 1_000\ntimeout_ms = 10_000",
    ));
    let bytes: usize = ev.logs.iter().map(|l| l.message.len() + 1 + 4).sum();
    assert!(bytes <= 1_000 + 5, "{bytes}");
    assert_eq!(ev.logs.len() + ev.cost.logs_dropped, 5_000);
}

#[test]
fn every_evaluation_starts_from_a_fresh_instance() {
    let e = engine();
    let p = hostile(&e, "count-calls", "");
    for _ in 0..5 {
        let ev = run(&p);
        assert_eq!(rejection(ev.result.unwrap()), "call 1");
        assert!(ev.cost.fuel_used > 0);
        assert!(ev.cost.fuel_used < ev.cost.fuel_budget);
        assert!(ev.cost.peak_memory_bytes > 0);
    }
}

#[test]
fn a_hostile_policy_does_not_disturb_a_healthy_one() {
    let e = engine();
    let bad = hostile(&e, "infinite-loop", "fuel = 1_000_000_000_000_000");
    let good = hostile(&e, "count-calls", "");
    let spinner = std::thread::spawn(move || {
        (0..4)
            .map(|_| run(&bad).result.unwrap_err())
            .collect::<Vec<_>>()
    });
    for _ in 0..50 {
        assert_eq!(rejection(run(&good).result.unwrap()), "call 1");
    }
    for err in spinner.join().unwrap() {
        assert_eq!(err, EvalError::Timeout(50));
    }
}

#[test]
fn refused_at_load_with_the_reason() {
    let e = engine();
    let settings = || PolicySettings::from_toml("routes = [\"/x\"]").unwrap();
    match e.load("ungranted", &component("ungranted-import"), settings()) {
        Err(err @ LoadError::UngrantedImport(_)) => {
            assert!(err.to_string().contains("evil:net/socket"), "{err}")
        }
        other => panic!("{other:?}"),
    }
    match e.load("wrong", &component("wrong-world"), settings()) {
        Err(err @ LoadError::WrongWorld(_)) => {
            assert!(err.to_string().contains("evaluate"), "{err}")
        }
        other => panic!("{other:?}"),
    }
    match e.load("signature", &component("wrong-signature"), settings()) {
        Err(err @ LoadError::WrongWorld(_)) => assert!(
            err.to_string().contains(
                "`evaluate: func(session: checkout-session, request: policy-request) -> decision`"
            ),
            "{err}"
        ),
        other => panic!("{other:?}"),
    }
    match e.load("later", &component("other-version"), settings()) {
        Err(LoadError::WrongWorld(why)) => assert_eq!(
            why,
            "it imports stripe-discount:policy/host@0.2.0, another version of the contract; \
             this host offers stripe-discount:policy/host@0.1.0: rebuild it against this \
             host's wit/discount-policy.wit"
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        e.load("core", &component("not-a-component"), settings()),
        Err(LoadError::CoreModule)
    ));
    assert!(matches!(
        e.load("text", b"(component)", settings()),
        Err(LoadError::NotWasm(_))
    ));
    let mut truncated = component("hostile");
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(
        e.load("truncated", &truncated, settings()),
        Err(LoadError::Compile(_))
    ));
}

#[test]
fn instance_table_and_memory_counts_are_capped() {
    let e = engine();
    let settings = |limits: &str| {
        PolicySettings::from_toml(&format!("routes = [\"/x\"]\n[limits]\n{limits}\n")).unwrap()
    };
    for limits in [
        "instances = 1",
        "memories = 0",
        "tables = 0",
        "table_elements = 0",
    ] {
        match e.load("counts", &component("hostile"), settings(limits)) {
            Err(LoadError::Instantiate(_)) => {}
            other => panic!("{limits}: {other:?}"),
        }
    }
    let defaults = Limits::default();
    let p = e
        .load("counts", &component("hostile"), settings(""))
        .unwrap();
    assert_eq!(p.limits, defaults);
}

/// A warm instance has run its start-up code only: its statics are as fresh as those
/// of an instance made on the request path (it sees `call 1`).
#[test]
fn warm_instances_are_fresh_too() {
    let e = engine();
    let p = hostile(&e, "count-calls", "warm_instances = 2");
    std::thread::sleep(std::time::Duration::from_millis(300));
    for _ in 0..4 {
        let ev = run(&p);
        assert_eq!(rejection(ev.result.unwrap()), "call 1");
    }
}

/// A deferred teardown holds its instance's pool slot until it is dropped. Meanwhile
/// other evaluations get other slots and start fresh; once it is dropped, its slot
/// serves again, reset (`call 1`), warm instances or not.
#[test]
fn a_deferred_teardown_holds_its_slot_until_dropped() {
    let e = PolicyEngine::new(EngineConfig {
        cache_dir: Some(workspace().join("target/test-policy-cache")),
        pool: PoolSettings {
            instances: 2,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let p = hostile(&e, "count-calls", "");
    let deferred = || {
        let (ev, teardown) =
            p.evaluate_deferring_teardown(&session("usd", 10_000), &request(), Clock::Fixed(0));
        assert_eq!(rejection(ev.result.unwrap()), "call 1");
        teardown
    };
    let first = deferred();
    let second = deferred();
    assert!(
        matches!(attempt(&p, false), Attempt::Busy),
        "both slots are held by their teardowns"
    );
    drop(first);
    for _ in 0..3 {
        let Attempt::Done(ev, teardown) = attempt(&p, false) else {
            panic!("the dropped teardown gave its slot back");
        };
        assert_eq!(rejection(ev.result.unwrap()), "call 1");
        assert!(
            matches!(attempt(&p, false), Attempt::Busy),
            "held again until this teardown is dropped"
        );
        drop(teardown);
    }
    drop(second);
    let held: Vec<_> = (0..2).map(|_| deferred()).collect();
    assert!(matches!(attempt(&p, false), Attempt::Busy));
    drop(held);

    // With warm instances, the refill takes a slot too once a teardown gives one back.
    let warm = hostile(&e, "count-calls", "warm_instances = 1");
    drop(p);
    std::thread::sleep(std::time::Duration::from_millis(300));
    for _ in 0..4 {
        let (ev, teardown) =
            warm.evaluate_deferring_teardown(&session("usd", 10_000), &request(), Clock::Fixed(0));
        assert_eq!(rejection(ev.result.unwrap()), "call 1");
        drop(teardown);
    }
}

/// Whether `/proc/swaps` lists a swap device or file.
fn swap_on() -> bool {
    std::fs::read_to_string("/proc/swaps").is_ok_and(|t| t.lines().nth(1).is_some())
}

/// This process's `VmSwap`, in kB.
fn swapped_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSwap:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Pages out every private writable mapping of this process (`MADV_PAGEOUT`), as
/// memory pressure would: with swap, their anonymous pages go to it.
fn page_out_everything() {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (range, perms) = (fields.next().unwrap(), fields.next().unwrap());
        if perms != "rw-p" {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = usize::from_str_radix(start, 16).unwrap();
        let end = usize::from_str_radix(end, 16).unwrap();
        // SAFETY: advice only; MADV_PAGEOUT never changes what the memory holds.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT) };
    }
}

/// A page a policy writes during an evaluation, swapped out before its instance is
/// dropped, does not reach the slot's next instance. `PAGEMAP_SCAN` sees only present
/// pages, so with swap the pool decommits instead (`PagemapScan::Auto`).
///
/// It always checks the reset the pool chose for this machine. It pages the process
/// out only with `ISOLATION_SWAP_CHECK` set, as `scripts/check-swap-isolation.sh` does
/// after turning on a swap file; `ISOLATION_PAGEMAP_SCAN=yes` forces the scan on, to
/// show what it would leak.
#[test]
fn a_page_swapped_out_during_an_evaluation_does_not_reach_the_next_one() {
    let pagemap_scan = match std::env::var("ISOLATION_PAGEMAP_SCAN").as_deref() {
        Ok("yes") => PagemapScan::Yes,
        _ => PagemapScan::Auto,
    };
    let e = PolicyEngine::new(EngineConfig {
        cache_dir: Some(workspace().join("target/test-policy-cache")),
        pool: PoolSettings {
            pagemap_scan,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let scan_available = wasmtime::PoolingAllocationConfig::is_pagemap_scan_available();
    let reset = e.memory_reset().expect("pooled");
    match (scan_available, swap_on()) {
        (false, _) => assert_eq!(reset, MemoryReset::Decommit(DecommitReason::NoPagemapScan)),
        (true, false) => assert_eq!(reset, MemoryReset::DirtyPages),
        (true, true) if pagemap_scan == PagemapScan::Yes => {
            assert_eq!(reset, MemoryReset::DirtyPages)
        }
        // The scan stays only where a cgroup sets `memory.swap.max` to 0.
        (true, true) => assert!(
            matches!(
                reset,
                MemoryReset::Decommit(DecommitReason::Swap) | MemoryReset::DirtyPages
            ),
            "{reset:?}"
        ),
    }
    // Paging this whole process out would slow the suite's other tests: the script only.
    if std::env::var_os("ISOLATION_SWAP_CHECK").is_none() {
        return;
    }
    // `auto` kept the scan: this process cannot swap, which paging out must confirm.
    let cannot_swap = pagemap_scan == PagemapScan::Auto && reset == MemoryReset::DirtyPages;
    let p = hostile(
        &e,
        "count-calls",
        "timeout_ms = 500\nfuel = 1_000_000_000_000_000",
    );
    let mut spin = serde_json::Map::new();
    spin.insert("spin".into(), true.into());
    let spin = mapping::policy_request("/count-calls", &spin);
    for round in 0..3 {
        let pager = std::thread::spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(200));
            page_out_everything();
            swapped_kb()
        });
        let ev = p.evaluate(&session("usd", 10_000), &spin, Clock::Fixed(1_700_000_000));
        assert_eq!(ev.result.unwrap_err(), EvalError::Timeout(500));
        let swapped = pager.join().unwrap();
        match cannot_swap {
            true => assert_eq!(
                swapped, 0,
                "round {round}: `auto` kept the scan, yet pages swapped"
            ),
            false => assert!(swapped > 0, "round {round}: nothing went to swap"),
        }
        let next = run(&p).result;
        assert!(
            matches!(&next, Ok(Decision::Reject(m)) if m == "call 1"),
            "round {round}: the next instance did not start fresh ({swapped} kB swapped): {next:?}"
        );
    }
}

/// `spin-when-asked` on a request with (or without) `spin` in its input.
fn spin_request(spin: bool) -> wit::PolicyRequest {
    let mut input = serde_json::Map::new();
    if spin {
        input.insert("spin".into(), true.into());
    }
    mapping::policy_request("/spin-when-asked", &input)
}

/// `try_evaluate_within` with the quick threshold as the budget.
fn attempt(p: &Policy, spin: bool) -> Attempt {
    p.try_evaluate_within(
        &session("usd", 10_000),
        &spin_request(spin),
        Clock::Fixed(0),
        QUICK_EVALUATION,
    )
}

/// The evaluation of an attempt that must have completed.
fn done(a: Attempt) -> policy_engine::Evaluation {
    match a {
        Attempt::Done(evaluation, _) => evaluation,
        other => panic!("expected a complete evaluation, got {other:?}"),
    }
}

/// Quick evaluations until `p` is reliably quick: at least [`QUICK_STREAK`], and a few
/// streaks' worth at most (CPU time over the threshold restarts it, as on a busy machine).
fn earn_the_streak(p: &Policy) {
    let mut runs = 0;
    while !p.is_reliably_quick() {
        runs += 1;
        assert!(
            runs < 10 * QUICK_STREAK,
            "never reliably quick: {runs} runs"
        );
        assert!(matches!(done(attempt(p, false)).result, Ok(Decision::Keep)));
    }
    assert!(runs >= QUICK_STREAK || runs == 0, "earned in {runs} runs");
}

#[test]
fn a_version_earns_a_quick_streak_and_one_slow_evaluation_ends_it() {
    let e = engine();
    let p = hostile(&e, "spin-when-asked", "");
    let quick = |p: &Policy| {
        p.evaluate(
            &session("usd", 10_000),
            &spin_request(false),
            Clock::Fixed(0),
        )
    };
    assert!(
        !p.is_reliably_quick(),
        "a new version has shown nothing yet"
    );
    earn_the_streak(&p);
    // A clone shares the record: it is the same version.
    assert!(p.clone().is_reliably_quick());

    let slow = p.evaluate(
        &session("usd", 10_000),
        &spin_request(true),
        Clock::Fixed(0),
    );
    assert_eq!(
        slow.result.unwrap_err(),
        EvalError::FuelExhausted(11_000_000)
    );
    assert!(!p.is_reliably_quick(), "a slow evaluation ends the streak");
    assert!(matches!(quick(&p).result, Ok(Decision::Keep)));
    assert!(!p.is_reliably_quick(), "one quick run does not restore it");
}

/// `spin-when-asked` with fuel and a deadline far beyond an inline budget.
fn spinner_stopped_by_the_budget(e: &PolicyEngine) -> Policy {
    hostile(
        e,
        "spin-when-asked",
        "fuel = 1_000_000_000_000_000\ntimeout_ms = 5_000",
    )
}

#[test]
fn a_version_stopped_at_its_inline_budget_loses_its_streak() {
    let e = engine();
    let p = spinner_stopped_by_the_budget(&e);
    // A stop while the thread was preempted keeps the streak, and a busy machine can
    // preempt this one: a few tries, each after earning the streak again.
    let ended = (0..5).any(|_| {
        earn_the_streak(&p);
        assert!(matches!(attempt(&p, true), Attempt::OverBudget));
        !p.is_reliably_quick()
    });
    assert!(ended, "a policy stopped at the budget kept its streak");
}

#[test]
fn a_budgeted_attempt_stops_the_policy_at_the_budget_not_its_deadline() {
    let e = engine();
    let p = spinner_stopped_by_the_budget(&e);
    let started = std::time::Instant::now();
    assert!(matches!(attempt(&p, true), Attempt::OverBudget));
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1_000),
        "stopped after {:?}",
        started.elapsed()
    );
    // Within budget, the policy's own limits still decide.
    let fuel_bound = hostile(&e, "infinite-loop", SLOW_OK);
    let ev = done(fuel_bound.try_evaluate_within(
        &session("usd", 10_000),
        &request(),
        Clock::Fixed(0),
        std::time::Duration::from_secs(5),
    ));
    assert_eq!(ev.result.unwrap_err(), EvalError::FuelExhausted(11_000_000));
    // And a deadline shorter than the budget is the policy's own timeout.
    let short = hostile(
        &e,
        "infinite-loop",
        "fuel = 1_000_000_000_000_000\ntimeout_ms = 20",
    );
    let ev = done(short.try_evaluate_within(
        &session("usd", 10_000),
        &request(),
        Clock::Fixed(0),
        std::time::Duration::from_secs(5),
    ));
    assert_eq!(ev.result.unwrap_err(), EvalError::Timeout(20));
}

#[test]
fn a_budgeted_attempt_never_waits_for_a_pool_slot() {
    let e = PolicyEngine::new(EngineConfig {
        cache_dir: Some(workspace().join("target/test-policy-cache")),
        pool: policy_engine::PoolSettings {
            instances: 1,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let p = hostile(
        &e,
        "spin-when-asked",
        "timeout_ms = 2_000\nfuel = 100_000_000_000",
    );
    let spinning = std::sync::atomic::AtomicBool::new(true);
    let busy = std::thread::scope(|s| {
        let spinner = s.spawn(|| {
            let ev = p.evaluate(
                &session("usd", 10_000),
                &spin_request(true),
                Clock::Fixed(0),
            );
            spinning.store(false, std::sync::atomic::Ordering::SeqCst);
            ev
        });
        // While the only slot spins, an attempt answers at once with nothing.
        let mut busy = 0;
        while spinning.load(std::sync::atomic::Ordering::SeqCst) {
            let started = std::time::Instant::now();
            if matches!(attempt(&p, false), Attempt::Busy) {
                busy += 1;
                assert!(started.elapsed() < std::time::Duration::from_millis(500));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(
            spinner.join().unwrap().result.unwrap_err(),
            EvalError::Timeout(2_000)
        );
        busy
    });
    assert!(busy > 0, "the busy slot was never seen");
    // Done, or over the 1 ms budget on a busy machine: either way it had a slot.
    assert!(!matches!(attempt(&p, false), Attempt::Busy));
}
