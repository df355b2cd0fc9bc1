//! The decision audit log: one [`AuditRecord`] per storefront evaluation, as JSON
//! Lines on stdout or in a file. The request path only queues the record; a
//! writer task serializes and writes it. The latest records stay in memory for
//! the dashboard.

use crate::config::{AuditSettings, AuditSink};
use crate::response::FlowError;
use arc_swap::ArcSwapOption;
use policy_engine::audit::{rfc3339_millis, Amounts, AuditCustomer, AuditRecord, GuardVerdict};
use policy_engine::audit::{Fuel, Timing};
use policy_engine::EvalError;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Records queued for the writer before new ones are dropped (and counted).
const QUEUE: usize = 8_192;

/// After a write, the writer waits this long before taking more records, so that
/// under load it wakes once per batch instead of once per request. An idle log's
/// first record is written at once.
pub const BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// The audit log: a queue to the writer task and a ring of recent records.
pub struct AuditLog {
    tx: ArcSwapOption<mpsc::Sender<Arc<AuditRecord>>>,
    recent: Mutex<VecDeque<Arc<AuditRecord>>>,
    capacity: usize,
    mask_customer: bool,
    sink: &'static str,
}

/// The writer task; await it after dropping every [`AuditLog`] handle to flush.
pub type Writer = tokio::task::JoinHandle<()>;

impl AuditLog {
    /// Opens the sink and starts the writer task.
    pub async fn start(
        settings: &AuditSettings,
    ) -> anyhow::Result<(Arc<AuditLog>, Option<Writer>)> {
        let out: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>> = match settings.sink {
            AuditSink::Off => None,
            AuditSink::Stdout => Some(Box::new(tokio::io::stdout())),
            AuditSink::File => {
                let path = settings
                    .path
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("[audit] sink = \"file\" needs a path"))?;
                let file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .map_err(|e| anyhow::anyhow!("opening audit log {}: {e}", path.display()))?;
                Some(Box::new(file))
            }
        };
        let sink = match settings.sink {
            AuditSink::Off => "off",
            AuditSink::Stdout => "stdout",
            AuditSink::File => "file",
        };
        let (tx, writer) = match out {
            Some(out) => {
                let (tx, rx) = mpsc::channel(QUEUE);
                (Some(tx), Some(tokio::spawn(write_lines(rx, out))))
            }
            None => (None, None),
        };
        let log = AuditLog {
            tx: ArcSwapOption::new(tx.map(Arc::new)),
            recent: Mutex::new(VecDeque::new()),
            capacity: settings.recent,
            mask_customer: settings.mask_customer,
            sink,
        };
        Ok((Arc::new(log), writer))
    }

    /// Whether customer email and address are masked.
    pub fn mask_customer(&self) -> bool {
        self.mask_customer
    }

    /// Queues a record for the sink and keeps it among the recent ones. Never waits.
    pub fn record(&self, record: AuditRecord) {
        let record = Arc::new(record);
        if let Some(tx) = &*self.tx.load() {
            if tx.try_send(record.clone()).is_err() {
                crate::metrics::global()
                    .audit_dropped
                    .with_label_values(&[self.sink])
                    .inc();
            }
        }
        if self.capacity > 0 {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if recent.len() >= self.capacity {
                recent.pop_front();
            }
            recent.push_back(record);
        }
    }

    /// The latest records, oldest first.
    pub fn recent(&self) -> Vec<Arc<AuditRecord>> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().cloned().collect()
    }

    /// Closes the queue: the writer writes what is queued, flushes and ends.
    pub fn close(&self) {
        self.tx.store(None);
    }
}

async fn write_lines(
    mut rx: mpsc::Receiver<Arc<AuditRecord>>,
    mut out: Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
) {
    let mut buf = Vec::with_capacity(4096);
    while let Some(first) = rx.recv().await {
        buf.clear();
        let mut next = Some(first);
        while let Some(record) = next {
            if serde_json::to_writer(&mut buf, &*record).is_ok() {
                buf.push(b'\n');
            }
            next = if buf.len() < 1 << 20 {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if let Err(e) = out.write_all(&buf).await {
            tracing::error!(error = %e, "writing the audit log");
        }
        if let Err(e) = out.flush().await {
            tracing::error!(error = %e, "flushing the audit log");
        }
        tokio::time::sleep(BATCH_INTERVAL).await;
    }
}

/// Unix time now, in milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A record being filled in as the request goes through the steps.
#[derive(Debug, Clone)]
pub struct Draft {
    /// The record so far.
    pub record: AuditRecord,
    /// The Unix time (seconds) of `record.time`: the "now" the policy sees, so a
    /// replay of the record reproduces the evaluation.
    pub now: i64,
}

impl Draft {
    /// A draft for a request to `route`, received now.
    pub fn new(request_id: &str, route: &str) -> Self {
        let received_ms = unix_ms();
        Draft {
            now: (received_ms / 1000) as i64,
            record: AuditRecord {
                time: rfc3339_millis(received_ms),
                request_id: request_id.to_string(),
                route: route.to_string(),
                session_id: None,
                livemode: None,
                policy: None,
                version: None,
                settings_digest: None,
                input_digest: None,
                input: None,
                customer: None,
                decision: None,
                guard: GuardVerdict::not_run(),
                stripe_request_id: None,
                amounts_before: None,
                amounts_after: None,
                timing: Timing::default(),
                fuel: None,
                outcome: String::new(),
                error: None,
            },
        }
    }

    /// Notes the retrieved session: livemode, amounts before, customer.
    pub fn session(&mut self, s: &stripe_checkout::CheckoutSession, mask_customer: bool) {
        self.record.livemode = Some(s.livemode);
        self.record.amounts_before = Some(Amounts::from(s));
        self.record.customer = AuditCustomer::from_session(s, mask_customer);
    }

    /// Notes the evaluation's fuel.
    pub fn fuel(&mut self, cost: &policy_engine::Cost) {
        self.record.fuel = Some(Fuel {
            used: cost.fuel_used,
            budget: cost.fuel_budget,
        });
    }

    /// Completes the record with the request's result.
    pub fn finish(mut self, result: Result<(), &FlowError>) -> AuditRecord {
        let r = &mut self.record;
        match result {
            Ok(()) => {
                r.outcome = match r.decision.as_ref().map(|d| d.kind()) {
                    Some("apply") => "applied",
                    Some("clear") => "cleared",
                    _ => "kept",
                }
                .to_string();
            }
            Err(error) => {
                r.outcome = error.outcome().to_string();
                r.error = Some(error.to_string());
                if let FlowError::Rejected(_) = error {
                    r.amounts_after = r.amounts_before.clone();
                }
                match error {
                    FlowError::Stripe(e) if r.stripe_request_id.is_none() => {
                        r.stripe_request_id = e.request_id().map(str::to_string);
                    }
                    FlowError::PolicyFailed {
                        error: EvalError::FuelExhausted(budget),
                        ..
                    } => {
                        r.fuel = Some(Fuel {
                            used: *budget,
                            budget: *budget,
                        });
                    }
                    _ => {}
                }
            }
        }
        self.record
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    /// An in-memory sink that counts the writes it receives.
    #[derive(Clone, Default)]
    struct Counting(Arc<Mutex<(Vec<u8>, usize)>>);

    impl tokio::io::AsyncWrite for Counting {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(buf);
            s.1 += 1;
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl Counting {
        fn lines_and_writes(&self) -> (usize, usize) {
            let s = self.0.lock().unwrap();
            (s.0.iter().filter(|&&b| b == b'\n').count(), s.1)
        }
    }

    fn record(i: usize) -> Arc<AuditRecord> {
        Arc::new(Draft::new(&format!("req_{i}"), "/apply").finish(Ok(())))
    }

    #[tokio::test]
    async fn the_writer_writes_a_burst_in_batches_and_everything_on_close() {
        let sink = Counting::default();
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = tokio::spawn(write_lines(rx, Box::new(sink.clone())));

        // An idle log writes its first record at once.
        tx.send(record(0)).await.unwrap();
        for _ in 0..500 {
            if sink.lines_and_writes().0 == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(sink.lines_and_writes(), (1, 1));

        // A burst goes out in a few writes, though the writer could run between any
        // two records: it waits out its interval after each write.
        for i in 1..=1_000 {
            tx.try_send(record(i)).unwrap();
            tokio::task::yield_now().await;
        }
        drop(tx);
        writer.await.unwrap();
        let (lines, writes) = sink.lines_and_writes();
        assert_eq!(lines, 1_001, "closing writes every queued record");
        assert!(writes <= 50, "{writes} writes for a burst of 1,000 records");
        let text = String::from_utf8(sink.0.lock().unwrap().0.clone()).unwrap();
        for (i, line) in text.lines().enumerate() {
            let r: AuditRecord = serde_json::from_str(line).unwrap();
            assert_eq!(r.request_id, format!("req_{i}"));
        }
    }
}
