//! Pre-initialisation from a warm-up evaluation (`warm_up = true` in a policy's settings).
//!
//! A JavaScript or Python policy's first call in a fresh instance pays for its runtime's
//! lazy work: compiling functions to bytecode, filling caches, importing modules. The same
//! call again in the same instance costs a fraction of it. At load, the engine evaluates
//! synthetic sessions ([`crate::fixtures::warm_up_sessions`]) in one instrumented
//! instance, and wasmtime-wizer writes that instance's memories and globals out as a new
//! component. Every instance then starts from that snapshot: still fresh per evaluation
//! and isolated from real customers' data, but warm.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use wasmtime::component::{Instance, WasmList};
use wasmtime::Store;
use wasmtime_wizer::{ComponentContext, ComponentInstanceState, Wizer};

/// The component with wizer's accessors added, and what wizer needs to snapshot it.
pub(crate) fn instrument(wasm: &[u8]) -> wasmtime::Result<(ComponentContext<'_>, Vec<u8>)> {
    Wizer::new().instrument_component(wasm)
}

/// The component `cx` came from, with `instance`'s memories and globals as its
/// initial state. `instance` must be an instance of [`instrument`]'s output.
pub(crate) fn snapshot<T: Send + 'static>(
    cx: &ComponentContext<'_>,
    store: &mut Store<T>,
    instance: Instance,
) -> wasmtime::Result<Vec<u8>> {
    let mut state = Accessors {
        store,
        instance,
        error: None,
    };
    let wasm = ready(Wizer::new().snapshot_component(cx, &mut state))?;
    match state.error {
        Some(e) => Err(e),
        None => wasm,
    }
}

/// Runs a future that never waits: every call it makes is synchronous.
fn ready<F: Future>(future: F) -> wasmtime::Result<F::Output> {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => Err(wasmtime::format_err!("the snapshot waited on nothing")),
    }
}

/// Reads an instrumented instance's state through wizer's accessor functions.
struct Accessors<'a, T: 'static> {
    store: &'a mut Store<T>,
    instance: Instance,
    /// The first failed accessor call; wizer's trait has no error channel.
    error: Option<wasmtime::Error>,
}

impl<T: Send> Accessors<'_, T> {
    fn call<R: wasmtime::component::Lift + 'static, O: Default>(
        &mut self,
        instance: &str,
        func: &str,
        read: impl FnOnce(&Store<T>, R) -> O,
    ) -> O {
        if self.error.is_some() {
            return O::default();
        }
        let store = &mut *self.store;
        let result = (|| {
            let exported = self
                .instance
                .get_export_index(&mut *store, None, instance)
                .ok_or_else(|| wasmtime::format_err!("no accessor instance `{instance}`"))?;
            let index = self
                .instance
                .get_export_index(&mut *store, Some(&exported), func)
                .ok_or_else(|| wasmtime::format_err!("no accessor `{instance}#{func}`"))?;
            let typed = self
                .instance
                .get_typed_func::<(), (R,)>(&mut *store, index)?;
            let (value,) = typed.call(&mut *store, ())?;
            Ok(read(store, value))
        })();
        result.unwrap_or_else(|e| {
            self.error = Some(e);
            O::default()
        })
    }
}

impl<T: Send> ComponentInstanceState for Accessors<'_, T> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        let mut contents = Some(contents);
        self.call(instance, func, |store, list: WasmList<u8>| {
            if let Some(contents) = contents.take() {
                contents(list.as_le_slice(store));
            }
        });
        // An accessor that failed still owes wizer its callback.
        if let Some(contents) = contents {
            contents(&[]);
        }
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func, |_, v| v)
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func, |_, v| v)
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call(instance, func, |_, v: f32| v.to_bits())
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call(instance, func, |_, v: f64| v.to_bits())
    }
}
