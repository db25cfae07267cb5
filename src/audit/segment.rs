//! Spool segments (`aas_policy::audit::segment`): each backend that records
//! audit events appends them to a file of its own,
//! `$PGDATA/ai_agent_safety_spool/<dboid>/<made>-<pid>.seg`, mapped into its
//! memory. An append is a copy into the map and a store of the new end
//! (`published`): no system call, no file lock shared with other backends.
//! The pages belong to the file, not to the process, so a backend killed
//! by SIGKILL (or a crash of the whole server) loses no published line;
//! what it was copying when it died was not published, and its statement
//! had not run.
//!
//! The audit writer takes each segment's new lines into one closed spool
//! file (in time order) and loads that as before (`loader`); it removes a
//! segment once its owner sealed it (a full segment, or the backend's exit)
//! or is gone, and everything in it is taken.

use aas_policy::audit::segment::{
    self as policy, HEADER_LEN, MAGIC, OFF_MAGIC, OFF_PUBLISHED, OFF_SEALED, OFF_TAKEN,
};
use memmap2::MmapMut;
use pgrx::pg_sys;
use rustc_hash::FxHashMap as HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

fn word(map: &MmapMut, off: usize) -> &AtomicU64 {
    debug_assert!(off + 8 <= HEADER_LEN && map.len() >= HEADER_LEN);
    // SAFETY: the map is page-aligned and at least HEADER_LEN long; the
    // header's words are 8-aligned; other processes touch them only as
    // atomics too (or not at all).
    unsafe { &*(map.as_ptr().add(off) as *const AtomicU64) }
}

/// This backend's segment: its file (open, holding the owner's lock), its
/// map, and how many of its bytes have disk blocks.
struct Mine {
    dboid: u32,
    file: File,
    map: MmapMut,
    allocated: usize,
}
// SAFETY: a backend is single-threaded; only `append` and the exit callback touch it.
static mut MINE: Option<Mine> = None;
// SAFETY: as MINE; only `append` touches it.
static mut EXIT_HOOKED: bool = false;
// SAFETY: as MINE; only `usable` touches it.
static mut USABLE: Option<bool> = None;
// SAFETY: as MINE; only `wanted` touches it.
static mut ASKED: u32 = 0;

/// Does this backend's next event go to its segment? Not its first
/// `SHARED_FIRST` (see `aas_policy::audit::segment::SHARED_FIRST`).
pub fn wanted() -> bool {
    // SAFETY: see ASKED.
    unsafe {
        if ASKED >= policy::SHARED_FIRST {
            return true;
        }
        ASKED += 1;
        false
    }
}

#[pgrx::pg_guard]
// SAFETY: an on_proc_exit callback: touches only this backend's own map.
unsafe extern "C-unwind" fn seal_at_exit(_code: i32, _arg: pg_sys::Datum) {
    // SAFETY: see MINE.
    if let Some(m) = unsafe { (*std::ptr::addr_of_mut!(MINE)).take() } {
        word(&m.map, OFF_SEALED).store(1, Ordering::Release);
    }
}

fn now() -> i64 {
    // SAFETY: reads the clock; never raises.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// Can this backend use segments in the spool directory `dir()`? Only where
/// the file system allocates a file's blocks when asked (ext4, XFS, tmpfs):
/// on a copy-on-write or network file system a store into a mapped page
/// could find no space when the page is written back, with no error to
/// refuse the statement with. Elsewhere events go to the shared file with
/// `write()`. Decided once per backend.
pub fn usable(dir: impl FnOnce() -> PathBuf) -> bool {
    // SAFETY: see USABLE.
    let cached = unsafe { &mut *std::ptr::addr_of_mut!(USABLE) };
    *cached.get_or_insert_with(|| {
        const EXT4: i64 = 0xEF53;
        const XFS: i64 = 0x5846_5342;
        const TMPFS: i64 = 0x0102_1994;
        let dir = dir();
        let _ = std::fs::create_dir_all(&dir);
        let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
            return false;
        };
        // SAFETY: a NUL-terminated path and a zeroed struct for the kernel to fill.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
        rc == 0 && [EXT4, XFS, TMPFS].contains(&(st.f_type as i64))
    })
}

/// Is the file system of `dir` mounted read-only? (A store into a mapped
/// page would then fault where `write()` returns an error.)
fn read_only(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return true;
    };
    // SAFETY: a NUL-terminated path and a zeroed struct for the kernel to fill.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    rc != 0 || st.f_flag & libc::ST_RDONLY != 0
}

/// Takes (`F_OFD_SETLK`) or tests (`F_OFD_GETLK`) the owner's lock on a
/// segment: an open file description lock, which the kernel drops when the
/// owning backend dies, however it dies. Test: true when someone holds it.
fn owner_lock(file: &File, take: bool) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: a zeroed flock (l_pid must be 0 for OFD locks), then filled.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as _;
    fl.l_whence = libc::SEEK_SET as _;
    let cmd = if take {
        libc::F_OFD_SETLK
    } else {
        libc::F_OFD_GETLK
    };
    // SAFETY: a valid descriptor and flock.
    if unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(!take && fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// Allocates disk blocks for the first `bytes` of a segment.
fn allocate(file: &File, bytes: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor; a plain system call.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, bytes as libc::off_t) } {
        0 => Ok(()),
        rc => Err(std::io::Error::from_raw_os_error(rc)),
    }
}

fn make(dboid: u32, dir: &Path, line: usize) -> std::io::Result<Mine> {
    std::fs::create_dir_all(dir)?;
    if read_only(dir) {
        return Err(std::io::Error::from_raw_os_error(libc::EROFS));
    }
    // SAFETY: reads a backend variable.
    let pid = unsafe { pg_sys::MyProcPid };
    let size = policy::size_for(line);
    let path = dir.join(policy::name(now(), pid));
    // Made under another name and renamed when its lock, size and header
    // are in place: a writer never sees a segment without its owner's lock
    // (which it would take for a dead owner's, and remove).
    let new = path.with_extension("new");
    let made = || -> std::io::Result<Mine> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&new)?;
        owner_lock(&file, true)?;
        // Sparse: blocks come with `allocate`, as the lines reach them.
        file.set_len(size as u64)?;
        let allocated = policy::allocation(0, HEADER_LEN + line, size);
        allocate(&file, allocated)?;
        // SAFETY: the file is this process's own, sized above; nobody
        // truncates it; only its allocated part is ever written.
        let map = unsafe { MmapMut::map_mut(&file) }?;
        word(&map, OFF_PUBLISHED).store(HEADER_LEN as u64, Ordering::Relaxed);
        word(&map, OFF_TAKEN).store(HEADER_LEN as u64, Ordering::Relaxed);
        word(&map, OFF_MAGIC).store(MAGIC, Ordering::Release);
        std::fs::rename(&new, &path)?;
        Ok(Mine {
            dboid,
            file,
            map,
            allocated,
        })
    };
    made().inspect_err(|_| {
        let _ = std::fs::remove_file(&new);
    })
}

/// Appends one event line (with its newline) to this backend's segment,
/// making one in the database's spool directory `dir()` when there is none
/// or it is full.
pub fn append(dboid: u32, dir: impl FnOnce() -> PathBuf, line: &[u8]) -> std::io::Result<()> {
    // SAFETY: see MINE.
    let mine = unsafe { &mut *std::ptr::addr_of_mut!(MINE) };
    let fits = matches!(mine, Some(m) if m.dboid == dboid
        && word(&m.map, OFF_PUBLISHED).load(Ordering::Relaxed) as usize + line.len() <= m.map.len());
    if !fits {
        // Sealed, then closed (which drops the owner's lock).
        if let Some(old) = mine.take() {
            word(&old.map, OFF_SEALED).store(1, Ordering::Release);
        }
        let m = make(dboid, &dir(), line.len())?;
        // SAFETY: see EXIT_HOOKED.
        unsafe {
            if !EXIT_HOOKED {
                pg_sys::on_proc_exit(Some(seal_at_exit), pg_sys::Datum::from(0));
                EXIT_HOOKED = true;
            }
        }
        *mine = Some(m);
    }
    let m = mine.as_mut().expect("made above");
    let at = word(&m.map, OFF_PUBLISHED).load(Ordering::Relaxed) as usize;
    let end = at + line.len();
    if end > m.allocated {
        let want = policy::allocation(m.allocated, end, m.map.len());
        allocate(&m.file, want)?;
        m.allocated = want;
    }
    m.map[at..end].copy_from_slice(line);
    word(&m.map, OFF_PUBLISHED).store(end as u64, Ordering::Release);
    Ok(())
}

/// A segment as the writer sees it: its header mapped read-write (the
/// writer stores `taken`), and its state.
struct Seen {
    name: String,
    map: Option<Rc<MmapMut>>,
    state: policy::State,
}

/// The audit writer's segments, kept open and mapped from one pass to the
/// next: a segment's size is fixed when it is made and its name is never
/// used again, so the map stays right for as long as the file exists.
/// Opening, mapping and unmapping each segment on every look (a pass
/// looks at each two or three times) cost the writer more system time
/// than anything else it did (`strace -c`: `munmap` at 46 us a call). Only
/// the writer keeps them (`keep_maps`); a backend that looks (audit_stats)
/// maps and lets go.
struct Kept {
    file: File,
    map: Rc<MmapMut>,
}
// SAFETY: a backend is single-threaded; only `see`, `forget_all_but` and `keep_maps` touch it.
static mut KEPT: Option<HashMap<String, Kept>> = None;

/// Called by the audit writer: its looks at segments keep them mapped.
pub fn keep_maps() {
    // SAFETY: see KEPT.
    unsafe { *std::ptr::addr_of_mut!(KEPT) = Some(HashMap::default()) };
}

/// Lets go of kept segments other than these (removed, or never to be seen again).
fn forget_all_but(names: &[PathBuf]) {
    // SAFETY: see KEPT.
    if let Some(kept) = unsafe { (*std::ptr::addr_of_mut!(KEPT)).as_mut() } {
        kept.retain(|name, _| {
            names
                .iter()
                .any(|p| p.file_name().is_some_and(|n| n == name.as_str()))
        });
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == policy::EXT))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn see(path: &Path) -> Option<Seen> {
    let name = path.file_name()?.to_str()?.to_string();
    // SAFETY: see KEPT.
    let kept = unsafe { (*std::ptr::addr_of_mut!(KEPT)).as_mut() };
    if let Some(k) = kept.as_ref().and_then(|k| k.get(&name)) {
        // A lock that cannot be tested counts as held: the segment stays.
        let owner_alive = owner_lock(&k.file, false).unwrap_or(true);
        let len = k.map.len() as u64;
        return Some(seen(name, Some(k.map.clone()), owner_alive, len));
    }
    let file = OpenOptions::new().read(true).write(true).open(path).ok()?;
    let owner_alive = owner_lock(&file, false).unwrap_or(true);
    let len = file.metadata().ok()?.len();
    let map = if len >= HEADER_LEN as u64 {
        // SAFETY: the writer only reads the lines, and stores `taken`, an
        // atomic word no backend writes; the owner never truncates it.
        unsafe { MmapMut::map_mut(&file) }.ok().map(Rc::new)
    } else {
        None
    };
    if let (Some(kept), Some(map)) = (kept, &map) {
        kept.insert(
            name.clone(),
            Kept {
                file,
                map: map.clone(),
            },
        );
    }
    Some(seen(name, map, owner_alive, len))
}

fn seen(name: String, map: Option<Rc<MmapMut>>, owner_alive: bool, len: u64) -> Seen {
    let state = match &map {
        Some(m) => {
            // Sealed first, then published: a line appended before the seal
            // is counted in `published` as read here (the other order could
            // see an older end and a seal that came after a newer one).
            let sealed = word(m, OFF_SEALED).load(Ordering::Acquire) != 0;
            policy::State {
                valid: word(m, OFF_MAGIC).load(Ordering::Acquire) == MAGIC,
                published: word(m, OFF_PUBLISHED).load(Ordering::Acquire),
                taken: word(m, OFF_TAKEN).load(Ordering::Relaxed),
                sealed,
                owner_alive,
                len,
            }
        }
        None => policy::State {
            valid: false,
            published: 0,
            taken: 0,
            sealed: false,
            owner_alive,
            len,
        },
    };
    Seen { name, map, state }
}

/// Lines waiting in the segments of a database's spool directory (for audit_stats).
pub fn waiting_lines(dir: &Path) -> u64 {
    segments(dir)
        .iter()
        .filter_map(|p| see(p))
        .filter_map(|s| {
            let (from, to) = s.state.waiting()?;
            let m = s.map.as_ref()?;
            Some(
                m[from as usize..to as usize]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count() as u64,
            )
        })
        .sum()
}

/// Does any segment in a database's spool directory hold lines not yet taken?
pub fn any_waiting(dir: &Path) -> bool {
    segments(dir)
        .iter()
        .filter_map(|p| see(p))
        .any(|s| s.state.waiting().is_some())
}

fn set_taken(dir: &Path, name: &str, end: u64) {
    if let Some(s) = see(&dir.join(name)) {
        if let Some(m) = &s.map {
            word(m, OFF_TAKEN).fetch_max(end, Ordering::Release);
        }
    }
}

/// The lock that makes one process at a time take a database's segments
/// (`<dir>.lock` beside its spool directory, held while the returned file
/// is open): two takes of the same lines into two closed files would load
/// them twice, and the single writer per database is what prevents that;
/// this lock holds it whatever the writer slots say. None when another
/// process holds it.
pub fn taker_lock(dir: &Path) -> Option<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.with_extension("lock"))
        .ok()?;
    owner_lock(&file, true).ok()?;
    Some(file)
}

/// Applies the sidecars a writer killed in the middle of `take` left behind
/// (see `aas_policy::audit::segment::format_ranges`).
pub fn recover(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for p in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
        // A load's converted copy left by a writer killed in the middle of
        // it, whose file has gone since.
        if matches!(ext, "bin" | "clean") && !p.with_extension("copy").exists() {
            let _ = std::fs::remove_file(&p);
            continue;
        }
        // A segment whose backend died while making it (its lock is not
        // held, and it is too old to be in the making still).
        if ext == "new" {
            let stale = std::fs::metadata(&p)
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() >= 60);
            let held = File::open(&p).map_or(true, |f| owner_lock(&f, false).unwrap_or(true));
            if stale && !held {
                let _ = std::fs::remove_file(&p);
            }
            continue;
        }
        if ext != "ranges" {
            continue;
        }
        if p.with_extension("copy").exists() {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            for (name, end) in policy::parse_ranges(&text) {
                set_taken(dir, &name, end);
            }
        } else {
            let _ = std::fs::remove_file(p.with_extension("tmp"));
        }
        let _ = std::fs::remove_file(&p);
    }
}

/// Takes the waiting lines of every segment in a database's spool directory
/// into one closed spool file there (`<time>-<seq>-<pid>.copy`, as
/// `spool::rotate` names them). Returns its path, or None when nothing
/// waits (or the file cannot be made).
pub fn take(dir: &Path, seq: &mut u64) -> Option<PathBuf> {
    let listed = segments(dir);
    forget_all_but(&listed);
    let seen: Vec<Seen> = listed.iter().filter_map(|p| see(p)).collect();
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut ranges: Vec<(String, u64)> = Vec::new();
    let mut room = policy::TAKE_MAX;
    for s in &seen {
        if let (Some((from, to)), Some(m)) = (s.state.waiting(), &s.map) {
            if room == 0 {
                break;
            }
            let chunk = &m[from as usize..to as usize];
            let n = policy::take_len(chunk, room);
            chunks.push(&chunk[..n]);
            ranges.push((s.name.clone(), from + n as u64));
            room = room.saturating_sub(n);
        }
    }
    if chunks.is_empty() {
        return None;
    }
    let text = policy::merge(&chunks);
    *seq += 1;
    // SAFETY: reads a backend variable.
    let pid = unsafe { pg_sys::MyProcPid };
    let closed = dir.join(format!("{:020}-{:06}-{pid}.copy", now(), *seq));
    let sidecar = closed.with_extension("ranges");
    let tmp = closed.with_extension("tmp");
    let made = std::fs::write(&sidecar, policy::format_ranges(&ranges))
        .and_then(|_| std::fs::write(&tmp, &text))
        .and_then(|_| std::fs::rename(&tmp, &closed));
    if let Err(e) = made {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(&sidecar);
        pgrx::log!(
            "ai_agent_safety: cannot write a closed spool file in {}: {e}; will retry",
            dir.display()
        );
        return None;
    }
    for s in &seen {
        if let (Some(m), Some((_, end))) = (&s.map, ranges.iter().find(|(n, _)| *n == s.name)) {
            word(m, OFF_TAKEN).fetch_max(*end, Ordering::Release);
        }
    }
    let _ = std::fs::remove_file(&sidecar);
    Some(closed)
}

/// Removes the segments that are done with (sealed, or their owner gone,
/// and everything in them taken).
pub fn reap(dir: &Path) {
    let mut left = Vec::new();
    for p in segments(dir) {
        if let Some(s) = see(&p) {
            if s.state.removable() {
                let _ = std::fs::remove_file(&p);
                continue;
            }
        }
        left.push(p);
    }
    forget_all_but(&left);
}
