//! `discount-host`: the storefront-facing server.

use anyhow::Context;
use clap::Parser;
use discount_host::app::{AppState, Shared};
use discount_host::audit::AuditLog;
use discount_host::auth::AdminToken;
use discount_host::compile::{self, Compiler};
use discount_host::config::{HostConfig, LogFormat, LogSettings, ADMIN_TOKEN_ENV, SECRET_KEY_ENV};
use discount_host::locks::SessionLocks;
use discount_host::registry::{Registry, Trigger};
use discount_host::watch;
use policy_engine::{DecommitReason, EngineConfig, MemoryReset, PolicyEngine};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use stripe_checkout::{ClientConfig, StripeClient};

/// mimalloc: a request allocates and frees hundreds of small JSON strings, where
/// glibc's allocator spends a third of the host's time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serves storefront discount endpoints backed by WebAssembly policies.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML).
    #[arg(long, env = "DISCOUNT_HOST_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides the file).
    #[arg(long, env = "DISCOUNT_HOST_LISTEN")]
    listen: Option<SocketAddr>,
    /// Policy directory (overrides the file).
    #[arg(long, env = "DISCOUNT_HOST_POLICY_DIR")]
    policy_dir: Option<PathBuf>,
    /// Compilation cache directory (overrides the file).
    #[arg(long, env = "DISCOUNT_HOST_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Stripe API base URL (overrides the file); only used with a secret key.
    #[arg(long, env = "STRIPE_API_BASE")]
    stripe_api_base: Option<String>,
    /// Address of the embedded emulator, used when no secret key is set.
    #[arg(long, env = "DISCOUNT_HOST_EMULATOR_LISTEN")]
    emulator_listen: Option<SocketAddr>,
    /// Do not create demo sessions in the embedded emulator.
    #[arg(long)]
    no_demo: bool,
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    if std::env::args_os().nth(1).as_deref() == Some(compile::SUBCOMMAND.as_ref()) {
        return Ok(compile::run_job());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve())
        .map(|()| std::process::ExitCode::SUCCESS)
}

async fn serve() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => HostConfig::from_file(path)?,
        None => HostConfig::default(),
    };
    init_logging(&config.log);
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.policy_dir {
        config.policy_dir = dir;
    }
    if let Some(dir) = args.cache_dir {
        config.cache_dir = Some(dir);
    }
    if let Some(base) = args.stripe_api_base {
        config.stripe.api_base = base;
    }
    if let Some(listen) = args.emulator_listen {
        config.emulator.listen = listen;
    }

    let secret_key = std::env::var(SECRET_KEY_ENV).ok().filter(|k| !k.is_empty());
    let (api_base, secret_key, emulator) = match secret_key {
        Some(key) => (config.stripe.api_base.clone(), key, None),
        None => {
            let running = stripe_emulator::Emulator::new()
                .start(config.emulator.listen)
                .await
                .with_context(|| {
                    format!(
                        "starting the embedded Stripe emulator on {}",
                        config.emulator.listen
                    )
                })?;
            tracing::info!(url = %running.base_url(), "no {SECRET_KEY_ENV} set: using the embedded Stripe emulator");
            (
                running.base_url(),
                "sk_test_emulator".to_string(),
                Some(running),
            )
        }
    };
    let s = &config.stripe;
    let mut client_config = ClientConfig::new(secret_key);
    client_config.api_base = api_base.clone();
    client_config.max_retries = s.max_retries;
    client_config.initial_network_retry_delay = Duration::from_millis(s.initial_retry_delay_ms);
    client_config.max_network_retry_delay = Duration::from_millis(s.max_retry_delay_ms);
    client_config.connect_timeout = Duration::from_millis(s.connect_timeout_ms);
    client_config.request_timeout = Duration::from_millis(s.request_timeout_ms);
    let stripe = StripeClient::new(client_config.clone())?;
    if stripe.is_proxied() {
        tracing::info!(api_base = %api_base, "Stripe calls go through the proxy the environment names");
    }

    let engine = PolicyEngine::new(EngineConfig {
        limits: config.limits.clone(),
        cache_dir: config.cache_dir.clone(),
        cache_max_bytes: config.cache_max_bytes,
        pool: config.pool.clone(),
    })?;
    match engine.memory_reset() {
        Some(reset @ MemoryReset::Decommit(DecommitReason::Swap)) => tracing::warn!(
            memory_reset = %reset,
            "instance pool: every evaluation faults its memory in again; turn swap off for this \
             process (a cgroup memory.swap.max of 0) to keep the dirty-page reset"
        ),
        Some(reset) => tracing::info!(memory_reset = %reset, "instance pool"),
        None => {}
    }
    let registry = Arc::new(
        Registry::new(engine, config.policy_dir.clone())
            .with_settle(Duration::from_millis(config.reload.settle_ms))
            .with_compiler(Compiler::this_executable(
                config.reload.compile_process,
                Duration::from_millis(config.reload.compile_timeout_ms),
            )),
    );
    let initial = {
        let registry = registry.clone();
        tokio::task::spawn_blocking(move || {
            let report = registry.reload(Trigger::Start);
            // A cache already over its cap (a lowered cap, an older host's files) is
            // trimmed now, not at the next compilation, which may never come.
            registry.engine().prune_cache();
            report
        })
        .await?
    };
    tracing::info!(loaded = ?initial.loaded, failed = ?initial.failed, dir = %config.policy_dir.display(), "policies loaded");
    // Hot reload: directory events, polling, SIGHUP (and POST /admin/reload).
    let watching = watch::start(registry.clone(), &config.reload);
    // Catch anything that changed between the initial scan and the watch.
    watching.reloader.hint(Trigger::Watch);
    watch::spawn_sighup(watching.reloader.clone());

    let demo = match (&emulator, config.emulator.seed_demo && !args.no_demo) {
        (Some(_), true) => discount_host::demo::seed(&stripe).await?,
        _ => Vec::new(),
    };

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (audit, audit_writer) = AuditLog::start(&config.audit).await?;
    let admin_token = AdminToken::new(std::env::var(ADMIN_TOKEN_ENV).ok());
    if !admin_token.enabled() {
        tracing::info!("no {ADMIN_TOKEN_ENV} set: the admin API and dashboard are off");
    }
    let threads = discount_host::serve::thread_count(config.serving_threads);
    let limits = discount_host::serve::ConnectionLimits {
        header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
        shutdown_grace: Duration::from_millis(config.shutdown_grace_ms),
    };
    let shared = {
        let (config, registry, audit) = (Arc::new(config), registry.clone(), audit.clone());
        let inline = Arc::new(discount_host::evaluate::InlineSlots::new(threads));
        let locks = Arc::new(SessionLocks::default());
        move |stripe: StripeClient| Shared {
            config: config.clone(),
            registry: registry.clone(),
            stripe,
            locks: locks.clone(),
            audit: audit.clone(),
            admin_token: admin_token.clone(),
            inline: inline.clone(),
        }
    };
    drop(stripe);
    let mut serving = discount_host::serve::start(listener, threads, limits, move || {
        // Each thread's own connection pool: its connections are driven on that thread.
        Ok(AppState::new(shared(StripeClient::new(
            client_config.clone(),
        )?)))
    })?;
    println!("discount-host ready: listen=http://{addr} stripe={api_base}");
    let routes: std::collections::BTreeSet<String> =
        registry.snapshot().routes.keys().cloned().collect();
    for route in &routes {
        println!("  route POST http://{addr}{route}");
    }
    for session in &demo {
        println!("  demo session {} ({})", session.id, session.note);
    }
    if let Some(session) = demo.first() {
        // The README's example route when it is served.
        let readme = "/apply-cart-discount";
        let route = match routes.first() {
            Some(first) if !routes.contains(readme) => first.as_str(),
            _ => readme,
        };
        println!("\nTry it:\n  curl -s -X POST http://{addr}{route} -H 'Content-Type: application/json' -d '{{\"checkout_session_id\":\"{}\"}}'\n", session.id);
    }
    use std::io::Write;
    std::io::stdout().flush().ok();

    let served = serving.until(shutdown_signal()).await;
    serving.shutdown().await;
    // Every in-flight request has finished: write out the audit queue.
    audit.close();
    if let Some(writer) = audit_writer {
        tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .ok();
    }
    drop(watching);
    if let Some(emulator) = emulator {
        emulator.shutdown().await;
    }
    served
}

/// Logs to stderr, as text or JSON (`[log] format`, or `DISCOUNT_HOST_LOG_FORMAT`).
fn init_logging(settings: &LogSettings) {
    let json = match std::env::var("DISCOUNT_HOST_LOG_FORMAT") {
        Ok(v) => v.eq_ignore_ascii_case("json"),
        Err(_) => settings.format == LogFormat::Json,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}
