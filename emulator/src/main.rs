//! The `stripe-emulator` binary: serves the emulator on a TCP address.

use clap::Parser;
use stripe_emulator::Emulator;

/// A stateful emulator of Stripe's Checkout Session API (test mode only).
#[derive(Debug, Parser)]
#[command(name = "stripe-emulator", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(
        long,
        env = "STRIPE_EMULATOR_LISTEN",
        default_value = "127.0.0.1:12111"
    )]
    listen: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    // The first line on stdout tells scripts where to connect.
    println!("stripe-emulator listening on http://{addr}");
    tracing::info!(%addr, "stripe-emulator listening");
    let em = Emulator::new();
    tokio::select! {
        r = em.serve(listener) => r?,
        _ = tokio::signal::ctrl_c() => tracing::info!("shutting down"),
    }
    Ok(())
}
