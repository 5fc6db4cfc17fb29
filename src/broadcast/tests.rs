//! In-process unit tests of the broadcast handles (cross-process ones are
//! in `tests/broadcast.rs`).

use std::time::Duration;

use super::*;
use crate::ring::Start;

fn name(tag: &str) -> String {
    format!("bcast-unit-{tag}-{}", std::process::id())
}

#[test]
fn every_subscriber_gets_every_message_in_order() {
    let n = name("order");
    let mut tx = Publisher::<u64>::builder(&n).capacity(8).create().unwrap();
    let mut subs: Vec<_> = (0..3)
        .map(|_| Subscriber::<u64>::open(&n).unwrap())
        .collect();
    for i in 0..100u64 {
        // Block mode: the publisher waits for the slowest; read as we go.
        tx.push_timeout(i * 3, Some(Duration::from_secs(5)))
            .unwrap();
        for s in &mut subs {
            assert_eq!(s.try_pop().unwrap(), (i, i * 3));
        }
    }
    for s in &mut subs {
        assert_eq!(s.try_pop(), Err(TryPopError::Empty));
    }
}

#[test]
fn block_mode_waits_for_the_slowest_live_subscriber() {
    let n = name("block");
    let mut tx = Publisher::<u32>::builder(&n)
        .capacity(4)
        .overflow(Overflow::Block { evict_after: None })
        .create()
        .unwrap();
    let mut slow = Subscriber::<u32>::open(&n).unwrap();
    for i in 0..4 {
        tx.try_push(i).unwrap();
    }
    assert!(matches!(
        tx.try_push(9),
        Err(crate::ring::TryPushError::Full(9))
    ));
    assert_eq!(slow.try_pop().unwrap(), (0, 0));
    tx.try_push(4).unwrap();
    // A subscriber that leaves stops counting at once.
    drop(slow);
    for i in 5..20 {
        tx.try_push(i).unwrap();
    }
}

#[test]
fn a_stuck_subscriber_is_evicted_and_told_what_it_missed() {
    let n = name("evict");
    let mut tx = Publisher::<u64>::builder(&n)
        .capacity(4)
        .overflow(Overflow::Block {
            evict_after: Some(Duration::from_millis(20)),
        })
        .create()
        .unwrap();
    let mut stuck = Subscriber::<u64>::open(&n).unwrap();
    let mut live = Subscriber::<u64>::open(&n).unwrap();
    for i in 0..12u64 {
        tx.push_timeout(i, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(live.try_pop().unwrap(), (i, i));
    }
    assert_eq!(tx.evictions(), 1);
    match stuck.try_pop() {
        Err(TryPopError::Evicted { missed }) => assert_eq!(missed, 12),
        other => panic!("expected Evicted, got {other:?}"),
    }
    tx.try_push(12).unwrap();
    assert_eq!(stuck.try_pop().unwrap(), (12, 12));
    assert_eq!(live.try_pop().unwrap(), (12, 12));
}

#[test]
fn overwrite_mode_never_waits_and_counts_what_a_lapped_subscriber_missed() {
    let n = name("overwrite");
    let mut tx = Publisher::<u64>::builder(&n)
        .capacity(8)
        .overflow(Overflow::Overwrite)
        .create()
        .unwrap();
    let mut rx = Subscriber::<u64>::open(&n).unwrap();
    for i in 0..30u64 {
        tx.try_push(i).unwrap();
    }
    let mut got = Vec::new();
    let mut missed = 0;
    loop {
        match rx.try_pop() {
            Ok((seq, v)) => {
                assert_eq!(seq, v);
                got.push(v);
            }
            Err(TryPopError::Lagged(m)) => missed += m,
            Err(TryPopError::Empty) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(missed + got.len() as u64, 30);
    assert_eq!(got.last(), Some(&29));
    assert!(got.windows(2).all(|w| w[1] == w[0] + 1));
}

#[test]
fn late_joiners_choose_where_to_start() {
    let n = name("start");
    let mut tx = Publisher::<u64>::builder(&n)
        .capacity(8)
        .overflow(Overflow::Overwrite)
        .create()
        .unwrap();
    for i in 0..20u64 {
        tx.try_push(i).unwrap();
    }
    let mut oldest = Subscriber::<u64>::open(&n).unwrap();
    let mut latest = Subscriber::<u64>::builder(&n)
        .start(Start::Latest)
        .open()
        .unwrap();
    let mut at = Subscriber::<u64>::builder(&n)
        .start(Start::At(15))
        .open()
        .unwrap();
    let mut gone = Subscriber::<u64>::builder(&n)
        .start(Start::At(2))
        .open()
        .unwrap();
    assert_eq!(oldest.try_pop().unwrap(), (12, 12));
    assert_eq!(latest.try_pop(), Err(TryPopError::Empty));
    assert_eq!(at.try_pop().unwrap(), (15, 15));
    assert_eq!(gone.try_pop(), Err(TryPopError::Lagged(10)));
    assert_eq!(gone.try_pop().unwrap(), (12, 12));
    tx.try_push(20).unwrap();
    assert_eq!(latest.try_pop().unwrap(), (20, 20));
}

#[test]
fn byte_messages_keep_their_length_and_refuse_oversize() {
    let n = name("bytes");
    let mut tx = BytesPublisher::builder(&n)
        .capacity(4)
        .slot_size(20)
        .create()
        .unwrap();
    let mut rx = BytesSubscriber::open(&n).unwrap();
    let mut buf = Vec::new();
    for msg in [
        &b""[..],
        b"a",
        b"12345678",
        b"123456789",
        b"exactly twenty bytes",
    ] {
        let seq = tx.try_push(msg).unwrap();
        assert_eq!(rx.try_pop_into(&mut buf).unwrap(), seq);
        assert_eq!(buf, msg);
    }
    assert!(matches!(
        tx.try_push(&[0; 21]),
        Err(crate::ring::FramePushError::TooLarge { len: 21, max: 20 })
    ));
}

#[test]
fn subscribers_see_the_publisher_leave() {
    let n = name("gone");
    let mut tx = Publisher::<u64>::create(&n, 8).unwrap();
    let mut rx = Subscriber::<u64>::open(&n).unwrap();
    tx.try_push(1).unwrap();
    drop(tx);
    assert_eq!(rx.try_pop().unwrap(), (0, 1));
    assert_eq!(
        rx.pop_timeout(Some(Duration::from_secs(5))),
        Err(PopError::Disconnected)
    );
}

#[test]
fn role_counts_and_types_are_checked() {
    let n = name("roles");
    let _tx = Publisher::<u64>::builder(&n)
        .capacity(8)
        .subscribers(2)
        .create()
        .unwrap();
    let _a = Subscriber::<u64>::open(&n).unwrap();
    let _b = Subscriber::<u64>::open(&n).unwrap();
    assert!(matches!(
        Subscriber::<u64>::open(&n),
        Err(crate::Error::RoleTaken { .. })
    ));
    assert!(matches!(
        Subscriber::<u32>::open(&n),
        Err(crate::Error::LayoutMismatch { .. })
    ));
    assert!(matches!(
        Publisher::<u64>::open(&n),
        Err(crate::Error::RoleTaken { .. })
    ));
}

#[cfg(not(loom))]
#[test]
fn select_waits_on_subscribers_too() {
    let n = name("select");
    let mut tx = Publisher::<u64>::create(&n, 8).unwrap();
    let mut a = Subscriber::<u64>::open(&n).unwrap();
    let mut b = BytesSubscriber::open(&format!("{n}-b")).err();
    assert!(b.take().is_some(), "no such ring");
    {
        let mut rings: [&mut dyn crate::wait::Selectable; 1] = [&mut a];
        assert_eq!(
            crate::wait::select(&mut rings, Some(Duration::from_millis(5))),
            None
        );
    }
    tx.try_push(5).unwrap();
    {
        let mut rings: [&mut dyn crate::wait::Selectable; 1] = [&mut a];
        assert_eq!(
            crate::wait::select(&mut rings, Some(Duration::from_secs(5))),
            Some(0)
        );
    }
    assert_eq!(a.try_pop().unwrap(), (0, 5));
}
