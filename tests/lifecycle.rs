//! The lifecycle protocol across real processes: remove-on-last-detach,
//! persistence, `rm`/`gc`, `is_current`, and the split-brain race.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use shmring::segment::RingSpec;
use shmring::{Error, Kind, Layout, SegmentOptions};

// These tests are about the segment itself (its lifecycle, not a ring's
// traffic), so they use the low-level path: a Layout and a RingSpec.
fn layout() -> Layout {
    Layout::new(Kind::Spsc, 64, 8, 8).unwrap()
}

/// The spec of a ring of `layout`: 64 slots of 8 bytes, align 8, i.e. u64.
fn spec(layout: &Layout) -> RingSpec<'_> {
    shmring::raw::typed_spec::<u64>(layout)
}

#[test]
fn non_persistent_ring_is_removed_by_its_last_user() {
    let dir = TestDir::new("last");
    let opts = SegmentOptions::new().dir(&dir.path);
    let a = opts.create("r", &spec(&layout())).unwrap();
    let b = opts.open("r").unwrap();
    assert_eq!(a.inode(), b.inode());
    drop(a);
    assert!(dir.file("r").exists(), "removed while still attached");
    drop(b);
    assert!(!dir.file("r").exists(), "not removed by the last user");
    dir.finish();
}

#[test]
fn persistent_ring_outlives_its_users_until_rm() {
    let dir = TestDir::new("persist");
    let opts = SegmentOptions::new().dir(&dir.path).persistent(true);
    let a = opts.create("r", &spec(&layout())).unwrap();
    let ino = a.inode();
    drop(a);
    let b = SegmentOptions::new().dir(&dir.path).open("r").unwrap();
    assert_eq!(b.inode(), ino);
    assert!(b.is_persistent());
    // rm refuses while attached, naming our pid.
    match shmring::segment::remove(&dir.path, "r", false) {
        Err(Error::InUse { pids, .. }) => {
            assert!(pids.contains(&(std::process::id() as i32)), "{pids:?}")
        }
        other => panic!("expected InUse, got {other:?}"),
    }
    drop(b);
    shmring::segment::remove(&dir.path, "r", false).unwrap();
    dir.finish();
}

#[test]
fn create_refuses_an_existing_name_and_open_a_missing_one() {
    let dir = TestDir::new("exists");
    let opts = SegmentOptions::new().dir(&dir.path);
    let a = opts.create("r", &spec(&layout())).unwrap();
    assert!(matches!(
        opts.create("r", &spec(&layout())),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(opts.open("nope"), Err(Error::NotFound { .. })));
    drop(a);
    dir.finish();
}

#[test]
fn mode_defaults_to_0600_and_is_applied_exactly() {
    let dir = TestDir::new("mode");
    let a = SegmentOptions::new()
        .dir(&dir.path)
        .create("r", &spec(&layout()))
        .unwrap();
    let m = std::fs::metadata(dir.file("r")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    let b = SegmentOptions::new()
        .dir(&dir.path)
        .mode(0o664)
        .create("r2", &spec(&layout()))
        .unwrap();
    let m = std::fs::metadata(dir.file("r2")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o664);
    drop((a, b));
    dir.finish();
}

#[test]
fn force_removal_makes_handles_not_current_and_never_deletes_the_successor() {
    let dir = TestDir::new("force");
    let opts = SegmentOptions::new().dir(&dir.path);
    let old = opts.create("r", &spec(&layout())).unwrap();
    assert!(old.is_current());
    shmring::segment::remove(&dir.path, "r", true).unwrap();
    assert!(!old.is_current(), "removed mark not seen");
    let new = opts.create("r", &spec(&layout())).unwrap();
    assert_ne!(new.inode(), old.inode());
    assert_ne!(new.generation(), old.generation());
    assert!(new.is_current());
    // The old handle's last detach must not remove the new object's name.
    drop(old);
    assert!(dir.file("r").exists());
    assert!(new.is_current());
    drop(new);
    dir.finish();
}

#[test]
fn is_current_notices_a_name_replaced_behind_our_back() {
    let dir = TestDir::new("replaced");
    let opts = SegmentOptions::new().dir(&dir.path).persistent(true);
    let seg = opts.create("r", &spec(&layout())).unwrap();
    std::fs::remove_file(dir.file("r")).unwrap();
    assert!(!seg.is_current());
    std::fs::write(dir.file("r"), b"someone else").unwrap();
    assert!(!seg.is_current());
    std::fs::remove_file(dir.file("r")).unwrap();
    drop(seg);
    dir.finish();
}

#[test]
fn open_or_create_creates_once_and_then_attaches() {
    let dir = TestDir::new("ooc");
    let opts = SegmentOptions::new().dir(&dir.path);
    let a = opts.open_or_create("r", &spec(&layout())).unwrap();
    let b = opts.open_or_create("r", &spec(&layout())).unwrap();
    assert_eq!(a.inode(), b.inode());
    drop((a, b));
    dir.finish();
}

// ---------------------------------------------------------------------------
// The split-brain race.
//
// N processes repeatedly open_or_create, hold and detach one non-persistent
// name. While attached, each publishes the inode it holds in its own word of
// a witness file (outside the segment) and then checks every other word:
// two live processes holding different inodes is a split brain. Publishing
// before checking (SeqCst on both) makes the check symmetric: of two
// overlapping holders, the later checker sees the earlier one.

const RACERS: usize = 8;
const RACE_SECS: u64 = 4;

#[test]
fn split_brain_race_child() {
    let Some(role) = child_role() else { return };
    assert_eq!(role, "racer");
    let dir = env_str("RACE_DIR");
    let witness = env_str("RACE_WITNESS");
    let me: usize = env_str("RACE_INDEX").parse().unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&witness)
        .unwrap();
    // SAFETY (test): the witness file is RACERS+2 words long and only ever
    // accessed through atomics by the racers.
    let map = unsafe { memmap2::MmapMut::map_mut(&file).unwrap() };
    let words: &[AtomicU64] =
        // SAFETY (test): page-aligned mapping of (RACERS + 2) * 8 bytes.
        unsafe { std::slice::from_raw_parts(map.as_ptr().cast::<AtomicU64>(), RACERS + 2) };
    let opts = SegmentOptions::new()
        .dir(&dir)
        .timeout(Duration::from_secs(10));
    let layout = layout();
    let spec = spec(&layout);
    let deadline = Instant::now() + Duration::from_secs(RACE_SECS);
    let mut attaches = 0u64;
    while Instant::now() < deadline {
        let seg = opts.open_or_create("race", &spec).unwrap();
        words[me].store(seg.inode(), Ordering::SeqCst);
        for (i, w) in words[..RACERS].iter().enumerate() {
            let other = w.load(Ordering::SeqCst);
            if i != me && other != 0 && other != seg.inode() {
                words[RACERS].fetch_add(1, Ordering::SeqCst);
                eprintln!(
                    "split brain: racer {me} holds {} while racer {i} holds {other}",
                    seg.inode()
                );
            }
        }
        std::thread::sleep(Duration::from_micros(rand::random_range(0..1500)));
        words[me].store(0, Ordering::SeqCst);
        drop(seg);
        attaches += 1;
        std::thread::sleep(Duration::from_micros(rand::random_range(0..800)));
    }
    words[RACERS + 1].fetch_add(attaches, Ordering::SeqCst);
    std::process::exit(0);
}

#[test]
fn split_brain_race() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("race");
    let witness_dir = TestDir::new("witness");
    let witness = witness_dir.file("w");
    std::fs::write(&witness, vec![0u8; (RACERS + 2) * 8]).unwrap();
    let mut kids: Vec<ChildGuard> = (0..RACERS)
        .map(|i| {
            let child = spawn_self(
                "split_brain_race_child",
                "racer",
                &[
                    ("RACE_DIR", dir.path.display().to_string()),
                    ("RACE_WITNESS", witness.display().to_string()),
                    ("RACE_INDEX", i.to_string()),
                ],
            )
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
            ChildGuard(Some(child))
        })
        .collect();
    for k in &mut kids {
        let st = k.wait_within(Duration::from_secs(RACE_SECS + 60));
        assert!(st.success(), "racer failed: {st:?}");
    }
    let bytes = std::fs::read(&witness).unwrap();
    let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
    assert_eq!(word(RACERS), 0, "split brain observed");
    let attaches = word(RACERS + 1);
    assert!(
        attaches >= (RACERS as u64) * 50,
        "too few attaches to mean anything: {attaches}"
    );
    eprintln!("split-brain race: {attaches} attaches by {RACERS} processes, no split");
    dir.finish();
    std::fs::remove_file(&witness).unwrap();
    witness_dir.finish();
}

#[test]
fn inode_is_shown_by_metadata_too() {
    let dir = TestDir::new("ino");
    let seg = SegmentOptions::new()
        .dir(&dir.path)
        .create("r", &spec(&layout()))
        .unwrap();
    assert_eq!(std::fs::metadata(dir.file("r")).unwrap().ino(), seg.inode());
    drop(seg);
    dir.finish();
}
