//! Per-session serialization: within one host process, the retrieve–evaluate–update
//! of one Checkout Session never interleaves with another request's for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Locks keyed by session id; entries go away when nobody holds or waits on them.
#[derive(Default)]
pub struct SessionLocks {
    locks: Mutex<HashMap<String, Weak<AsyncMutex<()>>>>,
}

impl SessionLocks {
    /// Waits for exclusive use of a session.
    pub async fn lock(&self, session_id: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            if locks.len() > 1024 {
                locks.retain(|_, w| w.strong_count() > 0);
            }
            match locks.get(session_id).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(AsyncMutex::new(()));
                    locks.insert(session_id.to_string(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn same_session_waits_other_does_not() {
        let locks = Arc::new(SessionLocks::default());
        let held = locks.lock("cs_a").await;
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move { l2.lock("cs_a").await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        let _other = tokio::time::timeout(Duration::from_millis(100), locks.lock("cs_b"))
            .await
            .expect("another session is not blocked");
        drop(held);
        tokio::time::timeout(Duration::from_millis(100), waiter)
            .await
            .expect("waiter proceeds")
            .unwrap();
    }
}
