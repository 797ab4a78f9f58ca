//! The record heap: the signed bytes of stored records, kept in append-only segment files
//! of the store's own (`heap/0000000001`, ...) rather than in sled; sled keeps only where
//! each record is ([`Loc`], see `records.rs`).
//!
//! A segment is a run of frames `[length u32 LE][check: 8 bytes of blake3(bytes)][bytes]`,
//! written at its end and never changed. One segment at a time takes new frames (the
//! active one); it is sealed once the next frame would take it past [`SEGMENT_BYTES`],
//! and every opening starts a new one, so a frame torn by a crash can only be the last of
//! a sealed segment (dead space, never read: nothing points to it). A frame is written
//! (the write returned) before anything in sled points to it, and [`Heap::sync`] makes
//! the heap durable before sled's flush, so a location sled kept after a crash or a
//! power loss names complete bytes. A frame that does not read back whole, or whose
//! check fails, reads as no record, with a warning.
//!
//! Erased records leave dead frames. The heap counts each segment's live bytes (frames
//! something points to); `records/compact.rs` copies the live frames of a sealed segment
//! that is less than half full of them (nine tenths at rest) to the active one
//! ([`Heap::scan`] gives them), repoints their locations, and removes the segment with
//! [`Heap::remove`] once a flush made the new locations durable.
//!
//! Strangers' records, which the store evicts oldest first (`quota.rs`), go to segments
//! of their own ([`Lane::Strangers`], a second active segment): evictions then empty
//! whole segments in the order they were written, rather than leaving every segment some
//! dead frames. A sealed segment whose live count falls to nothing is handed on
//! ([`Heap::take_empty`]); `records.rs` checks each frame of it against `record_locs` and
//! removes it after the next flush, as compaction does, with nothing to copy.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::{File, OpenOptions},
    io,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
};

use bincode::{Decode, Encode};
use kith_protocol::limits::MAX_RECORD_BYTES;

use super::{backend::lock, codec::Value};

/// The size a segment is sealed at (a frame never straddles two). Dead space waits in
/// sealed segments until one is under half live, so this bounds it too: smaller segments
/// are compacted sooner and in shorter pauses of the writer, at a file per 16 MiB.
pub(super) const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

#[cfg(test)]
thread_local! {
    /// The segment size of heaps opened by this thread (tests: small segments).
    pub(super) static TEST_SEGMENT_BYTES: std::cell::Cell<Option<u64>> =
        const { std::cell::Cell::new(None) };
}

/// A strangers' segment is sealed at this share of [`SEGMENT_BYTES`] (2 MiB): the store
/// keeps some 10,000 strangers' records (about 3 MB), so their segments empty, and go,
/// a few megabytes after they were written, not after a whole segment.
const STRANGERS_SHARE: u64 = 8;

/// Bytes of a frame before the record: its length and its check.
pub(super) const FRAME_HEADER: u64 = 12;

/// Where a record's frame is: the segment, the frame's offset in it, the record's length
/// (its bytes follow the frame's header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Loc {
    /// The segment's number.
    pub seg: u32,
    /// The frame's offset in the segment.
    pub off: u32,
    /// The record's signed bytes.
    pub len: u32,
}

impl Value for Loc {
    const WHAT: &'static str = "record location";
}

impl Loc {
    /// The bytes the frame takes in its segment.
    pub(super) fn frame_bytes(&self) -> u64 {
        FRAME_HEADER + u64::from(self.len)
    }
}

/// The check of a frame: the first 8 bytes of the record's blake3 hash.
fn check(bytes: &[u8]) -> [u8; 8] {
    let hash = blake3::hash(bytes);
    let mut out = [0u8; 8];
    out.copy_from_slice(&hash.as_bytes()[..8]);
    out
}

fn frame(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER as usize + bytes.len());
    frame_into(&mut out, bytes);
    out
}

/// Appends the frame of `bytes` to `out`.
fn frame_into(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&check(bytes));
    out.extend_from_slice(bytes);
}

/// A frame read back whole: where it is, and the record's signed bytes.
pub(super) type Frame = (Loc, Vec<u8>);

/// Which active segment a frame goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Records the store keeps until their authors delete them.
    Main = 0,
    /// Strangers' records: evicted oldest first, so their segments empty in order.
    Strangers = 1,
}

impl Lane {
    /// The lane of a stranger's record, or of any other.
    pub(crate) fn of(stranger: bool) -> Self {
        if stranger {
            Self::Strangers
        } else {
            Self::Main
        }
    }
}

/// The heap of one store.
pub(crate) struct Heap {
    dir: PathBuf,
    /// Every segment on disk, open for reading (and the active one for writing).
    files: RwLock<BTreeMap<u32, Arc<File>>>,
    state: Mutex<State>,
    /// [`SEGMENT_BYTES`] (tests: smaller).
    segment_bytes: u64,
}

#[derive(Default)]
struct State {
    /// Per [`Lane`], the segment taking new frames and where its next frame goes (none
    /// until the lane's first append after opening).
    active: [Option<(u32, u64)>; 2],
    /// Segments opened for [`Lane::Strangers`] since the heap opened (compaction never
    /// copies into them).
    strangers: BTreeSet<u32>,
    /// Sealed segments of `strangers` whose live count fell to nothing since
    /// [`Heap::take_empty`].
    empty: Vec<u32>,
    /// Segments written since the last [`Heap::sync`].
    dirty: BTreeSet<u32>,
    /// Whether a segment was created since the last sync (the folder is synced too).
    created: bool,
    /// Live frame bytes per segment (`None`: not counted since the store opened).
    live: Option<BTreeMap<u32, u64>>,
}

fn name(seg: u32) -> String {
    format!("{seg:010}")
}

impl Heap {
    /// Opens the heap in `dir` (created when missing).
    ///
    /// # Errors
    /// The file system's.
    pub(super) fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(seg) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            files.insert(seg, Arc::new(OpenOptions::new().read(true).open(entry.path())?));
        }
        #[cfg(test)]
        let segment_bytes = TEST_SEGMENT_BYTES.with(std::cell::Cell::get).unwrap_or(SEGMENT_BYTES);
        #[cfg(not(test))]
        let segment_bytes = SEGMENT_BYTES;
        let (dir, files) = (dir.to_owned(), RwLock::new(files));
        Ok(Self { dir, files, state: Mutex::default(), segment_bytes })
    }

    /// The segments on disk, in order.
    pub(super) fn segments(&self) -> Vec<u32> {
        self.files
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }

    fn file(&self, seg: u32) -> Option<Arc<File>> {
        self.files.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&seg).cloned()
    }

    /// Where a frame of `size` bytes goes in `lane`: the end of its active segment, or the
    /// start of a new one when it would pass the lane's size ([`Heap::limit`]; a frame
    /// bigger than that takes a segment of its own).
    fn place(&self, state: &mut State, lane: Lane, size: u64) -> io::Result<(u32, u64)> {
        match state.active[lane as usize] {
            Some((seg, end)) if end + size <= self.limit(lane) || end == 0 => Ok((seg, end)),
            previous => {
                if let Some((seg, _)) = previous.filter(|_| lane == Lane::Strangers) {
                    // Sealed with every frame already evicted.
                    if state.live.as_ref().is_some_and(|l| l.get(&seg).is_none_or(|n| *n == 0)) {
                        state.empty.push(seg);
                    }
                }
                let next = self.segments().last().map_or(1, |s| s + 1);
                let path = self.dir.join(name(next));
                let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
                self.files
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(next, Arc::new(file));
                state.created = true;
                state.active[lane as usize] = Some((next, 0));
                if lane == Lane::Strangers {
                    state.strangers.insert(next);
                }
                Ok((next, 0))
            }
        }
    }

    /// The size `lane`'s segments are sealed at.
    fn limit(&self, lane: Lane) -> u64 {
        match lane {
            Lane::Main => self.segment_bytes,
            Lane::Strangers => (self.segment_bytes / STRANGERS_SHARE).max(1),
        }
    }

    /// Writes `frames` (whole frames, one after the other) at `off` in segment `seg`, the
    /// end of `lane`'s active segment, and counts them written and live.
    fn write_run(
        &self,
        state: &mut State,
        lane: Lane,
        (seg, off): (u32, u64),
        frames: &[u8],
    ) -> io::Result<()> {
        let file = self.file(seg).ok_or_else(|| io::Error::other("active segment missing"))?;
        file.write_all_at(frames, off)?;
        let size = frames.len() as u64;
        state.active[lane as usize] = Some((seg, off + size));
        state.dirty.insert(seg);
        if let Some(live) = state.live.as_mut() {
            *live.entry(seg).or_default() += size;
        }
        Ok(())
    }

    /// Writes `bytes` as a new frame at the end of the active segment; where it is. The
    /// frame is written (not yet synced) when this returns. Counted live.
    ///
    /// # Errors
    /// The file system's; nothing points to a frame whose write failed.
    pub(super) fn append(&self, bytes: &[u8]) -> io::Result<Loc> {
        self.append_in(Lane::Main, bytes)
    }

    /// [`Heap::append`] to `lane`'s active segment.
    ///
    /// # Errors
    /// The file system's; nothing points to a frame whose write failed.
    pub(super) fn append_in(&self, lane: Lane, bytes: &[u8]) -> io::Result<Loc> {
        let framed = frame(bytes);
        let mut state = lock(&self.state);
        let (seg, end) = self.place(&mut state, lane, framed.len() as u64)?;
        self.write_run(&mut state, lane, (seg, end), &framed)?;
        Ok(Loc { seg, off: end as u32, len: bytes.len() as u32 })
    }

    /// [`Heap::append`] for many records at once: their frames one after the other, in one
    /// write per segment they fall in (one in all unless the active segment fills up);
    /// where each is, in order. Every frame is written (not yet synced) when this returns.
    ///
    /// # Errors
    /// The file system's; then nothing of `records` is counted live (frames written
    /// before the failure are dead space).
    pub(super) fn append_many(&self, records: &[&[u8]]) -> io::Result<Vec<Loc>> {
        let mut state = lock(&self.state);
        let mut out = Vec::with_capacity(records.len());
        let mut run: Option<(u32, u64)> = None;
        let mut buf = Vec::new();
        // Frames of `out` written (and counted live) so far.
        let mut written = 0;
        let result = (|| {
            for bytes in records {
                let size = FRAME_HEADER + bytes.len() as u64;
                let room =
                    run.is_some_and(|(_, off)| off + buf.len() as u64 + size <= self.segment_bytes);
                let (seg, off) = match run {
                    Some(at) if room => at,
                    _ => {
                        if let Some(at) = run.take() {
                            self.write_run(&mut state, Lane::Main, at, &buf)?;
                            written = out.len();
                            buf.clear();
                        }
                        *run.insert(self.place(&mut state, Lane::Main, size)?)
                    }
                };
                out.push(Loc {
                    seg,
                    off: (off + buf.len() as u64) as u32,
                    len: bytes.len() as u32,
                });
                frame_into(&mut buf, bytes);
            }
            if let Some(at) = run {
                self.write_run(&mut state, Lane::Main, at, &buf)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            if let Some(live) = state.live.as_mut() {
                for loc in out.get(..written).unwrap_or_default() {
                    if let Some(n) = live.get_mut(&loc.seg) {
                        *n = n.saturating_sub(loc.frame_bytes());
                    }
                }
            }
            return Err(e);
        }
        Ok(out)
    }

    /// The record at `loc`: `None` (with a warning) when its frame is missing, short, or
    /// fails its check.
    ///
    /// # Errors
    /// The file system's, other than a frame that is not all there.
    pub(super) fn read(&self, loc: &Loc) -> io::Result<Option<Vec<u8>>> {
        match self.frame_at(loc)? {
            Ok(body) => Ok(Some(body)),
            Err(why) => {
                tracing::warn!(?loc, "a record's heap {why}: read as not stored");
                Ok(None)
            }
        }
    }

    /// The record at `loc` if its frame is there whole, without a warning: an index's
    /// hint of where a record was may name a frame that compaction has since removed.
    pub(super) fn peek(&self, loc: &Loc) -> Option<Vec<u8>> {
        self.frame_at(loc).ok()?.ok()
    }

    /// The record at `loc`, or why it is not there.
    fn frame_at(&self, loc: &Loc) -> io::Result<Result<Vec<u8>, &'static str>> {
        let Some(file) = self.file(loc.seg) else { return Ok(Err("segment is missing")) };
        if loc.len as usize > MAX_RECORD_BYTES {
            return Ok(Err("frame is longer than a record"));
        }
        let mut buf = vec![0u8; loc.frame_bytes() as usize];
        match file.read_exact_at(&mut buf, u64::from(loc.off)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok(Err("frame is cut short"));
            }
            Err(e) => return Err(e),
        }
        let body = buf.split_off(FRAME_HEADER as usize);
        if buf[..4] != loc.len.to_le_bytes() || buf[4..12] != check(&body) {
            return Ok(Err("frame fails its check"));
        }
        Ok(Ok(body))
    }

    /// Makes every frame written so far durable (before sled's flush makes durable what
    /// points to them).
    ///
    /// # Errors
    /// The file system's.
    pub(super) fn sync(&self) -> io::Result<()> {
        let (dirty, created) = {
            let mut state = lock(&self.state);
            (std::mem::take(&mut state.dirty), std::mem::take(&mut state.created))
        };
        let result = (|| {
            for seg in &dirty {
                if let Some(file) = self.file(*seg) {
                    file.sync_data()?;
                }
            }
            if created {
                File::open(&self.dir)?.sync_all()?;
            }
            Ok(())
        })();
        if result.is_err() {
            // Not synced: the next sync tries again.
            let mut state = lock(&self.state);
            state.dirty.extend(dirty);
            state.created |= created;
        }
        result
    }

    /// A frame of `loc` is no longer pointed to. A sealed strangers' segment left with no
    /// live frame is remembered for [`Heap::take_empty`].
    pub(super) fn dead(&self, loc: &Loc) {
        let mut state = lock(&self.state);
        let State { live, active, strangers, empty, .. } = &mut *state;
        let Some(n) = live.as_mut().and_then(|live| live.get_mut(&loc.seg)) else { return };
        let was = *n;
        *n = n.saturating_sub(loc.frame_bytes());
        let sealed = active.iter().flatten().all(|(seg, _)| *seg != loc.seg);
        if was > 0 && *n == 0 && sealed && strangers.contains(&loc.seg) {
            empty.push(loc.seg);
        }
    }

    /// The sealed strangers' segments whose live count fell to nothing since the last call
    /// (to be checked against the locations before they are removed: see `records.rs`).
    /// Only segments compaction never copies into: one of the main lane may hold copies
    /// whose locations are not written yet.
    pub(super) fn take_empty(&self) -> Vec<u32> {
        std::mem::take(&mut lock(&self.state).empty)
    }

    /// A frame of `loc` is pointed to again (compaction counts its copies live only once
    /// their locations are written: see `records/compact.rs`).
    pub(super) fn alive(&self, loc: &Loc) {
        if let Some(live) = lock(&self.state).live.as_mut() {
            *live.entry(loc.seg).or_default() += loc.frame_bytes();
        }
    }

    /// Sets the live bytes per segment (counted from the locations, or saved ones).
    pub(super) fn set_live(&self, live: BTreeMap<u32, u64>) {
        lock(&self.state).live = Some(live);
    }

    /// Forgets the live bytes (they are counted again from the locations before the next
    /// compaction).
    pub(super) fn forget_live(&self) {
        lock(&self.state).live = None;
    }

    /// Live bytes per segment, if counted.
    pub(super) fn live(&self) -> Option<BTreeMap<u32, u64>> {
        lock(&self.state).live.clone()
    }

    /// Bytes of every segment file, and the live bytes among them (`None`: not counted).
    pub(super) fn bytes(&self) -> (u64, Option<u64>) {
        let files: Vec<Arc<File>> = self
            .files
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let total = files.iter().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum();
        (total, lock(&self.state).live.as_ref().map(|l| l.values().sum()))
    }

    /// Sealed segments holding less than `percent` % of a segment of live frames, least
    /// live first (`None` when live bytes are not counted). A strangers' segment counts
    /// against its own smaller size (after the heap opens again it counts as any other).
    pub(super) fn sparse(&self, percent: u64) -> Option<Vec<u32>> {
        let state = lock(&self.state);
        let live = state.live.as_ref()?;
        let mut out: Vec<(u64, u32)> = self
            .segments()
            .into_iter()
            .filter(|seg| state.active.iter().flatten().all(|(active, _)| active != seg))
            .map(|seg| (live.get(&seg).copied().unwrap_or(0), seg))
            .filter(|(n, seg)| {
                let lane = if state.strangers.contains(seg) { Lane::Strangers } else { Lane::Main };
                n * 100 < self.limit(lane) * percent
            })
            .collect();
        out.sort_unstable();
        Some(out.into_iter().map(|(_, seg)| seg).collect())
    }

    /// Every whole frame of segment `seg` in order (location and bytes), and whether the
    /// segment was read to its end (`false`: it stops at a frame that is cut short or
    /// fails its check, as a crash leaves the last one).
    ///
    /// # Errors
    /// The file system's.
    pub(super) fn scan(&self, seg: u32) -> io::Result<(Vec<Frame>, bool)> {
        let Some(file) = self.file(seg) else { return Ok((vec![], true)) };
        let len = file.metadata()?.len();
        let mut data = vec![0u8; len as usize];
        file.read_exact_at(&mut data, 0)?;
        let mut out = Vec::new();
        let mut off = 0usize;
        while off < data.len() {
            let Some(header) = data.get(off..off + FRAME_HEADER as usize) else { break };
            let n = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let start = off + FRAME_HEADER as usize;
            let Some(body) = data.get(start..start + n).filter(|_| n <= MAX_RECORD_BYTES) else {
                break;
            };
            if header[4..12] != check(body) {
                break;
            }
            out.push((Loc { seg, off: off as u32, len: n as u32 }, body.to_vec()));
            off = start + n;
        }
        Ok((out, off == data.len()))
    }

    /// Removes segment `seg` (compacted, and the flush after it made its frames' new
    /// locations durable).
    ///
    /// # Errors
    /// The file system's.
    pub(super) fn remove(&self, seg: u32) -> io::Result<()> {
        let mut state = lock(&self.state);
        if state.active.iter().flatten().any(|(s, _)| *s == seg) {
            return Ok(());
        }
        self.files.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&seg);
        if let Some(live) = state.live.as_mut() {
            live.remove(&seg);
        }
        state.strangers.remove(&seg);
        state.dirty.remove(&seg);
        match std::fs::remove_file(self.dir.join(name(seg))) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
