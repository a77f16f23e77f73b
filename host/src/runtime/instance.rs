//! One store with an instantiated component: the state its imports see, the memory limit, and
//! the rules for calling into it (deadline, trap reporting, no call after a trap).

use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::Runtime;
use crate::bindings::checkpointer_api;
use crate::bindings::exports::pipeline::checkpoint::codec as codec_api;
use crate::consumer::Consumer;
use crate::error::{Error, RuntimeError, RuntimeErrorKind};
use crate::storage::Storage;

/// An export interface of the component that a handle calls.
pub(crate) trait Exports: Sized {
    /// The interface's functions in `instance`.
    fn load(
        runtime: &Runtime,
        store: &mut Store<HostState>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Self>;
}

impl Exports for checkpointer_api::Guest {
    fn load(
        runtime: &Runtime,
        store: &mut Store<HostState>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Self> {
        runtime.checkpointer_exports.load(store, instance)
    }
}

impl Exports for codec_api::Guest {
    fn load(
        runtime: &Runtime,
        store: &mut Store<HostState>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Self> {
        runtime.codec_exports.load(store, instance)
    }
}

/// A store with an instantiated component, and the rules for calling into it.
pub(crate) struct Instance<G> {
    pub(crate) store: Store<HostState>,
    pub(crate) guest: G,
    deadline_ticks: u64,
    deadline: Duration,
    /// Set after a trap: the instance may be half-way through an operation, so it is not
    /// called again.
    broken: Option<String>,
}

impl<G> Instance<G> {
    pub(super) fn new(
        store: Store<HostState>,
        guest: G,
        deadline_ticks: u64,
        deadline: Duration,
    ) -> Self {
        Instance {
            store,
            guest,
            deadline_ticks,
            deadline,
            broken: None,
        }
    }

    /// The size of this instance's linear memory, in bytes.
    pub(crate) fn linear_memory_bytes(&self) -> usize {
        self.store.data().memory.current_bytes
    }

    /// Calls into the guest with a fresh deadline, and turns a trap into `Error::Runtime`.
    /// `name` is the WIT function name, for messages.
    pub(crate) fn call<R>(
        &mut self,
        name: &str,
        f: impl FnOnce(&G, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, Error> {
        if let Some(why) = &self.broken {
            return Err(Error::Runtime(RuntimeError::new(
                RuntimeErrorKind::Unusable,
                format!(
                    "cannot call `{name}`: this instance of the component is unusable after an \
                     earlier failure ({why}); open a new one"
                ),
            )));
        }
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.store.data_mut().memory.refused = None;
        f(&self.guest, &mut self.store).map_err(|e| {
            let (kind, context) = if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                (
                    RuntimeErrorKind::Deadline,
                    format!(
                        "the component call `{name}` ran past its deadline of {:?} and was \
                         interrupted",
                        self.deadline
                    ),
                )
            } else if let Some((current, desired)) = self.store.data().memory.refused {
                // A guest that runs out of memory usually traps (Rust aborts) rather than
                // reporting it, so the trap is named after the limit that caused it.
                (
                    RuntimeErrorKind::MemoryLimit,
                    format!(
                        "the component call `{name}` trapped after its memory limit of {} bytes \
                         refused to grow its memory from {current} to {desired} bytes",
                        self.store.data().memory.max_bytes
                    ),
                )
            } else {
                (
                    RuntimeErrorKind::Trap,
                    format!("the component call `{name}` trapped"),
                )
            };
            // Only the outermost message is kept: the full chain went to the caller once.
            self.broken = Some(context.clone());
            Error::Runtime(RuntimeError::from_chain(
                kind,
                &anyhow::Error::from(e).context(context),
            ))
        })
    }
}

/// The data of every store: the backends the component calls, and an empty WASI context.
pub(crate) struct HostState {
    pub(super) storage: Box<dyn Storage>,
    pub(super) consumer: Box<dyn Consumer>,
    /// Built on the first WASI call: the real component makes none, and building one costs
    /// a tenth of an instantiation.
    pub(super) wasi: Option<WasiCtx>,
    pub(super) table: ResourceTable,
    pub(super) memory: MemoryLimit,
    /// What the imports record (latencies, sizes, acks); a checkpointer labels it after
    /// instantiation, other instances leave it disabled.
    pub(crate) metrics: crate::metrics::StorageMetrics,
}

/// Enforces `max_memory_bytes` before the pool does, and remembers the last growth it refused
/// so that the trap that usually follows can say why.
pub(super) struct MemoryLimit {
    max_bytes: usize,
    /// Size of the instance's linear memory after its last accepted growth (creation counts
    /// as growth from 0).
    current_bytes: usize,
    /// (current, desired) size in bytes of the last refused growth.
    refused: Option<(usize, usize)>,
}

impl MemoryLimit {
    pub(super) fn new(max_bytes: usize) -> Self {
        MemoryLimit {
            max_bytes,
            current_bytes: 0,
            refused: None,
        }
    }
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.refused = Some((current, desired));
            return Ok(false);
        }
        self.current_bytes = desired;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // The pool's per-table limit applies.
        Ok(true)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: self.wasi.get_or_insert_with(empty_wasi_ctx),
            table: &mut self.table,
        }
    }
}

/// No preopens, no environment, no arguments, no network: a component built with a WASI
/// standard library still instantiates, and gets no authority.
pub(super) fn empty_wasi_ctx() -> WasiCtx {
    WasiCtxBuilder::new()
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .allow_ip_name_lookup(false)
        .allow_tcp(false)
        .allow_udp(false)
        .build()
}
