//! The wasmtime side: one engine per process, the compiled component and its on-disk cache,
//! per-call deadlines, and the host ends of the component's imports.

use std::fs;
use std::hash::{Hash as _, Hasher as _};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    Trap,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::exports::pipeline::checkpoint::codec as codec_api;
use crate::bindings::storage::{CommitOutcome, Lookup, StorageError, Write, WriteOp};
use crate::bindings::{
    CheckpointComponent, CheckpointComponentPre, checkpointer_api, consumer, storage, types,
};
use crate::consumer::Consumer;
use crate::error::{Error, HostStorageError, storage_error_text};
use crate::storage::Storage;

/// The guest component, embedded at build time (see `build.rs`).
static COMPONENT: &[u8] = include_bytes!(env!("CKPT_COMPONENT_WASM"));

/// SHA-256 of [`COMPONENT`] in hex (the artifact cache key), computed by `build.rs` over the
/// same bytes it embeds: hashing them here took 150-220 us of every cold start.
const COMPONENT_SHA256: &str = env!("CKPT_COMPONENT_SHA256");

/// The wasmtime version the artifact cache is keyed by (from Cargo.lock, see `build.rs`).
const WASMTIME_VERSION: &str = env!("CKPT_WASMTIME_VERSION");

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
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.config)
            .field("source", &self.source)
            .field("artifact_path", &self.artifact_path)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds an engine with `config`, loads the embedded component (from the artifact cache
    /// when a valid entry exists, compiling and caching it otherwise) and links its imports.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        Runtime::start(config, COMPONENT, Some(COMPONENT_SHA256))
    }

    /// Like [`Runtime::new`], but runs `component` (the bytes of a `.wasm` component) instead
    /// of the embedded one: for a custom build of the guest, or a hostile stand-in in sandbox
    /// tests. The component must export the `pipeline:checkpoint/checkpoint-component` world;
    /// it gets the same sandbox (deadline, memory limit, empty WASI) as the embedded one.
    /// The artifact cache keys entries by the component's hash, so components never share one.
    pub fn with_component(config: RuntimeConfig, component: &[u8]) -> anyhow::Result<Runtime> {
        Runtime::start(config, component, None)
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

        let cache_dir = config.cache_dir.clone().or_else(default_cache_dir);
        let (component, source, artifact_path) =
            load_component(&engine, component, digest, cache_dir.as_deref())?;
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
        })
    }

    /// The process-wide runtime with [`RuntimeConfig::default`], created on first use.
    /// A failed creation is returned and retried on the next call.
    pub fn shared() -> anyhow::Result<&'static Runtime> {
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
            memory: MemoryLimit {
                max_bytes: self.config.max_memory_bytes,
                current_bytes: 0,
                refused: None,
            },
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
                Error::Runtime(
                    anyhow::Error::from(e).context("cannot instantiate the checkpoint component"),
                )
            })?;
        Ok(Instance {
            store,
            guest,
            deadline_ticks: self.deadline_ticks,
            deadline: self.config.call_deadline,
            broken: None,
        })
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

/// No preopens, no environment, no arguments, no network: a component built with a WASI
/// standard library still instantiates, and gets no authority.
fn empty_wasi_ctx() -> WasiCtx {
    WasiCtxBuilder::new()
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .allow_ip_name_lookup(false)
        .allow_tcp(false)
        .allow_udp(false)
        .build()
}

// ---------------------------------------------------------------------------------------------
// Artifact cache

/// A cache file is the artifact exactly as `Component::serialize` wrote it, then this magic,
/// then the artifact's CRC32C (little-endian). A trailer rather than a header, so that wasmtime
/// can map the file itself (`Component::deserialize_file`): copying the artifact into fresh
/// memory was most of a cold start. Version 1 (a header with a SHA-256) and version 2 (a
/// header with the CRC32C) lack this trailer, so they fail the check and are recompiled once.
const CACHE_MAGIC: &[u8; 12] = b"ckpt-cwasm3\n";

/// Bytes of the checksum after [`CACHE_MAGIC`].
const CACHE_CHECKSUM_LEN: usize = 4;

/// Bytes of the trailer: [`CACHE_MAGIC`] and the checksum.
const CACHE_TRAILER_LEN: usize = CACHE_MAGIC.len() + CACHE_CHECKSUM_LEN;

fn default_cache_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    non_empty("CKPT_CACHE_DIR")
        .or_else(|| non_empty("XDG_CACHE_HOME").map(|d| d.join("checkpoint-component")))
        .or_else(|| non_empty("HOME").map(|d| d.join(".cache").join("checkpoint-component")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache file name: the component's SHA-256 (hex), the wasmtime version, and a hash of
/// the engine settings that affect compiled code (so two configurations never fight over one
/// entry; the hash also covers the wasmtime version).
fn cache_file_name(engine: &Engine, component_sha256: &str) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!(
        "{component_sha256}-wasmtime-{WASMTIME_VERSION}-{:016x}.cwasm",
        hasher.finish()
    )
}

fn load_component(
    engine: &Engine,
    bytes: &[u8],
    digest: Option<&str>,
    cache_dir: Option<&Path>,
) -> anyhow::Result<(Component, ArtifactSource, Option<PathBuf>)> {
    let path = cache_dir.map(|dir| {
        let name = match digest {
            Some(digest) => cache_file_name(engine, digest),
            None => cache_file_name(engine, &hex(&Sha256::digest(bytes))),
        };
        dir.join(name)
    });
    if let Some(path) = &path {
        match read_cached(engine, path) {
            Ok(Some(component)) => {
                tracing::debug!(path = %path.display(), "loaded the compiled component from the cache");
                return Ok((component, ArtifactSource::Cache, Some(path.clone())));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = format!("{e:#}"),
                "ignoring a damaged artifact cache entry; recompiling"
            ),
        }
    }
    let component = Component::new(engine, bytes)
        .map_err(anyhow::Error::from)
        .context("cannot compile the checkpoint component")?;
    if let Some(path) = &path
        && let Err(e) = write_cached(&component, path)
    {
        tracing::warn!(
            path = %path.display(),
            error = format!("{e:#}"),
            "cannot write the artifact cache entry; continuing without it"
        );
    }
    Ok((component, ArtifactSource::Compiled, path))
}

/// The cached component at `path`: `Ok(None)` when there is no entry, `Err` when the entry
/// is damaged or does not fit this engine.
fn read_cached(engine: &Engine, path: &Path) -> anyhow::Result<Option<Component>> {
    let file = match fs::read(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("cannot read the cache entry"),
    };
    let artifact_len = file
        .len()
        .checked_sub(CACHE_TRAILER_LEN)
        .context("the cache entry is truncated")?;
    let (artifact, trailer) = file.split_at(artifact_len);
    let (magic, checksum) = trailer.split_at(CACHE_MAGIC.len());
    anyhow::ensure!(
        magic == CACHE_MAGIC.as_slice(),
        "the cache entry has no trailer of this format"
    );
    anyhow::ensure!(
        crc32c::crc32c(artifact).to_le_bytes().as_slice() == checksum,
        "the cache entry's checksum does not match its contents"
    );
    drop(file);
    // SAFETY: `Component::deserialize_file` trusts the file to hold an artifact produced by
    // `Component::serialize` with a compatible engine, and to stay unchanged while mapped.
    // The file was just read whole and its CRC32C matches, so it is exactly what
    // `write_cached` wrote (neither truncated nor damaged); wasmtime itself rejects an artifact
    // from another wasmtime version or engine configuration, and ignores the trailer (it reads
    // the artifact's sections by their recorded offsets). Entries are never changed in place:
    // `write_cached` renames a complete, synced file over the path, so one mapped here (even a
    // newer one renamed in since the read) was complete when it arrived, and holds the same
    // artifact (the name keys the component and the engine settings). The cache directory is
    // trusted like the executable: whoever can write it in place could also replace this
    // program; the checksum is there to catch damage, not an attacker.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize_file(engine, path) }
        .map_err(anyhow::Error::from)
        .context("wasmtime refused the cached artifact")?;
    Ok(Some(component))
}

/// Writes the serialized component to `path` atomically: a temporary file in the same
/// directory, synced, renamed over the entry, then the directory synced.
fn write_cached(component: &Component, path: &Path) -> anyhow::Result<()> {
    let artifact = component
        .serialize()
        .map_err(anyhow::Error::from)
        .context("cannot serialize the compiled component")?;
    let dir = path.parent().context("the cache entry has no directory")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file_name = path
        .file_name()
        .context("the cache entry has no file name")?;
    let tmp = dir.join(format!(
        ".{}.{}-{:016x}.tmp",
        file_name.to_string_lossy(),
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&artifact)?;
        file.write_all(CACHE_MAGIC)?;
        file.write_all(&crc32c::crc32c(&artifact).to_le_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// One store and instance

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
            return Err(Error::Runtime(anyhow::anyhow!(
                "cannot call `{name}`: this instance of the component is unusable after an \
                 earlier failure ({why}); open a new one"
            )));
        }
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.store.data_mut().memory.refused = None;
        f(&self.guest, &mut self.store).map_err(|e| {
            let error = if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
                anyhow::Error::from(e).context(format!(
                    "the component call `{name}` ran past its deadline of {:?} and was interrupted",
                    self.deadline
                ))
            } else if let Some((current, desired)) = self.store.data().memory.refused {
                // A guest that runs out of memory usually traps (Rust aborts) rather than
                // reporting it, so the trap is named after the limit that caused it.
                anyhow::Error::from(e).context(format!(
                    "the component call `{name}` trapped after its memory limit of {} bytes \
                     refused to grow its memory from {current} to {desired} bytes",
                    self.store.data().memory.max_bytes
                ))
            } else {
                anyhow::Error::from(e).context(format!("the component call `{name}` trapped"))
            };
            // Only the outermost message: the full chain went to the caller once.
            self.broken = Some(error.to_string());
            Error::Runtime(error)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Host ends of the imports

/// The data of every store: the backends the component calls, and an empty WASI context.
pub(crate) struct HostState {
    storage: Box<dyn Storage>,
    consumer: Box<dyn Consumer>,
    /// Built on the first WASI call: the real component makes none, and building one costs
    /// a tenth of an instantiation.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    memory: MemoryLimit,
}

/// Enforces `max_memory_bytes` before the pool does, and remembers the last growth it refused
/// so that the trap that usually follows can say why.
struct MemoryLimit {
    max_bytes: usize,
    /// Size of the instance's linear memory after its last accepted growth (creation counts
    /// as growth from 0).
    current_bytes: usize,
    /// (current, desired) size in bytes of the last refused growth.
    refused: Option<(usize, usize)>,
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

impl types::Host for HostState {}

/// A backend's answer that breaks the `Storage` contract: a host bug, so the guest traps.
fn bug(op: &str, what: String) -> HostStorageError {
    tracing::error!(op, "storage backend broke its contract: {what}");
    HostStorageError::Bug(anyhow::anyhow!(
        "storage backend broke its contract in `{op}`: {what}"
    ))
}

/// Logs a backend failure in full and passes its stable value on to the guest.
fn backend(op: &str, e: StorageError) -> HostStorageError {
    tracing::warn!(op, error = %storage_error_text(&e), "storage backend failed");
    HostStorageError::Backend(e)
}

impl storage::Host for HostState {
    fn get(&mut self, key: String) -> Result<Lookup, HostStorageError> {
        match self.storage.get(&key).map_err(|e| backend("get", e))? {
            Lookup::Found(entry) if entry.version == 0 => {
                Err(bug("get", format!("key {key:?} was found with version 0")))
            }
            lookup => Ok(lookup),
        }
    }

    fn commit(&mut self, writes: Vec<Write>) -> Result<CommitOutcome, HostStorageError> {
        let ops: Vec<bool> = writes
            .iter()
            .map(|w| matches!(w.op, WriteOp::Put(_)))
            .collect();
        let outcome = self
            .storage
            .commit(writes)
            .map_err(|e| backend("commit", e))?;
        match &outcome {
            CommitOutcome::Committed(versions) => {
                if versions.len() != ops.len() {
                    return Err(bug(
                        "commit",
                        format!(
                            "{} versions for a batch of {} writes",
                            versions.len(),
                            ops.len()
                        ),
                    ));
                }
                if let Some(i) = ops
                    .iter()
                    .zip(versions)
                    .position(|(is_put, v)| *is_put != (*v != 0))
                {
                    return Err(bug(
                        "commit",
                        format!(
                            "version {} for write {i} (0 is for deletes only)",
                            versions[i]
                        ),
                    ));
                }
            }
            CommitOutcome::Conflict(i) => {
                if *i as usize >= ops.len() {
                    return Err(bug(
                        "commit",
                        format!("conflict at index {i} in a batch of {} writes", ops.len()),
                    ));
                }
            }
        }
        Ok(outcome)
    }

    fn list_keys(&mut self, prefix: String) -> Result<Vec<String>, HostStorageError> {
        let keys = self
            .storage
            .list_keys(&prefix)
            .map_err(|e| backend("list-keys", e))?;
        if let Some(key) = keys.iter().find(|k| !k.starts_with(&prefix)) {
            return Err(bug(
                "list-keys",
                format!("key {key:?} lacks the prefix {prefix:?}"),
            ));
        }
        if let Some(pair) = keys.windows(2).find(|p| p[0] >= p[1]) {
            return Err(bug(
                "list-keys",
                format!(
                    "keys {:?} and {:?} are not in ascending order",
                    pair[0], pair[1]
                ),
            ));
        }
        Ok(keys)
    }

    fn convert_storage_error(&mut self, err: HostStorageError) -> wasmtime::Result<StorageError> {
        err.into_guest()
    }
}

impl consumer::Host for HostState {
    fn ack(&mut self, message_ids: Vec<String>) -> wasmtime::Result<Result<(), String>> {
        let count = message_ids.len();
        let result = self.consumer.ack(message_ids);
        if let Err(message) = &result {
            tracing::warn!(count, error = %message, "consumer ack failed; the checkpoint stays durable");
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_time_digest_is_the_sha256_of_the_embedded_component() {
        assert_eq!(COMPONENT_SHA256, hex(&Sha256::digest(COMPONENT)));
    }

    /// Only an entry `write_cached` wrote is mapped: anything else is refused (and so
    /// recompiled), even a valid wasmtime artifact whose integrity nothing vouches for.
    #[test]
    fn cache_entries_of_other_formats_are_refused() {
        let config = RuntimeConfig {
            max_instances: 1,
            ..RuntimeConfig::default()
        };
        let engine = Engine::new(&engine_config(&config).expect("config")).expect("engine");
        let component = Component::new(&engine, COMPONENT).expect("compile");
        let artifact = component.serialize().expect("serialize");
        let dir = tempfile::tempdir().expect("temp dir");
        let entry = |name: &str, parts: &[&[u8]]| {
            let path = dir.path().join(name);
            fs::write(&path, parts.concat()).expect("write entry");
            path
        };
        let checksum = crc32c::crc32c(&artifact).to_le_bytes();

        let good = dir.path().join("good.cwasm");
        write_cached(&component, &good).expect("write entry");
        assert!(matches!(read_cached(&engine, &good), Ok(Some(_))));
        assert!(matches!(
            read_cached(&engine, &dir.path().join("absent.cwasm")),
            Ok(None)
        ));

        let refused = [
            // A bare artifact, as `wasmtime compile` or another program would write it.
            entry("bare.cwasm", &[&artifact]),
            // The previous format: magic and checksum in front of the artifact.
            entry("v2.cwasm", &[b"ckpt-cwasm2\n", &checksum, &artifact]),
            // The trailer cut short.
            entry("cut.cwasm", &[&artifact, CACHE_MAGIC, &checksum[..2]]),
            // A trailer whose checksum is not the artifact's.
            entry("other.cwasm", &[&artifact, CACHE_MAGIC, &[0, 0, 0, 0]]),
            // The trailer alone.
            entry(
                "empty.cwasm",
                &[CACHE_MAGIC, &crc32c::crc32c(b"").to_le_bytes()],
            ),
        ];
        for path in refused {
            assert!(
                read_cached(&engine, &path).is_err(),
                "{} was accepted",
                path.display()
            );
        }
    }
}
