//! Serving threads: the storefront's connections are served by `serving_threads`
//! single-threaded tokio runtimes, each with its own Stripe connection pool. One
//! acceptor hands new connections out in turn. A request then stays on one thread
//! from its first byte to its response: no work stealing, no wake-ups across threads.

use crate::app::{self, AppState};
use axum::serve::Listener;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

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
    acceptor: tokio::task::JoinHandle<()>,
}

/// Connections handed to one serving thread; axum serves it like a socket.
struct Handed {
    connections: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
    local: SocketAddr,
}

impl Listener for Handed {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Some((stream, peer)) = self.connections.recv().await else {
                // The acceptor stopped: shutdown is under way and ends `serve`.
                return std::future::pending().await;
            };
            match TcpStream::from_std(stream) {
                Ok(stream) => return (stream, peer),
                Err(e) => tracing::warn!(error = %e, %peer, "dropping a connection"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Starts `threads` serving threads for `listener`; `state` makes each thread's
/// state (called on that thread, inside its runtime). Must run inside a tokio runtime,
/// which runs the acceptor.
pub fn start(
    listener: TcpListener,
    threads: usize,
    state: impl Fn() -> anyhow::Result<AppState> + Send + Sync + 'static,
) -> anyhow::Result<Serving> {
    let local = listener.local_addr()?;
    let state = std::sync::Arc::new(state);
    let (stop, stopped) = watch::channel(false);
    let mut senders = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    for i in 0..threads.max(1) {
        let (tx, connections) = mpsc::unbounded_channel();
        senders.push(tx);
        let (state, mut stopped, ready) = (state.clone(), stopped.clone(), ready_tx.clone());
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
                    let listener = Handed { connections, local };
                    let shutdown = async move {
                        while !*stopped.borrow_and_update() {
                            if stopped.changed().await.is_err() {
                                break;
                            }
                        }
                    };
                    if let Err(e) = axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await
                    {
                        tracing::error!(error = %e, "serving thread stopped");
                    }
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
    let acceptor = tokio::spawn(accept(listener, senders, stopped));
    Ok(Serving {
        threads: handles,
        stop,
        acceptor,
    })
}

/// Accepts connections and hands them to the serving threads in turn, until stopped.
async fn accept(
    listener: TcpListener,
    threads: Vec<mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>>,
    mut stopped: watch::Receiver<bool>,
) {
    let handed: Vec<_> = (0..threads.len())
        .map(|i| {
            crate::metrics::global()
                .connections
                .with_label_values(&[i.to_string().as_str()])
        })
        .collect();
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|stop| *stop) => return,
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
        match stream.into_std() {
            Ok(stream) => {
                threads[next].send((stream, peer)).ok();
                handed[next].inc();
                next = (next + 1) % threads.len();
            }
            Err(e) => tracing::warn!(error = %e, %peer, "dropping a connection"),
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
    /// Stops accepting, lets every in-flight request finish, and waits for the threads.
    pub async fn shutdown(self) {
        self.stop.send(true).ok();
        self.acceptor.await.ok();
        let threads = self.threads;
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

    #[test]
    fn zero_threads_is_one_per_cpu() {
        assert_eq!(thread_count(3), 3);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(thread_count(0), cpus);
    }
}
