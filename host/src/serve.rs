//! Serving threads: the storefront's connections are served by `serving_threads`
//! single-threaded tokio runtimes, each with its own Stripe connection pool. One
//! acceptor hands new connections out in turn. A request then stays on one thread
//! from its first byte to its response: no work stealing, no wake-ups across threads.

use crate::app::{self, AppState};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// How long clients get: to send their headers, and to finish at shutdown.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A connection whose next request's headers take longer is closed.
    pub header_read_timeout: Duration,
    /// At shutdown, connections still open after this are closed.
    pub shutdown_grace: Duration,
}

/// The threads the configuration asks for: `0` is one per CPU.
pub fn thread_count(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Running serving threads and their acceptor.
pub struct Serving {
    threads: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    acceptor: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Serves the connections handed to this thread until `stopped`, then lets their
/// in-flight requests finish, for at most the shutdown grace.
async fn serve_connections(
    mut connections: mpsc::UnboundedReceiver<Connection>,
    app: axum::Router,
    mut stopped: watch::Receiver<bool>,
    limits: ConnectionLimits,
) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        let handed = tokio::select! {
            handed = connections.recv() => handed,
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        // The acceptor stopped: shutdown is under way.
        let Some((stream, peer)) = handed else { break };
        let stream = match TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, %peer, "dropping a connection");
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    let open = graceful.count();
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = open,
            grace_ms = limits.shutdown_grace.as_millis() as u64,
            "shutdown grace over: closing the connections still open"
        );
    }
}

/// Starts `threads` serving threads for `listener`; `state` makes each thread's
/// state (called on that thread, inside its runtime). Returns once every thread is
/// ready. Must run inside a tokio runtime, which runs the acceptor.
pub fn start(
    listener: TcpListener,
    threads: usize,
    limits: ConnectionLimits,
    state: impl Fn() -> anyhow::Result<AppState> + Send + Sync + 'static,
) -> anyhow::Result<Serving> {
    let state = std::sync::Arc::new(state);
    let (stop, stopped) = watch::channel(false);
    let mut senders = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    for i in 0..threads.max(1) {
        let (tx, connections) = mpsc::unbounded_channel();
        senders.push(tx);
        let (state, stopped, ready) = (state.clone(), stopped.clone(), ready_tx.clone());
        let handle = std::thread::Builder::new()
            .name(format!("serve-{i}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        ready.send(Err(anyhow::Error::from(e))).ok();
                        return;
                    }
                };
                runtime.block_on(async move {
                    let app = match state() {
                        Ok(state) => app::router(state),
                        Err(e) => {
                            ready.send(Err(e)).ok();
                            return;
                        }
                    };
                    ready.send(Ok(())).ok();
                    drop(ready);
                    serve_connections(connections, app, stopped, limits).await;
                });
            })?;
        handles.push(handle);
    }
    drop(ready_tx);
    for _ in 0..handles.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                stop.send(true).ok();
                return Err(e.context("starting a serving thread"));
            }
            Err(_) => anyhow::bail!("a serving thread ended while starting"),
        }
    }
    let handoffs = senders
        .into_iter()
        .enumerate()
        .map(|(thread, connections)| Handoff {
            thread,
            connections,
            handed: crate::metrics::global()
                .connections
                .with_label_values(&[thread.to_string().as_str()]),
        })
        .collect();
    let acceptor = tokio::spawn(accept(listener, handoffs, stopped));
    Ok(Serving {
        threads: handles,
        stop,
        acceptor: Some(acceptor),
    })
}

/// A connection on its way to a serving thread.
type Connection = (std::net::TcpStream, SocketAddr);

/// One serving thread, as the acceptor sees it.
struct Handoff {
    thread: usize,
    connections: mpsc::UnboundedSender<Connection>,
    handed: prometheus::IntCounter,
}

/// Accepts connections and hands them to the serving threads in turn, until stopped.
/// Fails once every serving thread has stopped.
async fn accept(
    listener: TcpListener,
    mut threads: Vec<Handoff>,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|stop| *stop) => return Ok(()),
        };
        let (stream, peer) = match accepted {
            Ok(connection) => connection,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::error!(error = %e, "accepting a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut connection = match stream.into_std() {
            Ok(stream) => (stream, peer),
            Err(e) => {
                tracing::warn!(error = %e, %peer, "dropping a connection");
                continue;
            }
        };
        loop {
            anyhow::ensure!(!threads.is_empty(), "every serving thread stopped");
            next %= threads.len();
            // Counted first: a thread may serve the connection before `send` returns,
            // and a scrape on it then counts itself.
            threads[next].handed.inc();
            match threads[next].connections.send(connection) {
                Ok(()) => {
                    next += 1;
                    break;
                }
                Err(mpsc::error::SendError(back)) => {
                    let gone = threads.remove(next);
                    tracing::error!(
                        thread = gone.thread,
                        "a serving thread stopped: the others take its connections"
                    );
                    connection = back;
                }
            }
        }
    }
}

/// Errors of one connection, not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

impl Serving {
    /// Serves until `signal` completes, or fails once every serving thread has stopped.
    pub async fn until(
        &mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let Some(acceptor) = self.acceptor.as_mut() else {
            return Ok(());
        };
        tokio::select! {
            () = signal => Ok(()),
            ended = acceptor => {
                self.acceptor = None;
                ended?
            }
        }
    }

    /// Stops accepting, lets every in-flight request finish, and waits for the threads.
    pub async fn shutdown(mut self) {
        self.stop.send(true).ok();
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.await.ok();
        }
        let threads = std::mem::take(&mut self.threads);
        tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("a serving thread panicked");
                }
            }
        })
        .await
        .ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Handoffs for `n` threads, with their receiving ends.
    fn handoffs(n: usize) -> (Vec<Handoff>, Vec<mpsc::UnboundedReceiver<Connection>>) {
        (0..n)
            .map(|thread| {
                let (connections, rx) = mpsc::unbounded_channel();
                let handed = prometheus::IntCounter::new("handed", "handed").unwrap();
                let handoff = Handoff {
                    thread,
                    connections,
                    handed,
                };
                (handoff, rx)
            })
            .unzip()
    }

    #[tokio::test]
    async fn connections_go_round_and_skip_a_stopped_thread() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (threads, mut rx) = handoffs(3);
        let counters: Vec<_> = threads.iter().map(|t| t.handed.clone()).collect();
        drop(rx.remove(1));
        let (stop, stopped) = watch::channel(false);
        let acceptor = tokio::spawn(accept(listener, threads, stopped));
        let mut clients = Vec::new();
        for _ in 0..6 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        for live in &mut rx {
            for _ in 0..3 {
                let (stream, peer) = live.recv().await.unwrap();
                assert_eq!(stream.local_addr().unwrap(), addr);
                assert!(peer.ip().is_loopback());
            }
        }
        // The stopped thread was offered one (counted as it was handed over), then skipped.
        let handed: Vec<u64> = counters.iter().map(|c| c.get()).collect();
        assert_eq!(handed, [3, 1, 3]);
        stop.send(true).unwrap();
        acceptor.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn the_acceptor_fails_once_every_thread_has_stopped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (threads, rx) = handoffs(2);
        drop(rx);
        let (_stop, stopped) = watch::channel(false);
        let acceptor = tokio::spawn(accept(listener, threads, stopped));
        let _client = TcpStream::connect(addr).await.unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(10), acceptor)
            .await
            .expect("the acceptor ends")
            .unwrap();
        assert!(ended
            .unwrap_err()
            .to_string()
            .contains("every serving thread stopped"));
    }

    #[test]
    fn zero_threads_is_one_per_cpu() {
        assert_eq!(thread_count(3), 3);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(thread_count(0), cpus);
    }
}
