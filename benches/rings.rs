//! Criterion benches (`cargo bench`), each group with its baselines measured
//! in the same run:
//!
//! * `spsc_u64_same_thread`, `frames_same_thread/{64,1024,4096}`: the cost
//!   of one operation, next to a `VecDeque` and two `memcpy`s;
//! * `two_threads_u64`: one-by-one and batched throughput between two
//!   threads: shmring SPSC (each next to the textbook Lamport ring of
//!   `textbook/mod.rs`) and MPMC (1 and 2 producers) against rtrb,
//!   crossbeam's `ArrayQueue` and bounded channel;
//! * `rtt_cross_process`: round trips to a forked echo process pinned to
//!   the other core: shared-atomic ping-pong (the hardware limit), the
//!   textbook Lamport ring, shmring Spin, futex ping-pong (the limit for
//!   sleeping), shmring Park, pipe, Unix socket and eventfd.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmring::SegmentOptions;
use shmring::frames;
use shmring::mpmc;
use shmring::raw::typed_spec;
use shmring::spsc::{self, Consumer, Producer};
use shmring::wait::WaitStrategy;

mod textbook;

fn name(tag: &str) -> String {
    format!("shmring-criterion-{}-{tag}", std::process::id())
}

fn typed(c: &mut Criterion) {
    let (mut tx, mut rx) = spsc::anonymous::<u64>(1024).unwrap();
    let mut g = c.benchmark_group("spsc_u64_same_thread");
    g.throughput(Throughput::Elements(1));
    g.bench_function("shmring_push_pop", |b| {
        b.iter(|| {
            tx.try_push(black_box(7)).unwrap();
            black_box(rx.try_pop().unwrap())
        })
    });
    let mut q = std::collections::VecDeque::with_capacity(1024);
    g.bench_function("vecdeque_push_pop_baseline", |b| {
        b.iter(|| {
            q.push_back(black_box(7u64));
            black_box(q.pop_front().unwrap())
        })
    });
    let batch: Vec<u64> = (0..64).collect();
    let mut out = vec![0u64; 64];
    g.throughput(Throughput::Elements(64));
    g.bench_function("shmring_push_slice_pop_into_64", |b| {
        b.iter(|| {
            tx.push_slice(black_box(&batch)).unwrap();
            black_box(rx.pop_into(&mut out).unwrap())
        })
    });
    g.finish();
}

fn frames_sizes(c: &mut Criterion) {
    let (mut tx, mut rx) = frames::anonymous(1 << 20).unwrap();
    let mut g = c.benchmark_group("frames_same_thread");
    for size in [64usize, 1024, 4096] {
        let src = vec![0x5au8; size];
        let mut dst = vec![0u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("shmring_reserve_commit_read_release/{size}"), |b| {
            b.iter(|| {
                let mut chunk = tx.write_chunk(size).unwrap();
                chunk.copy_from_slice(&src);
                chunk.commit();
                let f = rx.read_chunk().unwrap();
                dst.copy_from_slice(&f);
                f.release();
            })
        });
        g.bench_function(format!("memcpy_twice_baseline/{size}"), |b| {
            let mut mid = vec![0u8; size];
            b.iter(|| {
                mid.copy_from_slice(black_box(&src));
                dst.copy_from_slice(black_box(&mid));
            })
        });
    }
    g.finish();
}

/// Times `iters` messages from `produce` (this thread) to `consume` (a
/// scoped thread).
fn two_threads(
    iters: u64,
    produce: impl FnOnce(u64),
    consume: impl FnOnce(u64) + Send,
) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || consume(iters));
        produce(iters);
    });
    start.elapsed()
}

fn spin_until<T>(mut f: impl FnMut() -> Option<T>) -> T {
    loop {
        if let Some(v) = f() {
            return v;
        }
        std::hint::spin_loop();
    }
}

fn two_threads_u64(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_threads_u64");
    g.throughput(Throughput::Elements(1));
    g.bench_function("shmring_spsc", |b| {
        let (mut tx, mut rx) = spsc::anonymous::<u64>(1024).unwrap();
        b.iter_custom(|iters| {
            two_threads(
                iters,
                |n| (0..n).for_each(|i| spin_until(|| tx.try_push(i).ok())),
                |n| {
                    (0..n).for_each(|_| {
                        black_box(spin_until(|| rx.try_pop().ok()));
                    })
                },
            )
        })
    });
    g.bench_function("textbook_lamport_spsc", |b| {
        let mut mem = memmap2::MmapMut::map_anon(textbook::bytes(1024)).unwrap();
        // SAFETY: a fresh zeroed, page-aligned mapping of the right size,
        // dropped after the halves.
        let (mut tx, mut rx) = unsafe { textbook::split(mem.as_mut_ptr(), 1024) };
        b.iter_custom(|iters| {
            two_threads(
                iters,
                |n| (0..n).for_each(|i| spin_until(|| tx.try_push(i).then_some(()))),
                |n| {
                    (0..n).for_each(|_| {
                        black_box(spin_until(|| rx.try_pop()));
                    })
                },
            )
        })
    });
    g.bench_function("shmring_spsc_batched_64", |b| {
        let (mut tx, mut rx) = spsc::anonymous::<u64>(1024).unwrap();
        let batch = [7u64; 64];
        b.iter_custom(|iters| {
            two_threads(
                iters,
                |n| {
                    let mut sent = 0;
                    while sent < n {
                        let want = ((n - sent) as usize).min(64);
                        sent += tx.push_slice(&batch[..want]).unwrap_or(0) as u64;
                    }
                },
                |n| {
                    let mut out = [0u64; 64];
                    let mut got = 0;
                    while got < n {
                        got += rx.pop_into(&mut out).unwrap_or(0) as u64;
                    }
                },
            )
        })
    });
    g.bench_function("textbook_lamport_spsc_batched_64", |b| {
        let mut mem = memmap2::MmapMut::map_anon(textbook::bytes(1024)).unwrap();
        // SAFETY: as in textbook_lamport_spsc.
        let (mut tx, mut rx) = unsafe { textbook::split(mem.as_mut_ptr(), 1024) };
        let batch = [7u64; 64];
        b.iter_custom(|iters| {
            two_threads(
                iters,
                |n| {
                    let mut sent = 0;
                    while sent < n {
                        let want = ((n - sent) as usize).min(64);
                        sent += tx.push_slice(&batch[..want]) as u64;
                    }
                },
                |n| {
                    let mut out = [0u64; 64];
                    let mut got = 0;
                    while got < n {
                        got += rx.pop_into(black_box(&mut out)) as u64;
                    }
                },
            )
        })
    });
    g.bench_function("rtrb_baseline", |b| {
        let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(1024);
        b.iter_custom(|iters| {
            two_threads(
                iters,
                |n| (0..n).for_each(|i| spin_until(|| tx.push(i).ok())),
                |n| {
                    (0..n).for_each(|_| {
                        black_box(spin_until(|| rx.pop().ok()));
                    })
                },
            )
        })
    });
    for producers in [1u64, 2] {
        g.bench_function(format!("shmring_mpmc_{producers}p1c"), |b| {
            let ring = name(&format!("tt-mpmc{producers}"));
            let mut rx = mpmc::Consumer::<u64>::builder(&ring)
                .capacity(1024)
                .producers(2)
                .consumers(1)
                .create()
                .unwrap();
            let mut txs: Vec<_> = (0..producers)
                .map(|_| mpmc::Producer::<u64>::builder(&ring).open().unwrap())
                .collect();
            b.iter_custom(|iters| {
                let per = iters / producers;
                let start = Instant::now();
                std::thread::scope(|s| {
                    for tx in txs.iter_mut() {
                        s.spawn(move || (0..per).for_each(|i| spin_until(|| tx.try_push(i).ok())));
                    }
                    for _ in 0..per * producers {
                        black_box(spin_until(|| rx.try_pop().ok()));
                    }
                });
                start.elapsed()
            })
        });
        g.bench_function(
            format!("crossbeam_array_queue_{producers}p1c_baseline"),
            |b| {
                let q = crossbeam_queue::ArrayQueue::<u64>::new(1024);
                b.iter_custom(|iters| {
                    let per = iters / producers;
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for _ in 0..producers {
                            let q = &q;
                            s.spawn(move || (0..per).for_each(|i| spin_until(|| q.push(i).ok())));
                        }
                        for _ in 0..per * producers {
                            black_box(spin_until(|| q.pop()));
                        }
                    });
                    start.elapsed()
                })
            },
        );
    }
    g.bench_function("crossbeam_channel_bounded_baseline", |b| {
        let (tx, rx) = crossbeam_channel::bounded::<u64>(1024);
        b.iter_custom(|iters| {
            two_threads(
                iters,
                |n| (0..n).for_each(|i| tx.send(i).unwrap()),
                |n| {
                    (0..n).for_each(|_| {
                        black_box(rx.recv().unwrap());
                    })
                },
            )
        })
    });
    g.finish();
}

/// Pins the calling process to `core` (best effort).
fn pin(core: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(core).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

/// Forks an echo process running `child` (pinned to core 1; killed if we
/// die), pins us to core 0, and measures round trips with `ping`, which
/// sends a value and waits for it to come back. Sending `u64::MAX` stops
/// the child.
fn echo_bench(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    label: &str,
    child: impl FnOnce(),
    mut ping: impl FnMut(u64) -> u64,
) {
    // SAFETY: the benches are single-threaded here (criterion runs groups
    // on this thread); the child only runs `child` and exits.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            // SAFETY: prctl(PR_SET_PDEATHSIG) with a signal number.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            pin(1);
            child();
            // SAFETY: leave without running the parent's atexit handlers.
            unsafe { libc::_exit(0) };
        }
        nix::unistd::ForkResult::Parent { child: pid } => {
            pin(0);
            g.bench_function(label, |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for i in 0..iters {
                        assert_eq!(ping(i), i);
                    }
                    start.elapsed()
                })
            });
            ping(u64::MAX);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

fn rtt_cross_process(c: &mut Criterion) {
    let mut g = c.benchmark_group("rtt_cross_process");
    g.throughput(Throughput::Elements(1));

    // The hardware limit: one shared atomic, bounced. Values on the wire
    // are i + 1 (0 means empty), STOP ends the child.
    // SAFETY: a page of shared anonymous memory, accessed only through these
    // atomics, in both processes.
    let words = unsafe { &*shared_page().cast::<[AtomicU64; 2]>() };
    echo_bench(
        &mut g,
        "atomic_limit",
        || loop {
            let v = spin_until(|| {
                let v = words[0].swap(0, Ordering::Acquire);
                (v != 0).then_some(v)
            });
            words[1].store(v, Ordering::Release);
            if v == STOP {
                return;
            }
        },
        |i| {
            words[0].store(wire(i), Ordering::Release);
            let got = spin_until(|| {
                let g = words[1].swap(0, Ordering::Acquire);
                (g != 0).then_some(g)
            });
            unwire(i, got)
        },
    );

    // The textbook Lamport ring (issue 15): one ring each way, both in one
    // shared page.
    let page = shared_page();
    // SAFETY: a zeroed shared page (never unmapped) holds both rings at
    // 128-aligned offsets; each process keeps one half of each.
    let (mut ping_tx, mut ping_rx) = unsafe { textbook::split(page, 64) };
    // SAFETY: as above; bytes(64) is a multiple of 128, 2 * bytes(64) < 4096.
    let (mut pong_tx, mut pong_rx) = unsafe { textbook::split(page.add(textbook::bytes(64)), 64) };
    echo_bench(
        &mut g,
        "textbook_lamport",
        move || loop {
            let v = spin_until(|| ping_rx.try_pop());
            spin_until(|| pong_tx.try_push(v).then_some(()));
            if v == u64::MAX {
                return;
            }
        },
        |i| {
            spin_until(|| ping_tx.try_push(i).then_some(()));
            spin_until(|| pong_rx.try_pop())
        },
    );

    for (label, strategy) in [
        ("shmring_spin", WaitStrategy::Spin),
        (
            "shmring_park_no_spin",
            WaitStrategy::Park {
                spin: Duration::ZERO,
            },
        ),
    ] {
        // Created without handles: ours are attached after the fork.
        let layout = spsc::layout::<u64>(64).unwrap();
        let create = |n: &str| {
            Arc::new(
                SegmentOptions::new()
                    .create(&name(n), &typed_spec::<u64>(&layout))
                    .unwrap(),
            )
        };
        let ping = create(&format!("{label}-ping"));
        let pong = create(&format!("{label}-pong"));
        // The child opens the rings by name: a forked process shares its
        // parent's open file descriptions, and role locks belong to those.
        let (ping_name, pong_name) = (ping.name().to_string(), pong.name().to_string());
        // Our halves are attached after the fork (on the first ping), so
        // the child inherits nothing of them.
        let mut halves: Option<(Producer<u64>, Consumer<u64>)> = None;
        echo_bench(
            &mut g,
            label,
            move || {
                let mut crx = Consumer::<u64>::builder(&ping_name)
                    .wait_strategy(strategy)
                    .open()
                    .unwrap();
                let mut ctx = Producer::<u64>::builder(&pong_name)
                    .wait_strategy(strategy)
                    .open()
                    .unwrap();
                while let Ok(v) = crx.pop() {
                    ctx.push(v).unwrap();
                    if v == u64::MAX {
                        return;
                    }
                }
            },
            |i| {
                let (tx, rx) = halves.get_or_insert_with(|| {
                    let mut tx = Producer::<u64>::attach(ping.clone()).unwrap();
                    let mut rx = Consumer::<u64>::attach(pong.clone()).unwrap();
                    tx.set_wait_strategy(strategy);
                    rx.set_wait_strategy(strategy);
                    (tx, rx)
                });
                tx.push(i).unwrap();
                rx.pop().unwrap()
            },
        );
    }

    // The limit for sleeping: a futex ping-pong on a shared word (1: the
    // child's turn, 0: ours), with a stop flag beside it.
    // SAFETY: as above, shared anonymous memory used only as atomics.
    let [turn, stop] = unsafe { &*shared_page().cast::<[AtomicU32; 2]>() };
    echo_bench(
        &mut g,
        "futex_limit",
        || loop {
            while turn.load(Ordering::Acquire) != 1 {
                shmring::wait::raw::wait(turn, 0, Duration::from_millis(100));
            }
            let done = stop.load(Ordering::Relaxed) == 1;
            turn.store(0, Ordering::Release);
            shmring::wait::raw::wake(turn);
            if done {
                return;
            }
        },
        |i| {
            if i == u64::MAX {
                stop.store(1, Ordering::Relaxed);
            }
            turn.store(1, Ordering::Release);
            shmring::wait::raw::wake(turn);
            while turn.load(Ordering::Acquire) != 0 {
                shmring::wait::raw::wait(turn, 1, Duration::from_millis(100));
            }
            i
        },
    );

    // Kernel objects: a byte each way.
    let (p_read, c_write) = nix::unistd::pipe().unwrap();
    let (c_read, p_write) = nix::unistd::pipe().unwrap();
    echo_bench(
        &mut g,
        "pipe",
        || echo_fd(&c_read, &c_write),
        |i| ping_fd(&p_write, &p_read, i),
    );
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    echo_bench(
        &mut g,
        "unix_socket",
        || echo_fd(&b, &b),
        |i| ping_fd(&a, &a, i),
    );
    let to_child = eventfd();
    let to_parent = eventfd();
    echo_bench(
        &mut g,
        "eventfd",
        || echo_fd(&to_child, &to_parent),
        |i| ping_fd(&to_child, &to_parent, i),
    );
    g.finish();
}

fn eventfd() -> std::os::fd::OwnedFd {
    // SAFETY: eventfd returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(fd >= 0, "eventfd");
    // SAFETY: fd is new and ours.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
}

/// A zeroed page shared with children forked later (`MAP_SHARED`, unlike
/// memmap2's private anonymous maps); never unmapped (the bench exits).
fn shared_page() -> *mut u8 {
    // SAFETY: a fresh anonymous mapping; no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap");
    p.cast()
}

/// The value that stops an echo child.
const STOP: u64 = 1 << 62;

/// What goes on the wire for ping `i`: never 0 (an empty word, or a zero
/// eventfd count), STOP for the last ping.
fn wire(i: u64) -> u64 {
    if i == u64::MAX { STOP } else { i + 1 }
}

/// The ping value back from what came off the wire.
fn unwire(i: u64, got: u64) -> u64 {
    if i == u64::MAX { i } else { got - 1 }
}

/// Sends ping `i` as 8 bytes and reads the echo.
fn ping_fd(w: &impl std::os::fd::AsFd, r: &impl std::os::fd::AsFd, i: u64) -> u64 {
    nix::unistd::write(w, &wire(i).to_le_bytes()).unwrap();
    let mut buf = [0u8; 8];
    nix::unistd::read(r, &mut buf).unwrap();
    unwire(i, u64::from_le_bytes(buf))
}

/// Echoes 8-byte values until STOP.
fn echo_fd(r: &impl std::os::fd::AsFd, w: &impl std::os::fd::AsFd) {
    let mut buf = [0u8; 8];
    loop {
        if nix::unistd::read(r, &mut buf).unwrap_or(0) != 8 {
            return;
        }
        nix::unistd::write(w, &buf).unwrap();
        if u64::from_le_bytes(buf) == STOP {
            return;
        }
    }
}

criterion_group!(
    benches,
    typed,
    frames_sizes,
    two_threads_u64,
    rtt_cross_process
);
criterion_main!(benches);
