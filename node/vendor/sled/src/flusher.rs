use std::thread;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::*;

#[derive(Debug, Clone, Copy)]
pub(crate) enum ShutdownState {
    Running,
    ShuttingDown,
    ShutDown,
}

impl ShutdownState {
    fn is_running(self) -> bool {
        if let ShutdownState::Running = self { true } else { false }
    }

    fn is_shutdown(self) -> bool {
        if let ShutdownState::ShutDown = self { true } else { false }
    }
}

#[derive(Debug)]
pub(crate) struct Flusher {
    shutdown: Arc<Mutex<ShutdownState>>,
    sc: Arc<Condvar>,
    join_handle: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Flusher {
    /// Spawns a thread that periodically calls `callback` until dropped.
    pub(crate) fn new(
        name: String,
        pagecache: Arc<PageCache>,
        flush_every_ms: u64,
    ) -> Self {
        #[allow(clippy::mutex_atomic)] // mutex used in CondVar below
        let shutdown = Arc::new(Mutex::new(ShutdownState::Running));
        let sc = Arc::new(Condvar::new());

        let join_handle = thread::Builder::new()
            .name(name)
            .spawn({
                let shutdown = shutdown.clone();
                let sc = sc.clone();
                move || run(&shutdown, &sc, &pagecache, flush_every_ms)
            })
            .unwrap();

        Self { shutdown, sc, join_handle: Mutex::new(Some(join_handle)) }
    }
}

fn run(
    shutdown: &Arc<Mutex<ShutdownState>>,
    sc: &Arc<Condvar>,
    pagecache: &Arc<PageCache>,
    flush_every_ms: u64,
) {
    let flush_every = Duration::from_millis(flush_every_ms);
    let mut shutdown = shutdown.lock();
    let mut wrote_data = false;
    // kith (KITH-PATCHES.md, change 21): cleaning at rest.
    let mut idle = crate::pagecache::IdleCleaner::default();
    // kith (KITH-PATCHES.md, change 46): a store at rest, a flusher at rest.
    let mut rest = crate::pagecache::Rest::default();
    while shutdown.is_running() || wrote_data {
        let before = std::time::Instant::now();
        // nothing reserved in the log since the last round's cleaning
        let quiet = idle.was_quiet(pagecache);
        let resting = rest.resting() && shutdown.is_running();
        let gc = || {
            if resting {
                pagecache.attempt_gc_at_rest()
            } else {
                pagecache.attempt_gc()
            }
        };
        let cc = concurrency_control::read();
        match pagecache.log.roll_iobuf() {
            Ok(0) => {
                wrote_data = false;
                if !shutdown.is_running() {
                    break;
                }
            }
            Ok(_) => {
                wrote_data = true;
                if !shutdown.is_running() {
                    // loop right away if we're in
                    // shutdown mode, to flush data
                    // more quickly.
                    continue;
                }
            }
            Err(e) => {
                error!("failed to flush from periodic flush thread: {}", e);

                #[cfg(feature = "failpoints")]
                pagecache.set_failpoint(e);

                *shutdown = ShutdownState::ShutDown;

                // having held the mutex makes this linearized
                // with the notify below.
                drop(shutdown);

                let _notified = sc.notify_all();
                return;
            }
        }
        drop(cc);

        // so we can spend a little effort
        // cleaning up the segments. try not to
        // spend more than half of our sleep
        // time rewriting pages though.
        //
        // this looks weird because it's a rust-style do-while
        // where the conditional is the full body
        let mut cleaned = false;
        let mut idle_step = quiet && shutdown.is_running();
        while {
            let step = if idle_step {
                // kith (change 21): the store was idle for a whole round:
                // the cleaner may take a segment sled would leave alone.
                idle_step = false;
                idle.clean(pagecache).and_then(|_| gc())
            } else {
                gc()
            };
            // kith (KITH-PATCHES.md, change 40): the store was written
            // since the last round, nothing is queued and this round's half
            // has time left: the cleaner takes the least live segment above
            // sled's half-live threshold while the segments hold too much
            // dead space in all. (A store at rest is change 21's.)
            let step = step.and_then(|moved| {
                if moved
                    || quiet
                    || !shutdown.is_running()
                    || before.elapsed() >= flush_every / 2
                {
                    Ok(moved)
                } else {
                    pagecache.drain_while_written()
                }
            });
            let made_progress = match step {
                Err(e) => {
                    error!(
                        "failed to clean file from periodic flush thread: {}",
                        e
                    );

                    #[cfg(feature = "failpoints")]
                    pagecache.set_failpoint(e);

                    *shutdown = ShutdownState::ShutDown;

                    // having held the mutex makes this linearized
                    // with the notify below.
                    drop(shutdown);

                    let _notified = sc.notify_all();
                    return;
                }
                Ok(false) => false,
                Ok(true) => true,
            };
            cleaned |= made_progress;
            made_progress
                && shutdown.is_running()
                && before.elapsed() < flush_every / 2
        } {}
        idle.mark(pagecache);

        let at_rest = quiet && !wrote_data && !cleaned;
        if let Err(e) = rest.sync(pagecache, at_rest) {
            error!("failed to fsync from periodic flush thread: {}", e);
        }

        // KITH-PATCHES change 15: a round that wrote or cleaned calls the idle hook.
        if wrote_data || cleaned {
            crate::thread_idle();
        }

        let sleep_duration = rest
            .note(at_rest, flush_every)
            .checked_sub(before.elapsed())
            .unwrap_or_else(|| Duration::from_millis(1));

        if shutdown.is_running() {
            // only sleep before the next flush if we are
            // running normally. if we're shutting down,
            // flush faster.
            sc.wait_for(&mut shutdown, sleep_duration);
        }
    }

    *shutdown = ShutdownState::ShutDown;

    // having held the mutex makes this linearized
    // with the notify below.
    drop(shutdown);

    let _notified = sc.notify_all();
}

impl Drop for Flusher {
    fn drop(&mut self) {
        let mut shutdown = self.shutdown.lock();
        if shutdown.is_running() {
            *shutdown = ShutdownState::ShuttingDown;
            let _notified = self.sc.notify_all();
        }

        while !shutdown.is_shutdown() {
            let _ = self.sc.wait_for(&mut shutdown, Duration::from_millis(100));
        }

        let mut join_handle_opt = self.join_handle.lock();
        if let Some(join_handle) = join_handle_opt.take() {
            if let Err(e) = join_handle.join() {
                error!("error joining Periodic thread: {:?}", e);
            }
        }
    }
}
