//! Typed rings over the bridge: a ring of `u64` (SPSC, MPMC, broadcast) ->
//! `shmring bridge out` -> TCP on 127.0.0.1 -> `shmring bridge in` -> a
//! ring of `u64` of the same kind, every value in order, the two bridges
//! in their own processes; a typed ring of another type refused with an
//! error naming both types; and a message of the right type identity but
//! the wrong length (a hostile or buggy publisher) refused as foreign,
//! nothing written.
#![cfg(feature = "bridge")]

mod common;

use std::time::Duration;

use common::bridge::*;
use common::*;
use nix::sys::signal::Signal;
use shmring::{broadcast, mpmc, spsc};

const LONG: Duration = Duration::from_secs(120);
/// Values carried per kind.
const N: u64 = 20_000;
/// Capacity of each ring (smaller than N: back-pressure works on the way).
const CAPACITY: u64 = 1024;

/// The value number `i` (not just `i`, so that a byte-order or offset slip
/// shows).
fn value(i: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555
}

/// Starts a bridge out of `a` (listening) and a bridge in to `b`
/// (connecting) on `key`, waits until messages can flow, runs `exchange`
/// (which pushes into `a` and takes from `b`), then stops both bridges with
/// SIGTERM and checks that they exit as documented.
fn through_bridges(dir: &TestDir, key: &str, a: &str, b: &str, exchange: impl FnOnce()) {
    let listen = format!("tcp/127.0.0.1:{}", free_port());
    let out = Bridge::start(&dir.path, &["out", a, "--key", key, "--listen", &listen]);
    out.wait_for("waiting for a subscriber", LONG);
    let inb = Bridge::start(&dir.path, &["in", key, "--into", b, "--connect", &listen]);
    inb.wait_for("subscribed", LONG);
    out.wait_for("a subscriber matches", LONG);
    exchange();
    let (code, log) = out.stop(Signal::SIGTERM);
    assert_eq!(code, Some(143), "{log:#?}");
    let (code, log) = inb.stop(Signal::SIGTERM);
    assert_eq!(code, Some(143), "{log:#?}");
}

/// Pushes N values with `push` on a thread while `pop` takes them on this
/// one; asserts every value arrives, in order.
fn carry<P: Send + 'static>(mut tx: P, push: fn(&mut P, u64), mut pop: impl FnMut() -> u64) -> P {
    let feeder = std::thread::spawn(move || {
        for i in 0..N {
            push(&mut tx, value(i));
        }
        tx
    });
    for i in 0..N {
        let got = pop();
        assert_eq!(got, value(i), "value number {i} of {N}");
    }
    feeder.join().expect("feeder")
}

#[test]
fn a_typed_spsc_ring_crosses_the_bridge_in_order() {
    let dir = TestDir::new("bridge-typed-spsc");
    let key = format!("shmring/test/{}", unique("typed-spsc"));
    let tx = spsc::Producer::<u64>::builder("a")
        .dir(&dir.path)
        .capacity(CAPACITY)
        .create()
        .unwrap();
    let mut rx = spsc::Consumer::<u64>::builder("b")
        .dir(&dir.path)
        .capacity(CAPACITY)
        .create()
        .unwrap();
    through_bridges(&dir, &key, "a", "b", || {
        let tx = carry(
            tx,
            |tx, v| tx.push(v).expect("push"),
            || rx.pop_timeout(Some(LONG)).expect("pop"),
        );
        // The bridge out took everything the producer pushed.
        assert_eq!(tx.len(), 0);
    });
    drop(rx);
    dir.finish();
}

#[test]
fn a_typed_mpmc_ring_crosses_the_bridge_in_order() {
    let dir = TestDir::new("bridge-typed-mpmc");
    let key = format!("shmring/test/{}", unique("typed-mpmc"));
    let tx = mpmc::Producer::<u64>::builder("a")
        .dir(&dir.path)
        .capacity(CAPACITY)
        .create()
        .unwrap();
    let mut rx = mpmc::Consumer::<u64>::builder("b")
        .dir(&dir.path)
        .capacity(CAPACITY)
        .create()
        .unwrap();
    through_bridges(&dir, &key, "a", "b", || {
        carry(
            tx,
            |tx, v| tx.push(v).expect("push"),
            || rx.pop_timeout(Some(LONG)).expect("pop"),
        );
    });
    drop(rx);
    dir.finish();
}

#[test]
fn a_typed_broadcast_ring_crosses_the_bridge_in_order() {
    let dir = TestDir::new("bridge-typed-bcast");
    let key = format!("shmring/test/{}", unique("typed-bcast"));
    // The publisher waits for room (the bridge out is a subscriber that
    // must see every message).
    let tx = broadcast::Publisher::<u64>::builder("a")
        .dir(&dir.path)
        .capacity(CAPACITY)
        .create()
        .unwrap();
    let mut rx = broadcast::Subscriber::<u64>::builder("b")
        .dir(&dir.path)
        .capacity(CAPACITY)
        .create()
        .unwrap();
    through_bridges(&dir, &key, "a", "b", || {
        carry(
            tx,
            |tx, v| {
                tx.push_timeout(v, None).expect("publish");
            },
            || rx.pop_timeout(Some(LONG)).expect("receive").1,
        );
    });
    drop(rx);
    dir.finish();
}

#[test]
fn a_typed_ring_of_another_type_is_refused_naming_both_types() {
    let dir = TestDir::new("bridge-typed-mismatch");
    let key = format!("shmring/test/{}", unique("typed-mismatch"));
    let mut tx = spsc::Producer::<u64>::builder("a")
        .dir(&dir.path)
        .capacity(CAPACITY)
        .create()
        .unwrap();
    let rx = spsc::Consumer::<u32>::builder("b")
        .dir(&dir.path)
        .capacity(CAPACITY)
        .create()
        .unwrap();
    let listen = format!("tcp/127.0.0.1:{}", free_port());
    let out = Bridge::start(&dir.path, &["out", "a", "--key", &key, "--listen", &listen]);
    out.wait_for("waiting for a subscriber", LONG);
    let inb = Bridge::start(
        &dir.path,
        &["in", &key, "--into", "b", "--connect", &listen],
    );
    inb.wait_for("subscribed", LONG);
    out.wait_for("a subscriber matches", LONG);
    tx.push(7).unwrap();
    let (code, log) = inb.finish(LONG);
    assert_eq!(code, Some(1), "{log:#?}");
    let error = log
        .iter()
        .find(|l| l.starts_with("shmring: error:"))
        .unwrap_or_else(|| panic!("no error line: {log:#?}"));
    assert!(error.contains("type mismatch"), "{error}");
    assert!(error.contains("\"u64\" (8 bytes, align 8"), "{error}");
    assert!(error.contains("\"u32\" (4 bytes, align 4"), "{error}");
    // Nothing reached the u32 ring.
    assert!(rx.is_empty());
    let (code, _) = out.stop(Signal::SIGTERM);
    assert_eq!(code, Some(143));
    drop((tx, rx));
    dir.finish();
}

#[test]
fn a_message_of_the_wrong_length_for_its_type_is_refused_as_foreign() {
    use shmring_zenoh::net::NetOptions;
    use shmring_zenoh::wire::{self, Identity};
    use shmring_zenoh::zenoh::Wait;

    let dir = TestDir::new("bridge-typed-len");
    let key = format!("shmring/test/{}", unique("typed-len"));
    let rx = spsc::Consumer::<u64>::builder("b")
        .dir(&dir.path)
        .capacity(CAPACITY)
        .create()
        .unwrap();
    let listen = format!("tcp/127.0.0.1:{}", free_port());
    let inb = Bridge::start(&dir.path, &["in", &key, "--into", "b", "--listen", &listen]);
    inb.wait_for("subscribed", LONG);
    // A publisher of our own: the attachment says "u64", the payload has 5
    // bytes.
    let session = NetOptions {
        connect: vec![listen.clone()],
        ..NetOptions::default()
    }
    .open()
    .unwrap();
    let publisher = session.declare_publisher(key.clone()).wait().unwrap();
    let mut attachment = wire::encode(
        42,
        &Identity {
            name: "u64".into(),
            size: 8,
            align: 8,
            id: shmring::TypeIdentity::of::<u64>().id(),
        },
    );
    wire::stamp(&mut attachment, 1);
    let started = std::time::Instant::now();
    while inb.line_with("shmring: error:").is_none() {
        assert!(started.elapsed() < LONG, "{:#?}", inb.lines());
        publisher
            .put(&[1u8, 2, 3, 4, 5][..])
            .attachment(&attachment[..])
            .wait()
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, log) = inb.finish(LONG);
    assert_eq!(code, Some(1), "{log:#?}");
    let error = log
        .iter()
        .find(|l| l.starts_with("shmring: error:"))
        .unwrap();
    assert!(error.contains("5-byte message"), "{error}");
    assert!(error.contains("exactly 8 bytes"), "{error}");
    assert!(rx.is_empty());
    drop((publisher, session, rx));
    dir.finish();
}
