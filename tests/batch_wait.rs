//! The blocking batch calls of the typed kinds: `pop_into_timeout` waits for
//! the first message and takes what is there; `push_slice_timeout` waits for
//! room for the first value and pushes what fits; both time out, and report
//! a peer that left; `select` waits for room on producers beside data on
//! consumers.

use std::time::{Duration, Instant};

use shmring::ring::{PopError, PushError};
use shmring::{mpmc, spsc};

const N: u64 = 100_000;

#[test]
fn spsc_batches_wait_both_ways_and_lose_nothing() {
    let (mut tx, mut rx) = spsc::anonymous::<u64>(16).unwrap();
    let producer = std::thread::spawn(move || {
        let mut next = 0u64;
        while next < N {
            let batch: Vec<u64> = (next..(next + 40).min(N)).collect();
            next += tx
                .push_slice_timeout(&batch, Some(Duration::from_secs(10)))
                .unwrap() as u64;
        }
    });
    let mut buf = [0u64; 24];
    let mut expect = 0;
    while expect < N {
        let n = rx
            .pop_into_timeout(&mut buf, Some(Duration::from_secs(10)))
            .unwrap();
        assert!(n > 0);
        for v in &buf[..n] {
            assert_eq!(*v, expect);
            expect += 1;
        }
    }
    producer.join().unwrap();
    assert_eq!(
        rx.pop_into_timeout(&mut buf, Some(Duration::from_secs(5))),
        Err(PopError::Disconnected)
    );
}

#[test]
fn mpmc_batches_wait_both_ways_and_lose_nothing() {
    let (mut tx, mut rx) = mpmc::anonymous::<u64>(16).unwrap();
    let producer = std::thread::spawn(move || {
        let mut next = 0u64;
        while next < N {
            let batch: Vec<u64> = (next..(next + 40).min(N)).collect();
            next += tx
                .push_slice_timeout(&batch, Some(Duration::from_secs(10)))
                .unwrap() as u64;
        }
    });
    let mut buf = [0u64; 24];
    let mut expect = 0;
    while expect < N {
        let n = rx
            .pop_into_timeout(&mut buf, Some(Duration::from_secs(10)))
            .unwrap();
        assert!(n > 0);
        for v in &buf[..n] {
            assert_eq!(*v, expect);
            expect += 1;
        }
    }
    producer.join().unwrap();
    assert_eq!(
        rx.pop_into_timeout(&mut buf, Some(Duration::from_secs(5))),
        Err(PopError::Disconnected)
    );
}

#[test]
fn batch_calls_time_out_and_give_up_on_a_gone_consumer() {
    let (mut tx, mut rx) = spsc::anonymous::<u64>(4).unwrap();
    let mut buf = [0u64; 4];
    let start = Instant::now();
    assert_eq!(
        rx.pop_into_timeout(&mut buf, Some(Duration::from_millis(30))),
        Err(PopError::Timeout)
    );
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(tx.push_slice_timeout(&[1, 2, 3, 4, 5], None), Ok(4));
    assert_eq!(
        tx.push_slice_timeout(&[6], Some(Duration::from_millis(30))),
        Err(PushError::Timeout(()))
    );
    drop(rx);
    assert_eq!(
        tx.push_slice_timeout(&[6], Some(Duration::from_secs(5))),
        Err(PushError::Disconnected(()))
    );
}

#[test]
fn select_waits_for_room_on_producers_and_for_data_on_consumers_at_once() {
    use shmring::wait::{Selectable, select};
    let (mut tx, mut rx) = spsc::anonymous::<u64>(2).unwrap();
    let (mut mtx, mut mrx) = mpmc::anonymous::<u64>(2).unwrap();
    assert_eq!(tx.push_slice(&[1, 2]), Ok(2));
    // The spsc producer is full, the mpmc consumer empty: nothing ready.
    {
        let mut set: [&mut dyn Selectable; 2] = [&mut tx, &mut mrx];
        assert_eq!(select(&mut set, Some(Duration::from_millis(20))), None);
    }
    // Room appears on the spsc ring (another thread pops, later).
    let popper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(rx.pop(), Ok(1));
        rx
    });
    {
        let mut set: [&mut dyn Selectable; 2] = [&mut tx, &mut mrx];
        assert_eq!(select(&mut set, Some(Duration::from_secs(10))), Some(0));
    }
    let _rx = popper.join().unwrap();
    assert_eq!(tx.try_push(3), Ok(()));
    // Data appears on the mpmc ring; its producer is full after two.
    mtx.try_push(7).unwrap();
    {
        let mut set: [&mut dyn Selectable; 2] = [&mut tx, &mut mrx];
        assert_eq!(select(&mut set, Some(Duration::from_secs(10))), Some(1));
    }
    mtx.try_push(8).unwrap();
    {
        let mut set: [&mut dyn Selectable; 1] = [&mut mtx];
        assert_eq!(select(&mut set, Some(Duration::from_millis(20))), None);
    }
    assert_eq!(mrx.try_pop(), Ok(7));
    {
        let mut set: [&mut dyn Selectable; 1] = [&mut mtx];
        assert_eq!(select(&mut set, Some(Duration::from_secs(10))), Some(0));
    }
}
