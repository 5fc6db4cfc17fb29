//! Criterion benches (`cargo bench`): the cost of one ring operation on one
//! thread, next to an in-process baseline measured in the same run. The
//! cross-process round-trip and throughput comparisons are in
//! `shmring bench` (the README's first command).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmring::SegmentOptions;
use shmring::frames::{self, FrameConsumer, FrameProducer};
use shmring::spsc::{self, Consumer, Producer};

fn name(tag: &str) -> String {
    format!("shmring-criterion-{}-{tag}", std::process::id())
}

fn typed(c: &mut Criterion) {
    let seg = Arc::new(
        SegmentOptions::new()
            .create(
                &name("u64"),
                &spsc::layout::<u64>(1024).unwrap(),
                spsc::type_id::<u64>(),
            )
            .unwrap(),
    );
    let mut tx = Producer::<u64>::attach(seg.clone()).unwrap();
    let mut rx = Consumer::<u64>::attach(seg).unwrap();
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

fn frames_4k(c: &mut Criterion) {
    let seg = Arc::new(
        SegmentOptions::new()
            .create(&name("frames"), &frames::layout(1 << 20).unwrap(), 0)
            .unwrap(),
    );
    let mut tx = FrameProducer::attach(seg.clone()).unwrap();
    let mut rx = FrameConsumer::attach(seg).unwrap();
    let src = vec![0x5au8; 4096];
    let mut dst = vec![0u8; 4096];
    let mut g = c.benchmark_group("frames_4k_same_thread");
    g.throughput(Throughput::Bytes(4096));
    g.bench_function("shmring_reserve_commit_read_release", |b| {
        b.iter(|| {
            let mut grant = tx.reserve(4096).unwrap();
            grant.copy_from_slice(&src);
            grant.commit();
            let f = rx.read().unwrap();
            dst.copy_from_slice(&f);
            f.release();
        })
    });
    g.bench_function("memcpy_twice_baseline", |b| {
        let mut mid = vec![0u8; 4096];
        b.iter(|| {
            mid.copy_from_slice(black_box(&src));
            dst.copy_from_slice(black_box(&mid));
        })
    });
    g.finish();
}

criterion_group!(benches, typed, frames_4k);
criterion_main!(benches);
