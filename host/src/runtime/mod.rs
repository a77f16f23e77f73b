//! The wasmtime side: one engine per process with its instance pool and epoch ticker, and the
//! compiled, pre-linked component that every handle instantiates. The artifact cache
//! (`cache`), one instance and its call rules (`instance`) and the host ends of the imports
//! (`imports`) have modules of their own.

mod cache;
mod imports;
mod instance;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use crate::bindings::exports::pipeline::checkpoint::codec as codec_api;
use crate::bindings::{CheckpointComponent, CheckpointComponentPre, checkpointer_api};
use crate::consumer::Consumer;
use crate::error::{Error, RuntimeError, RuntimeErrorKind};
use crate::storage::Storage;

pub use cache::{ArtifactCacheError, ArtifactCacheErrorKind, CACHE_MAX_BYTES};
use instance::MemoryLimit;
pub(crate) use instance::{Exports, HostState, Instance};

/// How often the background thread advances the engine's epoch: the resolution of deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);

// Pool slots per component instance. A Rust component (main module, shim, fixups) needs 3
// core instances, 1 memory and 2 tables; `Runtime::new` checks the component against
// these caps so a misfit fails at load, not at the 1001st open. Memories get no headroom:
// each slot reserves 4 GiB of address space (so max_instances = 1000 reserves ~4 TiB of
// virtual memory, none of it resident), and a Rust component never has a second one.
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;
const MEMORIES_PER_COMPONENT: u32 = 1;
const TABLES_PER_COMPONENT: u32 = 4;

/// Largest `max_memory_bytes`: the default 4 GiB reservation per linear memory (which lets
/// wasmtime elide bounds checks) bounds it.
const MAX_MEMORY_LIMIT: usize = 4 << 30;

const WASM_PAGE: u64 = 64 * 1024;

/// How a [`Runtime`] runs the component.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Longest one call into the component may run before it is interrupted (a trap that
    /// makes the checkpointer unusable). Default 10 s.
    pub call_deadline: Duration,
    /// Largest linear memory one component instance may grow to, in bytes. Default 64 MiB.
    /// Growth past it is refused; a guest that then traps (as Rust does when an allocation
    /// fails) gets an `Error::Runtime` that names this limit.
    pub max_memory_bytes: usize,
    /// How many component instances may be alive at once (each open [`Checkpointer`],
    /// [`Driver`] chain and [`Codec`] holds one). Default 1000. The pool is reserved up front:
    /// about 4 GiB of address space per instance (virtual, not resident), so the default
    /// reserves about 4 TiB; an environment with `ulimit -v` needs a smaller value.
    ///
    /// [`Checkpointer`]: crate::Checkpointer
    /// [`Driver`]: crate::Driver
    /// [`Codec`]: crate::Codec
    pub max_instances: u32,
    /// Where compiled artifacts are cached. `None`: `$CKPT_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/checkpoint-component`, else `~/.cache/checkpoint-component`; without
    /// any of them nothing is cached.
    ///
    /// **The cache is trusted code**: an entry is machine code that runs as this program. So
    /// the directory is created with mode 0700 and used only if this user owns it, nobody else
    /// may write it or any directory above it, and it is not a symbolic link; otherwise the
    /// component is compiled in memory, a warning is logged, and
    /// [`Runtime::artifact_cache_error`] says why. Entries are pruned, least recently used
    /// first, to [`CACHE_MAX_BYTES`] in total.
    pub cache_dir: Option<PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            call_deadline: Duration::from_secs(10),
            max_memory_bytes: 64 << 20,
            max_instances: 1000,
            cache_dir: None,
        }
    }
}

/// Where the compiled component of a [`Runtime`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArtifactSource {
    /// Deserialized from a verified entry of the on-disk artifact cache.
    Cache,
    /// Compiled from the component bytes: no cache entry, a damaged or incompatible one, or
    /// no cache directory.
    Compiled,
}

/// The engine and the compiled, pre-linked component. Create one per process
/// ([`Runtime::shared`]); every checkpointer gets its own store and instance from it.
pub struct Runtime {
    engine: Engine,
    pre: CheckpointComponentPre<HostState>,
    /// Where each export interface's functions sit, found (and type-checked) once here; an
    /// instance loads only the interface its handle calls, since loading type-checks again.
    checkpointer_exports: checkpointer_api::GuestIndices,
    codec_exports: codec_api::GuestIndices,
    config: RuntimeConfig,
    deadline_ticks: u64,
    source: ArtifactSource,
    artifact_path: Option<PathBuf>,
    cache_error: Option<ArtifactCacheError>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.config)
            .field("source", &self.source)
            .field("artifact_path", &self.artifact_path)
            .field("cache_error", &self.cache_error)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds an engine with `config`, loads the embedded component (from the artifact cache
    /// when a valid entry exists, compiling and caching it otherwise) and links its imports.
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        Runtime::start(
            config,
            checkpoint_component::WASM,
            Some(checkpoint_component::SHA256),
        )
        .map_err(|e| RuntimeError::from_chain(RuntimeErrorKind::Load, &e))
    }

    /// Like [`Runtime::new`], but runs `component` (the bytes of a `.wasm` component) instead
    /// of the embedded one: for a custom build of the guest, or a hostile stand-in in sandbox
    /// tests. The component must export the `pipeline:checkpoint/checkpoint-component` world;
    /// it gets the same sandbox (deadline, memory limit, empty WASI) as the embedded one.
    /// The artifact cache keys entries by the component's hash, so components never share one.
    pub fn with_component(
        config: RuntimeConfig,
        component: &[u8],
    ) -> Result<Runtime, RuntimeError> {
        Runtime::start(config, component, None)
            .map_err(|e| RuntimeError::from_chain(RuntimeErrorKind::Load, &e))
    }

    /// `digest`: the component's SHA-256 in hex when it is known already (the embedded one);
    /// otherwise it is computed, and only if there is a cache directory to key.
    fn start(
        config: RuntimeConfig,
        component: &[u8],
        digest: Option<&str>,
    ) -> anyhow::Result<Runtime> {
        anyhow::ensure!(
            !config.call_deadline.is_zero(),
            "call_deadline must be positive"
        );
        anyhow::ensure!(
            config.max_instances >= 1,
            "max_instances must be at least 1"
        );
        anyhow::ensure!(
            config.max_memory_bytes >= WASM_PAGE as usize
                && config.max_memory_bytes <= MAX_MEMORY_LIMIT,
            "max_memory_bytes must be between 64 KiB and 4 GiB, not {}",
            config.max_memory_bytes
        );
        let engine = Engine::new(&engine_config(&config)?)
            .map_err(anyhow::Error::from)
            .context("cannot create the wasmtime engine")?;
        start_epoch_ticker(&engine)?;

        let cache_dir = config.cache_dir.clone().or_else(cache::default_cache_dir);
        let cache::Loaded {
            component,
            source,
            path: artifact_path,
            cache_error,
        } = cache::load_component(&engine, component, digest, cache_dir.as_deref())?;
        check_fits_pool(&component, &config)?;

        let mut linker = Linker::<HostState>::new(&engine);
        // The real guest imports no WASI, and linking all of it (about 100 functions) was most
        // of the linking cost of a cold start; a component that imports any of it (a custom
        // build, a hostile stand-in) gets all of it, with the same empty context.
        if imports_wasi(&engine, &component) {
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
                .map_err(anyhow::Error::from)
                .context("cannot link WASI for the component")?;
        }
        CheckpointComponent::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(anyhow::Error::from)
            .context("cannot link the component's storage and consumer imports")?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("the component does not match this host's imports")?;
        let pre = CheckpointComponentPre::new(pre)
            .map_err(anyhow::Error::from)
            .context("the component does not export the checkpoint world")?;
        let checkpointer_exports = checkpointer_api::GuestIndices::new(pre.instance_pre())
            .map_err(anyhow::Error::from)
            .context("the component does not export the checkpointer interface")?;
        let codec_exports = codec_api::GuestIndices::new(pre.instance_pre())
            .map_err(anyhow::Error::from)
            .context("the component does not export the codec interface")?;

        let deadline_ticks = config
            .call_deadline
            .as_nanos()
            .div_ceil(EPOCH_TICK.as_nanos());
        // +1: the tick in progress when the deadline is set may end at once.
        let deadline_ticks = u64::try_from(deadline_ticks).unwrap_or(u64::MAX / 2) + 1;
        Ok(Runtime {
            engine,
            pre,
            checkpointer_exports,
            codec_exports,
            config,
            deadline_ticks,
            source,
            artifact_path,
            cache_error,
        })
    }

    /// The process-wide runtime with [`RuntimeConfig::default`], created on first use.
    /// A failed creation is returned and retried on the next call.
    pub fn shared() -> Result<&'static Runtime, RuntimeError> {
        static SHARED: OnceLock<Runtime> = OnceLock::new();
        static INIT: Mutex<()> = Mutex::new(());
        if let Some(runtime) = SHARED.get() {
            return Ok(runtime);
        }
        // Serialise creation so two threads do not both compile the component.
        let _guard = INIT.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(runtime) = SHARED.get() {
            return Ok(runtime);
        }
        let runtime = Runtime::new(RuntimeConfig::default())?;
        Ok(SHARED.get_or_init(|| runtime))
    }

    /// The configuration this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Whether the compiled component came from the artifact cache or was compiled.
    pub fn artifact_source(&self) -> ArtifactSource {
        self.source
    }

    /// The artifact cache entry this runtime read or wrote, if caching was possible.
    pub fn artifact_path(&self) -> Option<&Path> {
        self.artifact_path.as_deref()
    }

    /// Why the artifact cache directory was refused (another user's, writable by others, a
    /// symbolic link, not creatable): the component was then compiled in memory, and nothing
    /// was read from or written to the directory. `None` when the cache was usable or none
    /// was configured. Fail your own start-up on it if an unusable cache must be fatal.
    pub fn artifact_cache_error(&self) -> Option<&ArtifactCacheError> {
        self.cache_error.as_ref()
    }

    /// A fresh store and instance over `storage` and `consumer`, with the export interface `G`
    /// loaded.
    pub(crate) fn instantiate<G: Exports>(
        &self,
        storage: Box<dyn Storage>,
        consumer: Box<dyn Consumer>,
    ) -> Result<Instance<G>, Error> {
        let state = HostState {
            storage,
            consumer,
            wasi: None,
            table: ResourceTable::new(),
            memory: MemoryLimit::new(self.config.max_memory_bytes),
            metrics: Default::default(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        // Instantiation runs guest code (start functions), so it gets a deadline too.
        store.set_epoch_deadline(self.deadline_ticks);
        let guest = self
            .pre
            .instance_pre()
            .instantiate(&mut store)
            .and_then(|instance| G::load(self, &mut store, &instance))
            .map_err(|e| {
                Error::Runtime(RuntimeError::from_chain(
                    RuntimeErrorKind::Instantiate,
                    &anyhow::Error::from(e).context("cannot instantiate the checkpoint component"),
                ))
            })?;
        Ok(Instance::new(
            store,
            guest,
            self.deadline_ticks,
            self.config.call_deadline,
        ))
    }
}

fn engine_config(config: &RuntimeConfig) -> anyhow::Result<Config> {
    let n = config.max_instances;
    let times = |per: u32| {
        n.checked_mul(per)
            .ok_or_else(|| anyhow::anyhow!("max_instances {n} is too large for the instance pool"))
    };
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(times(CORE_INSTANCES_PER_COMPONENT)?)
        .total_memories(times(MEMORIES_PER_COMPONENT)?)
        .total_tables(times(TABLES_PER_COMPONENT)?)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .max_memory_size(config.max_memory_bytes)
        // Execution stacks are for async (fiber) calls, which this host never makes; the
        // default pool of 1000 costs one mprotect each, most of a cold start.
        .total_stacks(0);

    let mut cfg = Config::new();
    cfg.concurrency_support(false)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(cfg)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is gone.
fn start_epoch_ticker(engine: &Engine) -> anyhow::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("ckpt-epoch".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .context("cannot start the epoch thread")?;
    Ok(())
}

fn check_fits_pool(component: &Component, config: &RuntimeConfig) -> anyhow::Result<()> {
    let Some(needs) = component.resources_required() else {
        return Ok(());
    };
    anyhow::ensure!(
        needs.num_memories <= MEMORIES_PER_COMPONENT && needs.num_tables <= TABLES_PER_COMPONENT,
        "the component needs {} memories and {} tables; the instance pool allows {} and {}",
        needs.num_memories,
        needs.num_tables,
        MEMORIES_PER_COMPONENT,
        TABLES_PER_COMPONENT
    );
    if let Some(pages) = needs.max_initial_memory_size {
        let bytes = pages.saturating_mul(WASM_PAGE);
        anyhow::ensure!(
            bytes <= config.max_memory_bytes as u64,
            "the component starts with {bytes} bytes of memory, more than max_memory_bytes ({})",
            config.max_memory_bytes
        );
    }
    Ok(())
}

/// Whether `component` imports any WASI interface (`wasi:` package names).
fn imports_wasi(engine: &Engine, component: &Component) -> bool {
    component
        .component_type()
        .imports(engine)
        .any(|(name, _)| name.starts_with("wasi:"))
}
