//! MPMC rings across processes: many producers and consumers.

mod common;

use std::sync::Arc;

use common::*;
use shmring::SegmentOptions;
use shmring::mpmc::{self, Consumer, Producer};
use shmring::spsc::{TryPopError, TryPushError};

#[test]
fn in_process_round_trip_across_the_wrap() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("mpmc-inproc");
    let seg = Arc::new(
        SegmentOptions::new()
            .dir(&dir.path)
            .create(
                "r",
                &mpmc::layout_with_roles::<u64>(4, 2, 2).unwrap(),
                mpmc::type_id::<u64>(),
            )
            .unwrap(),
    );
    let mut tx = Producer::<u64>::attach(seg.clone()).unwrap();
    let mut rx = Consumer::<u64>::attach(seg.clone()).unwrap();
    for round in 0..10u64 {
        for i in 0..4 {
            tx.try_push(round * 10 + i).unwrap();
        }
        assert!(matches!(tx.try_push(99), Err(TryPushError::Full(99))));
        for i in 0..4 {
            assert_eq!(rx.try_pop(), Ok(round * 10 + i));
        }
        assert_eq!(rx.try_pop(), Err(TryPopError::Empty));
    }
    drop((tx, rx, seg));
    dir.finish();
}
