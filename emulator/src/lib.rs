//! A stateful emulator of Stripe's Checkout Session endpoints, for tests and demos.
//!
//! It speaks Stripe's REST protocol (form-encoded bodies with bracket nesting, Bearer or
//! Basic auth, `Stripe-Version`, `Idempotency-Key`, `Request-Id`, Stripe's error shapes)
//! for customers, coupons, products, prices, shipping rates and Checkout Sessions,
//! including the private-preview server-side discount update. Totals come from
//! [`stripe_checkout::totals`]. A control API under `/_emulator` injects faults, shows the
//! request log and plays the customer's part.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let running = stripe_emulator::Emulator::new().start("127.0.0.1:0").await?;
//! println!("api_base = {}", running.base_url());
//! # Ok(()) }
//! ```

#![recursion_limit = "256"]

pub mod api;
pub mod checkout;
pub mod control;
pub mod coupons;
pub mod currency;
pub mod customers;
pub mod errors;
pub mod expand;
pub mod faults;
pub mod form;
pub mod idempotency;
pub mod params;
pub mod prices;
pub mod requestlog;
pub mod store;

use axum::Router;
use faults::{Fault, FaultSpec, Faults};
use idempotency::Idempotency;
use requestlog::{LoggedRequest, RequestLog};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use store::Store;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt;

/// Everything the emulator holds, behind one lock.
#[derive(Debug, Default)]
pub struct Inner {
    /// The emulated account's objects.
    pub store: Store,
    /// Saved idempotent results.
    pub idem: Idempotency,
    /// Armed faults.
    pub faults: Faults,
    /// The `/v1` request log.
    pub log: RequestLog,
}

/// The emulator: cheap to clone, all clones share one state.
#[derive(Debug, Clone, Default)]
pub struct Emulator {
    inner: Arc<Mutex<Inner>>,
}

/// The error hyper sees when a response must become a dropped connection.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for Dropped {}

impl Emulator {
    /// An emulator with an empty account.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` with the state locked (a poisoned lock is recovered, never a panic).
    pub fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// The HTTP API (`/v1/...` and `/_emulator/...`) as an axum router.
    ///
    /// Served with plain `axum::serve`, a `drop_connection` fault aborts the response
    /// after its headers; [`Emulator::serve`] closes the socket before any byte instead.
    pub fn router(&self) -> Router {
        control::routes()
            .fallback(api::handle)
            .layer(axum::middleware::from_fn(api::request_id_layer))
            .with_state(self.clone())
    }

    /// Serves HTTP/1.1 on `listener` until the task is dropped or an accept fails fatally.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        let (_tx, rx) = watch::channel(false);
        self.serve_until(listener, rx).await
    }

    async fn serve_until(
        self,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let app = self.router();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.changed() => return Ok(()),
            };
            let (stream, _) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait and keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let app = app.clone();
            let mut conn_shutdown = shutdown.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let app = app.clone();
                    async move {
                        let resp = match app.oneshot(req).await {
                            Ok(r) => r,
                            Err(never) => match never {},
                        };
                        if resp.extensions().get::<api::DropConnection>().is_some() {
                            Err(Dropped)
                        } else {
                            Ok(resp)
                        }
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                tokio::select! {
                    _ = conn => {}
                    _ = conn_shutdown.changed() => {}
                }
            });
        }
    }

    /// Binds `addr` (port 0 for a free port) and serves in the background.
    pub async fn start(self, addr: impl ToSocketAddrs) -> std::io::Result<RunningEmulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(self.clone().serve_until(listener, rx));
        Ok(RunningEmulator {
            addr,
            emulator: self,
            shutdown: tx,
            task,
        })
    }

    /// Every `/v1` request so far, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.with(|i| i.log.entries())
    }

    /// Arms a fault; returns it with its id, or why the spec is unusable.
    pub fn add_fault(&self, spec: FaultSpec) -> Result<Fault, String> {
        self.with(|i| i.faults.add(spec))
    }

    /// The armed faults.
    pub fn faults(&self) -> Vec<Fault> {
        self.with(|i| i.faults.list())
    }

    /// Disarms every fault; returns how many there were.
    pub fn clear_faults(&self) -> usize {
        self.with(|i| i.faults.clear())
    }

    /// The emulated Unix time.
    pub fn now(&self) -> i64 {
        self.with(|i| i.store.now())
    }

    /// Moves the emulated clock forward (sessions past `expires_at` then expire).
    pub fn advance_clock(&self, seconds: i64) {
        self.with(|i| {
            i.store.clock_offset = i.store.clock_offset.saturating_add(seconds);
            i.store.expire_due();
        })
    }

    /// Forgets every object, key, fault and logged request.
    pub fn reset(&self) {
        self.with(|i| *i = Inner::default())
    }
}

/// An emulator serving in the background; dropping it does not stop it, [`RunningEmulator::shutdown`] does.
#[derive(Debug)]
pub struct RunningEmulator {
    addr: SocketAddr,
    emulator: Emulator,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningEmulator {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for a Stripe client's `api_base`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The emulator, to inspect or control it directly.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Stops accepting, closes open connections and waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}
