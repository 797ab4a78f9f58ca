//! Batches: the checks on several threads at once, the records stored in order on the
//! calling thread as their checks finish, and, for a run of batches each made durable by
//! a flush, the flush of one batch overlapped with the checks of the next.

use std::{
    panic::AssertUnwindSafe,
    sync::{mpsc, Condvar, Mutex, MutexGuard, PoisonError},
};

use kith_protocol::VerifiedRecord;

use super::{admit_in, Admission, Chain, Outcome, CHECK_CHUNK, MAX_BATCH_THREADS};
use crate::{
    keep::Came,
    store::{InsertRun, Store, StoreError},
};

/// The checks of one chunk, in order.
type Checked = Vec<Result<VerifiedRecord, String>>;

/// The outcomes of one batch, in order.
pub type Outcomes = Vec<Result<Outcome, StoreError>>;

/// Where and how [`ingest_batches_with`] ingests.
#[derive(Clone, Copy)]
pub struct BatchRun<'a> {
    /// The store.
    pub store: &'a Store,
    /// Who the node is and what it keeps.
    pub admission: &'a Admission,
    /// How the records came.
    pub came: Came,
    /// The time the records are checked against.
    pub now_ms: u64,
    /// Threads that check at once (this one included).
    pub threads: usize,
    /// What makes a batch durable, run after each batch is stored (`None`: no flush).
    pub flush: Option<&'a (dyn Fn() -> Result<(), StoreError> + Sync)>,
}

/// Which chunks may be checked: those before `allowed`, taken in order. Threads that
/// find none wait here. Checks run at most one batch ahead of the batch being stored or
/// flushed, so a long run of batches holds at most two batches of checked records.
struct Gate {
    state: Mutex<GateState>,
    opened: Condvar,
}

struct GateState {
    /// The next chunk not yet taken by any thread.
    next: usize,
    /// Chunks before this one may be checked.
    allowed: usize,
    /// Chunks in all.
    len: usize,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next chunk to check, if one may be checked now; with `wait`, waits until one
    /// may (`None`: none is left).
    fn take(&self, wait: bool) -> Option<usize> {
        let mut state = self.lock();
        loop {
            if state.next >= state.len {
                return None;
            }
            if state.next < state.allowed {
                state.next += 1;
                return Some(state.next - 1);
            }
            if !wait {
                return None;
            }
            state = self.opened.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Lets chunks before `upto` be checked.
    fn open(&self, upto: usize) {
        let mut state = self.lock();
        if upto > state.allowed {
            state.allowed = upto;
            self.opened.notify_all();
        }
    }
}

/// Opens the whole gate when dropped, so that no helper waits for ever if the storing
/// thread stops early (a panic).
struct OpenAll<'a>(&'a Gate);

impl Drop for OpenAll<'_> {
    fn drop(&mut self) {
        self.0.open(usize::MAX);
    }
}

/// Ingests `batches` in order, as [`super::ingest_batch_with`] ingests one: the checks
/// (`check`, which must call [`super::check`]) run on `threads` threads, this thread
/// stores the checked records in order as they become ready and checks records itself
/// while it waits. The outcomes are those of [`super::ingest`] called on every record
/// of every batch in turn.
///
/// With a `flush`, each batch is made durable by it once stored, on a thread of its own,
/// while the checks of the next batch go on; nothing of the next batch is stored before
/// that flush returns. `done` gets each batch's index and outcomes, in batch order, after
/// its flush, with the flush's result (`Ok` without a flush): a caller that acknowledges
/// records there acknowledges only durable ones.
pub fn ingest_batches_with<F, D>(run: &BatchRun<'_>, batches: &[&[Vec<u8>]], check: F, mut done: D)
where
    F: Fn(&[u8]) -> Result<VerifiedRecord, String> + Sync,
    D: FnMut(usize, Outcomes, Result<(), StoreError>),
{
    let BatchRun { store, admission, came, now_ms, threads, flush } = *run;
    let chunks: Vec<&[Vec<u8>]> = batches.iter().flat_map(|b| b.chunks(CHECK_CHUNK)).collect();
    // The first chunk of each batch, and the end.
    let mut starts = Vec::with_capacity(batches.len() + 1);
    starts.push(0);
    for b in batches {
        starts.push(starts.last().copied().unwrap_or(0) + b.len().div_ceil(CHECK_CHUNK));
    }
    // Chunks of the batches before `b` may be checked.
    let upto = |b: usize| starts.get(b.min(batches.len())).copied().unwrap_or(chunks.len());
    let gate = Gate {
        state: Mutex::new(GateState { next: 0, allowed: upto(2), len: chunks.len() }),
        opened: Condvar::new(),
    };
    let helpers = threads.clamp(1, MAX_BATCH_THREADS).min(chunks.len()).saturating_sub(1);
    // A check that panics (a bug) fails its chunk's records, not the batch.
    let check_chunk = |i: usize| -> Option<Checked> {
        let part = chunks.get(i)?;
        let checked = std::panic::catch_unwind(AssertUnwindSafe(|| {
            part.iter().map(|b| check(b)).collect::<Checked>()
        }));
        Some(
            checked
                .unwrap_or_else(|_| part.iter().map(|_| Err("check failed".to_owned())).collect()),
        )
    };
    let mut chain = Chain::new();
    std::thread::scope(|scope| {
        let _open_all = OpenAll(&gate);
        // At most one message per chunk: the channel never blocks a helper.
        let (tx, rx) = mpsc::sync_channel(chunks.len());
        let workers: Vec<_> = (0..helpers)
            .map(|_| {
                let tx = tx.clone();
                let (gate, check_chunk) = (&gate, &check_chunk);
                scope.spawn(move || {
                    while let Some(i) = gate.take(true) {
                        let Some(checked) = check_chunk(i) else { break };
                        if tx.send((i, checked)).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        // The flush thread: one flush per request, each result sent back.
        let (flush_tx, flush_rx) = mpsc::channel::<()>();
        let (flushed_tx, flushed_rx) = mpsc::channel();
        if let Some(flush) = flush {
            scope.spawn(move || {
                for () in flush_rx {
                    if flushed_tx.send(flush()).is_err() {
                        break;
                    }
                }
            });
        } else {
            drop((flush_rx, flushed_tx));
        }
        let mut ready: Vec<Option<Checked>> = (0..chunks.len()).map(|_| None).collect();
        // The batch being flushed, with its outcomes.
        let mut flushing: Option<(usize, Outcomes)> = None;
        let mut turn = 0;
        for (b, batch) in batches.iter().enumerate() {
            let mut out = Vec::with_capacity(batch.len());
            // New posts wait in a run, written together at the batch's end or before a
            // record that must not be checked while they wait (`store/grouped.rs`); the
            // run holds the store's writer lock meanwhile, also while this thread checks
            // or waits for a chunk. `waiting`: their places in `out`.
            let mut group: Option<InsertRun<'_>> = None;
            let mut waiting = Vec::new();
            for _ in starts.get(b).copied().unwrap_or(0)..upto(b + 1) {
                if let Some((f, outcomes)) = flushing.take() {
                    // Nothing is stored while the batch before flushes: check meanwhile.
                    let result = loop {
                        if let Ok(result) = flushed_rx.try_recv() {
                            break result;
                        }
                        if !collect_or_check(&gate, &rx, &mut ready, &check_chunk, false) {
                            break flushed_rx.recv().unwrap_or_else(|_| Err(gone()));
                        }
                    };
                    done(f, outcomes, result);
                    gate.open(upto(b + 2));
                }
                let checked = loop {
                    if let Some(checked) = ready.get_mut(turn).and_then(Option::take) {
                        break Some(checked);
                    }
                    if !collect_or_check(&gate, &rx, &mut ready, &check_chunk, true) {
                        // Every helper is gone and the chunk never came: one panicked.
                        break None;
                    }
                };
                let len = chunks.get(turn).map_or(0, |c| c.len());
                match checked {
                    Some(checked) => {
                        for c in checked {
                            let Ok(record) =
                                c.map_err(|reason| out.push(Ok(Outcome::Invalid(reason))))
                            else {
                                continue;
                            };
                            if group.is_none() {
                                group = store.insert_run().ok();
                            }
                            let g = group.as_mut();
                            let o = admit_in(
                                store,
                                admission,
                                record,
                                came,
                                now_ms,
                                Some(&mut chain),
                                g,
                            );
                            if let Some(g) = group.as_mut() {
                                mark_lost(g.take_lost(), &mut out, &mut waiting);
                                if g.is_empty() {
                                    waiting.clear();
                                }
                                if g.waiting() {
                                    waiting.push(out.len());
                                }
                            }
                            out.push(o);
                        }
                    }
                    None => {
                        out.extend((0..len).map(|_| Ok(Outcome::Invalid("check failed".into()))))
                    }
                }
                turn += 1;
            }
            write_group(group.take(), &mut out, &mut waiting);
            if let Some((f, outcomes)) = flushing.take() {
                // An empty batch after one that flushes: in order.
                done(f, outcomes, flushed_rx.recv().unwrap_or_else(|_| Err(gone())));
            }
            if flush.is_some() && !out.is_empty() && flush_tx.send(()).is_ok() {
                flushing = Some((b, out));
            } else {
                let result = if flush.is_some() && !out.is_empty() { Err(gone()) } else { Ok(()) };
                done(b, out, result);
                gate.open(upto(b + 3));
            }
        }
        if let Some((f, outcomes)) = flushing.take() {
            done(f, outcomes, flushed_rx.recv().unwrap_or_else(|_| Err(gone())));
        }
        drop(flush_tx);
        for worker in workers {
            // Joined here, so a helper's panic does not propagate; its chunks were
            // reported as failed above.
            let _ = worker.join();
        }
    });
}

/// One step of waiting for a chunk: takes what a helper finished, else checks a chunk
/// here, else (with `block`) waits for a helper. Returns false when there was nothing to
/// do: no chunk may be checked now and, with `block`, no helper is left.
fn collect_or_check(
    gate: &Gate,
    rx: &mpsc::Receiver<(usize, Checked)>,
    ready: &mut [Option<Checked>],
    check_chunk: &impl Fn(usize) -> Option<Checked>,
    block: bool,
) -> bool {
    if let Ok((i, done)) = rx.try_recv() {
        put(ready, i, done);
        return true;
    }
    if let Some(i) = gate.take(false) {
        if let Some(done) = check_chunk(i) {
            put(ready, i, done);
        }
        return true;
    }
    if !block {
        return false;
    }
    match rx.recv() {
        Ok((i, done)) => {
            put(ready, i, done);
            true
        }
        Err(_) => false,
    }
}

/// Writes the posts waiting in `group` (if any) and lets go of the writer lock; the
/// outcomes of posts a failed write lost become errors.
fn write_group(group: Option<InsertRun<'_>>, out: &mut Outcomes, waiting: &mut Vec<usize>) {
    if let Some(mut group) = group {
        let _ = group.write();
        mark_lost(group.take_lost(), out, waiting);
    }
    waiting.clear();
}

/// The last `lost` of the places in `out` of posts that waited in a group: their write
/// failed, so they are not stored after all.
fn mark_lost(lost: usize, out: &mut Outcomes, waiting: &mut Vec<usize>) {
    for i in waiting.drain(waiting.len().saturating_sub(lost)..) {
        if let Some(o) = out.get_mut(i) {
            *o = Err(StoreError::Sled(sled::Error::Io(std::io::Error::other(
                "the batch's records could not be written",
            ))));
        }
    }
}

/// The error a batch gets when its flush thread is gone (it panicked).
fn gone() -> StoreError {
    StoreError::Sled(sled::Error::Io(std::io::Error::other("the flush thread stopped")))
}

fn put<T>(ready: &mut [Option<T>], i: usize, done: T) {
    if let Some(slot) = ready.get_mut(i) {
        *slot = Some(done);
    }
}
