//! Power loss for SQLite: a VFS that keeps every file in memory twice, as the page cache sees
//! it and as the disk holds it, and loses whatever was never synced when the power goes.
//!
//! Jepsen's LazyFS is the model: a write lands in the page cache only; `xSync` of a file makes
//! what was written to that file durable; a crash throws the page cache away and the machine
//! "reboots" with exactly the durable bytes. Creating and deleting a file take effect at once
//! (LazyFS passes metadata through). [`CrashMode::KeepSomeUnsynced`] is harsher: at the crash a
//! random subset of the unsynced writes reached the disk anyway, in any order, as the kernel's
//! write-back might have done.
//!
//! A crash strikes when asked ([`Disk::crash`]) or at a chosen I/O ([`Disk::crash_at_io`]: the
//! nth write, sync or truncate from now, which either never happens or happens and is then
//! lost to the caller). From then on every handle opened before it is dead: reads, writes,
//! syncs and locks fail with an I/O error, as they would in a process that no longer exists,
//! so nothing a crashed process still tries reaches the disk. [`Disk::reboot`] lets new
//! connections open the durable state.
//!
//! Files live under a [`Disk`]'s own path (`/power-loss/<n>/...`), which only this VFS opens:
//! open a store with `SqliteOptions { vfs: Some(VFS_NAME.into()), .. }` on [`Disk::path`].
//! Shared memory (the WAL index) is per disk and per generation, like the mapping of a `-shm`
//! file that every process of the machine loses at a crash.
#![allow(
    unsafe_code,
    reason = "a SQLite VFS is a table of C callbacks over raw pointers; each function states \
              what it relies on"
)]

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use rusqlite::ffi;

/// The name the VFS is registered under ([`register`] does it; [`Disk::new`] calls it).
pub const VFS_NAME: &str = "ckpt-power-loss";

/// The size of a shared-memory region SQLite asks for (the WAL index), checked on every map.
const SHM_REGION: usize = 32 * 1024;

/// What reaches the disk of the unsynced writes when the power goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Nothing: every write not yet synced is lost (LazyFS's default).
    DropUnsynced,
    /// A random subset (seeded), applied in a random order.
    KeepSomeUnsynced(u64),
}

/// Counts of what a [`Disk`] saw, since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// Writes, syncs and truncates of its files (the I/Os a crash can strike at).
    pub ios: u64,
    /// `xSync` calls.
    pub syncs: u64,
    /// Crashes.
    pub crashes: u64,
    /// Writes and truncates that were still unsynced at a crash and did not survive it.
    pub lost_writes: u64,
    /// Bytes of those writes.
    pub lost_bytes: u64,
    /// Unsynced writes that survived a crash anyway ([`CrashMode::KeepSomeUnsynced`]).
    pub kept_unsynced: u64,
}

/// A simulated machine's disk for SQLite files, with a power switch. Dropping it deletes its
/// files.
#[derive(Debug)]
pub struct Disk {
    id: u64,
}

impl Disk {
    /// A new, empty disk (registers the VFS on first use).
    pub fn new() -> Disk {
        register();
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        state().disks.insert(
            id,
            DiskState {
                mode: CrashMode::DropUnsynced,
                generation: 0,
                crashed: false,
                crash_in: None,
                sync_delay: Duration::ZERO,
                stats: DiskStats::default(),
            },
        );
        Disk { id }
    }

    /// The path of `name` on this disk, to open with the VFS.
    pub fn path(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("{}{name}", self.prefix()))
    }

    fn prefix(&self) -> String {
        format!("/power-loss/{}/", self.id)
    }

    /// How the next crashes treat unsynced writes (default [`CrashMode::DropUnsynced`]).
    pub fn set_mode(&self, mode: CrashMode) {
        state().disk(self.id).mode = mode;
    }

    /// Makes every sync take `delay` longer (default none), as a disk's flush does, so that
    /// concurrent commits queue behind it. The machine is not locked while it waits.
    pub fn set_sync_delay(&self, delay: Duration) {
        state().disk(self.id).sync_delay = delay;
    }

    /// Cuts the power at the `nth` I/O (write, sync or truncate; 1-based) from now. With
    /// `after`, that I/O is done first (a sync's data is durable) but its caller still only
    /// sees an error: the power went before it returned.
    pub fn crash_at_io(&self, nth: u64, after: bool) {
        state().disk(self.id).crash_in = Some((nth.max(1), after));
    }

    /// Whether an armed crash is still waiting for its I/O.
    pub fn crash_armed(&self) -> bool {
        state().disk(self.id).crash_in.is_some()
    }

    /// Cuts the power now (no-op when it is already off).
    pub fn crash(&self) {
        let mut st = state();
        if !st.disk(self.id).crashed {
            st.crash(self.id);
        }
    }

    /// Whether the power is off (a crash struck and there was no reboot since).
    pub fn is_crashed(&self) -> bool {
        state().disk(self.id).crashed
    }

    /// Powers the machine on again: new connections open exactly the durable state. Handles
    /// opened before the crash stay dead. A reboot without a crash is a clean restart: it
    /// changes nothing.
    pub fn reboot(&self) {
        let mut st = state();
        let disk = st.disk(self.id);
        disk.crashed = false;
        disk.crash_in = None;
    }

    /// What the disk saw so far.
    pub fn stats(&self) -> DiskStats {
        state().disk(self.id).stats
    }

    /// A new disk holding a copy of this one's durable bytes, as a second machine would see
    /// them if this one lost power now; this disk is left alone.
    pub fn durable_copy(&self) -> Disk {
        let copy = Disk::new();
        let (from, to) = (self.prefix(), copy.prefix());
        let mut st = state();
        let files: Vec<(String, Vec<u8>)> = st
            .files
            .iter()
            .filter_map(|(path, node)| {
                path.strip_prefix(&from)
                    .map(|name| (format!("{to}{name}"), node.durable.clone()))
            })
            .collect();
        for (path, durable) in files {
            st.files.insert(path, Node::with_content(durable));
        }
        copy
    }
}

impl Default for Disk {
    fn default() -> Self {
        Disk::new()
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let prefix = self.prefix();
        let mut st = state();
        st.files.retain(|path, _| !path.starts_with(&prefix));
        st.disks.remove(&self.id);
    }
}

// ---------------------------------------------------------------------------------------------
// The machine's state: every disk and file, behind one lock.

struct DiskState {
    mode: CrashMode,
    /// Bumped at every crash; a handle of an older generation is dead.
    generation: u64,
    crashed: bool,
    crash_in: Option<(u64, bool)>,
    sync_delay: Duration,
    stats: DiskStats,
}

/// One file: what the page cache holds, what the disk holds, and what separates them.
struct Node {
    cache: Vec<u8>,
    durable: Vec<u8>,
    /// Writes and truncates since the last sync, in order.
    unsynced: Vec<Change>,
    /// The database file's lock levels, by handle.
    locks: HashMap<u64, c_int>,
    /// The WAL index, shared by this generation's handles of a database file.
    shm: Option<Arc<Shm>>,
}

enum Change {
    Write(u64, Vec<u8>),
    Truncate(u64),
}

impl Change {
    fn apply(&self, to: &mut Vec<u8>) {
        match self {
            Change::Write(offset, data) => write_at(to, *offset, data),
            Change::Truncate(len) => to.resize(*len as usize, 0),
        }
    }
}

fn write_at(to: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let (start, end) = (offset as usize, offset as usize + data.len());
    if to.len() < end {
        to.resize(end, 0);
    }
    to[start..end].copy_from_slice(data);
}

impl Node {
    fn with_content(durable: Vec<u8>) -> Node {
        Node {
            cache: durable.clone(),
            durable,
            unsynced: Vec::new(),
            locks: HashMap::new(),
            shm: None,
        }
    }
}

#[derive(Default)]
struct Machine {
    disks: HashMap<u64, DiskState>,
    files: HashMap<String, Node>,
}

impl Machine {
    fn disk(&mut self, id: u64) -> &mut DiskState {
        self.disks.get_mut(&id).expect("a live disk")
    }

    /// The power goes: unsynced changes are dropped (or some kept), shared memory and locks
    /// vanish, every handle of this generation dies.
    fn crash(&mut self, id: u64) {
        let prefix = format!("/power-loss/{id}/");
        let disk = self.disks.get_mut(&id).expect("a live disk");
        disk.crashed = true;
        disk.crash_in = None;
        disk.generation += 1;
        disk.stats.crashes += 1;
        let mut rng = match disk.mode {
            CrashMode::DropUnsynced => None,
            CrashMode::KeepSomeUnsynced(seed) => Some(XorShift(
                seed ^ disk.stats.crashes.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            )),
        };
        let mut paths: Vec<&String> = self
            .files
            .keys()
            .filter(|p| p.starts_with(&prefix))
            .collect();
        paths.sort(); // HashMap order must not decide what a seeded crash keeps.
        let paths: Vec<String> = paths.into_iter().cloned().collect();
        for path in paths {
            let node = self.files.get_mut(&path).expect("listed");
            let mut changes = std::mem::take(&mut node.unsynced);
            if let Some(rng) = rng.as_mut() {
                // Shuffle, then keep each with probability 1/2.
                for i in (1..changes.len()).rev() {
                    changes.swap(i, rng.below(i as u64 + 1) as usize);
                }
                for change in changes.drain(..) {
                    if rng.below(2) == 0 {
                        change.apply(&mut node.durable);
                        disk.stats.kept_unsynced += 1;
                    } else {
                        lose(&mut disk.stats, &change);
                    }
                }
            }
            for change in &changes {
                lose(&mut disk.stats, change);
            }
            node.cache = node.durable.clone();
            node.locks.clear();
            node.shm = None;
        }
    }
}

fn lose(stats: &mut DiskStats, change: &Change) {
    stats.lost_writes += 1;
    if let Change::Write(_, data) = change {
        stats.lost_bytes += data.len() as u64;
    }
}

struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

static MACHINE: LazyLock<Mutex<Machine>> = LazyLock::new(Default::default);

fn state() -> MutexGuard<'static, Machine> {
    MACHINE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The disk a path is on: `/power-loss/<id>/...`.
fn disk_of(path: &str) -> Option<u64> {
    path.strip_prefix("/power-loss/")?
        .split_once('/')?
        .0
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------------
// Shared memory (the WAL index)

/// Regions of zeroed memory at fixed addresses (SQLite keeps pointers into them), and the
/// eight WAL-index locks.
struct Shm {
    regions: Mutex<Vec<*mut u8>>,
    locks: Mutex<ShmLocks>,
}

// The regions are raw memory that SQLite itself synchronises (its locks and `xShmBarrier`);
// the vectors of pointers are behind mutexes.
unsafe impl Send for Shm {}
unsafe impl Sync for Shm {}

#[derive(Default)]
struct ShmLocks {
    /// Per slot: how many handles hold it shared, and who holds it exclusively.
    shared: [u32; ffi::SQLITE_SHM_NLOCK as usize],
    exclusive: [Option<u64>; ffi::SQLITE_SHM_NLOCK as usize],
    /// Per handle: bit masks of the slots it holds shared and exclusively.
    held: HashMap<u64, (u32, u32)>,
}

impl Shm {
    fn new() -> Arc<Shm> {
        Arc::new(Shm {
            regions: Mutex::new(Vec::new()),
            locks: Mutex::new(ShmLocks::default()),
        })
    }

    fn layout() -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(SHM_REGION, 8).expect("layout")
    }

    fn map(&self, region: usize, extend: bool) -> Option<*mut u8> {
        let mut regions = self.regions.lock().unwrap_or_else(PoisonError::into_inner);
        while regions.len() <= region {
            if !extend {
                return Some(std::ptr::null_mut());
            }
            // SAFETY: a non-zero-sized layout; freed in `Drop` with the same layout.
            let p = unsafe { std::alloc::alloc_zeroed(Self::layout()) };
            if p.is_null() {
                return None;
            }
            regions.push(p);
        }
        Some(regions[region])
    }

    fn lock(&self, handle: u64, offset: c_int, n: c_int, flags: c_int) -> c_int {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        let ShmLocks {
            shared,
            exclusive,
            held,
        } = &mut *locks;
        let (mine_shared, mine_exclusive) = held.entry(handle).or_default();
        let slots = offset as usize..(offset + n) as usize;
        let mask: u32 = slots.clone().map(|s| 1u32 << s).sum();
        let unlock = flags & ffi::SQLITE_SHM_UNLOCK != 0;
        let is_shared = flags & ffi::SQLITE_SHM_SHARED != 0;
        match (unlock, is_shared) {
            (true, true) => {
                for s in slots {
                    if *mine_shared & (1 << s) != 0 {
                        shared[s] -= 1;
                    }
                }
                *mine_shared &= !mask;
            }
            (true, false) => {
                for s in slots {
                    if exclusive[s] == Some(handle) {
                        exclusive[s] = None;
                    }
                }
                *mine_exclusive &= !mask;
            }
            (false, true) => {
                for s in slots.clone() {
                    if exclusive[s].is_some_and(|h| h != handle) {
                        return ffi::SQLITE_BUSY;
                    }
                }
                for s in slots {
                    if *mine_shared & (1 << s) == 0 {
                        shared[s] += 1;
                    }
                }
                *mine_shared |= mask;
            }
            (false, false) => {
                for s in slots.clone() {
                    let others_shared = shared[s] - u32::from(*mine_shared & (1 << s) != 0);
                    if exclusive[s].is_some_and(|h| h != handle) || others_shared > 0 {
                        return ffi::SQLITE_BUSY;
                    }
                }
                for s in slots {
                    exclusive[s] = Some(handle);
                }
                *mine_exclusive |= mask;
            }
        }
        ffi::SQLITE_OK
    }

    /// Drops every lock `handle` holds (it unmapped, or its process died).
    fn release(&self, handle: u64) {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((mine_shared, _)) = locks.held.remove(&handle) {
            for s in 0..ffi::SQLITE_SHM_NLOCK as usize {
                if mine_shared & (1 << s) != 0 {
                    locks.shared[s] -= 1;
                }
            }
        }
        for slot in &mut locks.exclusive {
            if *slot == Some(handle) {
                *slot = None;
            }
        }
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        let regions = self
            .regions
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for p in regions.drain(..) {
            // SAFETY: allocated in `map` with this layout; no handle maps this `Shm` any more
            // (each holds an `Arc` while mapped).
            unsafe { std::alloc::dealloc(p, Self::layout()) };
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The VFS and its file handles

/// One open file. SQLite allocates `szOsFile` bytes for it and hands them back on every call.
#[repr(C)]
struct VfsFile {
    base: ffi::sqlite3_file,
    handle: *mut Handle,
}

struct Handle {
    id: u64,
    /// `None`: a temporary file of SQLite's own, private to this handle.
    path: Option<String>,
    private: Option<Vec<u8>>,
    disk: Option<u64>,
    generation: u64,
    delete_on_close: bool,
    shm: Option<Arc<Shm>>,
}

/// Set once the VFS is registered (its table is leaked: SQLite keeps pointers to it).
static REGISTERED: OnceLock<()> = OnceLock::new();
static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);

/// Registers the VFS with SQLite under [`VFS_NAME`] (once per process; later calls do
/// nothing). It is never the default VFS.
pub fn register() {
    REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS, which lives for the process.
        let default = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
        assert!(!default.is_null(), "SQLite has no default VFS");
        let name = CString::new(VFS_NAME).expect("name").into_raw();
        let vfs = Box::new(ffi::sqlite3_vfs {
            iVersion: 1,
            szOsFile: std::mem::size_of::<VfsFile>() as c_int,
            mxPathname: 512,
            pNext: std::ptr::null_mut(),
            zName: name,
            pAppData: default.cast(),
            xOpen: Some(x_open),
            xDelete: Some(x_delete),
            xAccess: Some(x_access),
            xFullPathname: Some(x_full_pathname),
            xDlOpen: None,
            xDlError: None,
            xDlSym: None,
            xDlClose: None,
            xRandomness: Some(x_randomness),
            xSleep: Some(x_sleep),
            xCurrentTime: Some(x_current_time),
            xGetLastError: Some(x_get_last_error),
            xCurrentTimeInt64: None,
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        });
        let vfs = Box::into_raw(vfs);
        // SAFETY: `vfs` is a complete, leaked table; SQLite keeps the pointer.
        let rc = unsafe { ffi::sqlite3_vfs_register(vfs, 0) };
        assert_eq!(rc, ffi::SQLITE_OK, "registering the power-loss VFS");
    });
}

static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 2,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: None,
    xUnfetch: None,
};

/// The default VFS this one borrows time, randomness and sleep from.
fn default_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: `vfs` is ours (registered above) and its pAppData is the default VFS.
    unsafe { (*vfs).pAppData.cast() }
}

/// # Safety
/// `file` must be a `VfsFile` that `x_open` filled in and `x_close` has not freed.
unsafe fn handle<'a>(file: *mut ffi::sqlite3_file) -> &'a mut Handle {
    // SAFETY: per the contract, `handle` points to a live boxed Handle; SQLite serialises calls
    // on one file handle.
    unsafe { &mut *(*file.cast::<VfsFile>()).handle }
}

/// Whether `handle` belongs to a process that has crashed.
fn dead(st: &mut Machine, handle: &Handle) -> bool {
    handle.disk.is_some_and(|id| match st.disks.get(&id) {
        Some(disk) => disk.crashed || disk.generation != handle.generation,
        None => true,
    })
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let _ = vfs;
    // SAFETY: SQLite passes `szOsFile` bytes at `file`; pMethods must be null on failure.
    unsafe { (*file).pMethods = std::ptr::null() };
    let id = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
    let mut handle = Handle {
        id,
        path: None,
        private: None,
        disk: None,
        generation: 0,
        delete_on_close: flags & ffi::SQLITE_OPEN_DELETEONCLOSE != 0,
        shm: None,
    };
    if name.is_null() {
        handle.private = Some(Vec::new());
    } else {
        // SAFETY: a NUL-terminated path from SQLite.
        let path = unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned();
        let mut st = state();
        let Some(disk_id) = disk_of(&path) else {
            return ffi::SQLITE_CANTOPEN;
        };
        let Some(disk) = st.disks.get(&disk_id) else {
            return ffi::SQLITE_CANTOPEN;
        };
        if disk.crashed {
            return ffi::SQLITE_CANTOPEN;
        }
        handle.generation = disk.generation;
        handle.disk = Some(disk_id);
        if !st.files.contains_key(&path) {
            if flags & ffi::SQLITE_OPEN_CREATE == 0 {
                return ffi::SQLITE_CANTOPEN;
            }
            st.files
                .insert(path.clone(), Node::with_content(Vec::new()));
        }
        handle.path = Some(path);
    }
    let boxed = Box::into_raw(Box::new(handle));
    // SAFETY: as above; the handle is freed in x_close.
    unsafe {
        (*file.cast::<VfsFile>()).handle = boxed;
        (*file).pMethods = &IO_METHODS;
        if !out_flags.is_null() {
            *out_flags = flags;
        }
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_delete(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    _sync_dir: c_int,
) -> c_int {
    // SAFETY: a NUL-terminated path from SQLite.
    let path = unsafe { CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned();
    let mut st = state();
    if let Some(id) = disk_of(&path)
        && st.disks.get(&id).is_none_or(|d| d.crashed)
    {
        return ffi::SQLITE_IOERR_DELETE;
    }
    match st.files.remove(&path) {
        Some(_) => ffi::SQLITE_OK,
        None => ffi::SQLITE_IOERR_DELETE_NOENT,
    }
}

unsafe extern "C" fn x_access(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    _flags: c_int,
    out: *mut c_int,
) -> c_int {
    // SAFETY: a NUL-terminated path and an out pointer from SQLite.
    unsafe {
        let path = CStr::from_ptr(name).to_string_lossy();
        *out = c_int::from(state().files.contains_key(path.as_ref()));
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n_out: c_int,
    out: *mut c_char,
) -> c_int {
    // SAFETY: `name` is NUL-terminated; `out` has room for `n_out` bytes.
    unsafe {
        let bytes = CStr::from_ptr(name).to_bytes_with_nul();
        if bytes.len() > n_out as usize {
            return ffi::SQLITE_CANTOPEN;
        }
        std::ptr::copy_nonoverlapping(bytes.as_ptr().cast(), out, bytes.len());
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_randomness(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    let d = default_vfs(vfs);
    // SAFETY: the default VFS's own method, with SQLite's arguments.
    unsafe { (*d).xRandomness.map_or(0, |f| f(d, n, out)) }
}

unsafe extern "C" fn x_sleep(vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    let d = default_vfs(vfs);
    // SAFETY: as above.
    unsafe { (*d).xSleep.map_or(0, |f| f(d, micros)) }
}

unsafe extern "C" fn x_current_time(vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    let d = default_vfs(vfs);
    // SAFETY: as above.
    unsafe { (*d).xCurrentTime.map_or(ffi::SQLITE_ERROR, |f| f(d, out)) }
}

unsafe extern "C" fn x_get_last_error(
    vfs: *mut ffi::sqlite3_vfs,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    let d = default_vfs(vfs);
    // SAFETY: as above.
    unsafe { (*d).xGetLastError.map_or(0, |f| f(d, n, out)) }
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: the handle x_open boxed; SQLite calls xClose once and never uses the file after.
    let handle = unsafe { Box::from_raw((*file.cast::<VfsFile>()).handle) };
    if let Some(shm) = &handle.shm {
        shm.release(handle.id);
    }
    if let Some(path) = &handle.path {
        let mut st = state();
        let is_dead = dead(&mut st, &handle);
        if let Some(node) = st.files.get_mut(path) {
            node.locks.remove(&handle.id);
        }
        if handle.delete_on_close && !is_dead {
            st.files.remove(path);
        }
    }
    ffi::SQLITE_OK
}

/// Runs `f` on the bytes the page cache holds for `file`, or answers `dead_rc` for a dead
/// handle. `io`: a write, sync or truncate, which counts towards an armed crash.
fn with_file(
    file: *mut ffi::sqlite3_file,
    dead_rc: c_int,
    io: bool,
    f: impl FnOnce(&mut Vec<u8>, Option<(&mut Node, &mut DiskState)>) -> c_int,
) -> c_int {
    // SAFETY: SQLite calls io methods only on files x_open filled in.
    let handle = unsafe { handle(file) };
    if let Some(private) = handle.private.as_mut() {
        return f(private, None);
    }
    let path = handle.path.clone().expect("named file");
    let mut st = state();
    if dead(&mut st, handle) {
        return dead_rc;
    }
    let disk_id = handle.disk.expect("on a disk");
    let mut crash_after = false;
    if io {
        let disk = st.disk(disk_id);
        disk.stats.ios += 1;
        if let Some((n, after)) = disk.crash_in {
            if n <= 1 {
                if !after {
                    st.crash(disk_id);
                    return dead_rc;
                }
                crash_after = true;
            } else {
                disk.crash_in = Some((n - 1, after));
            }
        }
    }
    let Machine { disks, files } = &mut *st;
    let disk = disks.get_mut(&disk_id).expect("live disk");
    let Some(node) = files.get_mut(&path) else {
        return dead_rc;
    };
    let mut cache = std::mem::take(&mut node.cache);
    let rc = f(&mut cache, Some((node, disk)));
    // The closure may have replaced nothing; put the cache back.
    if let Some(node) = files.get_mut(&path) {
        node.cache = cache;
    }
    if crash_after {
        st.crash(disk_id);
        return dead_rc;
    }
    rc
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    with_file(file, ffi::SQLITE_IOERR_READ, false, |cache, _| {
        let (start, amount) = (offset as usize, amount as usize);
        let available = cache.len().saturating_sub(start).min(amount);
        // SAFETY: SQLite's buffer holds `amount` bytes.
        let out = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), amount) };
        out[..available].copy_from_slice(&cache[start.min(cache.len())..][..available]);
        if available < amount {
            // A short read must zero the rest (SQLite relies on it).
            out[available..].fill(0);
            return ffi::SQLITE_IOERR_SHORT_READ;
        }
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite's buffer holds `amount` bytes.
    let data = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), amount as usize) };
    with_file(file, ffi::SQLITE_IOERR_WRITE, true, |cache, node| {
        write_at(cache, offset as u64, data);
        if let Some((node, _)) = node {
            node.unsynced
                .push(Change::Write(offset as u64, data.to_vec()));
        }
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    with_file(file, ffi::SQLITE_IOERR_TRUNCATE, true, |cache, node| {
        cache.resize(size as usize, 0);
        if let Some((node, _)) = node {
            node.unsynced.push(Change::Truncate(size as u64));
        }
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, _flags: c_int) -> c_int {
    let mut delay = Duration::ZERO;
    let rc = with_file(file, ffi::SQLITE_IOERR_FSYNC, true, |_, node| {
        if let Some((node, disk)) = node {
            disk.stats.syncs += 1;
            delay = disk.sync_delay;
            for change in node.unsynced.drain(..) {
                change.apply(&mut node.durable);
            }
        }
        ffi::SQLITE_OK
    });
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    rc
}

unsafe extern "C" fn x_file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    with_file(file, ffi::SQLITE_IOERR_FSTAT, false, |cache, _| {
        // SAFETY: SQLite's out pointer.
        unsafe { *size = cache.len() as ffi::sqlite3_int64 };
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: an open file.
    let id = unsafe { handle(file) }.id;
    with_file(file, ffi::SQLITE_IOERR_LOCK, false, |_, node| {
        let Some((node, _)) = node else {
            return ffi::SQLITE_OK;
        };
        let mine = node
            .locks
            .get(&id)
            .copied()
            .unwrap_or(ffi::SQLITE_LOCK_NONE);
        if mine >= level {
            return ffi::SQLITE_OK;
        }
        let others = node
            .locks
            .iter()
            .filter(|(h, _)| **h != id)
            .map(|(_, l)| *l)
            .max()
            .unwrap_or(ffi::SQLITE_LOCK_NONE);
        let granted = match level {
            ffi::SQLITE_LOCK_SHARED => others < ffi::SQLITE_LOCK_PENDING,
            ffi::SQLITE_LOCK_RESERVED => others < ffi::SQLITE_LOCK_RESERVED,
            _ => {
                if others >= ffi::SQLITE_LOCK_PENDING {
                    false
                } else if others >= ffi::SQLITE_LOCK_SHARED {
                    // Keep PENDING so that no new reader gets in, as unix locking does.
                    node.locks.insert(id, ffi::SQLITE_LOCK_PENDING);
                    return ffi::SQLITE_BUSY;
                } else {
                    true
                }
            }
        };
        if !granted {
            return ffi::SQLITE_BUSY;
        }
        node.locks.insert(id, level);
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: an open file.
    let id = unsafe { handle(file) }.id;
    // Unlocking never fails, not even for a dead handle (its locks vanished with the crash).
    with_file(file, ffi::SQLITE_OK, false, |_, node| {
        if let Some((node, _)) = node {
            let mine = node.locks.entry(id).or_insert(ffi::SQLITE_LOCK_NONE);
            *mine = (*mine).min(level);
        }
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    with_file(file, ffi::SQLITE_IOERR_LOCK, false, |_, node| {
        let reserved = node
            .is_some_and(|(node, _)| node.locks.values().any(|l| *l >= ffi::SQLITE_LOCK_RESERVED));
        // SAFETY: SQLite's out pointer.
        unsafe { *out = c_int::from(reserved) };
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_file_control(
    _file: *mut ffi::sqlite3_file,
    _op: c_int,
    _arg: *mut c_void,
) -> c_int {
    ffi::SQLITE_NOTFOUND
}

unsafe extern "C" fn x_sector_size(_file: *mut ffi::sqlite3_file) -> c_int {
    4096
}

unsafe extern "C" fn x_device_characteristics(_file: *mut ffi::sqlite3_file) -> c_int {
    // True of this model: a write never damages bytes outside its own range, even when the
    // power goes. Nothing more (no atomic or sequential writes) is promised.
    ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE
}

unsafe extern "C" fn x_shm_map(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    if size as usize != SHM_REGION {
        return ffi::SQLITE_IOERR_SHMMAP;
    }
    // SAFETY: an open file.
    let handle = unsafe { handle(file) };
    if handle.shm.is_none() {
        let Some(path) = handle.path.clone() else {
            return ffi::SQLITE_IOERR_SHMMAP;
        };
        let mut st = state();
        if dead(&mut st, handle) {
            return ffi::SQLITE_IOERR_SHMMAP;
        }
        let Some(node) = st.files.get_mut(&path) else {
            return ffi::SQLITE_IOERR_SHMMAP;
        };
        // The first handle to map after every other unmapped starts from a zeroed index,
        // from which SQLite recovers the WAL (as unix does when it takes the DMS lock).
        let shm = match &node.shm {
            Some(shm) if Arc::strong_count(shm) > 1 => Arc::clone(shm),
            _ => {
                let shm = Shm::new();
                node.shm = Some(Arc::clone(&shm));
                shm
            }
        };
        handle.shm = Some(shm);
    }
    let shm = handle.shm.as_ref().expect("mapped");
    match shm.map(region as usize, extend != 0) {
        Some(p) => {
            // SAFETY: SQLite's out pointer.
            unsafe { *out = p.cast() };
            ffi::SQLITE_OK
        }
        None => ffi::SQLITE_IOERR_SHMMAP,
    }
}

unsafe extern "C" fn x_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: an open file.
    let handle = unsafe { handle(file) };
    let Some(shm) = handle.shm.clone() else {
        return ffi::SQLITE_IOERR_SHMLOCK;
    };
    if flags & ffi::SQLITE_SHM_LOCK != 0 && dead(&mut state(), handle) {
        return ffi::SQLITE_IOERR_SHMLOCK;
    }
    shm.lock(handle.id, offset, n, flags)
}

unsafe extern "C" fn x_shm_barrier(_file: *mut ffi::sqlite3_file) {
    std::sync::atomic::fence(Ordering::SeqCst);
}

unsafe extern "C" fn x_shm_unmap(file: *mut ffi::sqlite3_file, _delete: c_int) -> c_int {
    // SAFETY: an open file.
    let handle = unsafe { handle(file) };
    if let Some(shm) = handle.shm.take() {
        shm.release(handle.id);
    }
    ffi::SQLITE_OK
}
