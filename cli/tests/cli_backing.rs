//! Memory backing as the CLI shows it: `shmring stat` of a ring that
//! preferred huge pages says whether it got them, and why not. (The rest of
//! the backing tests are in the library's tests/backing.rs.)

mod common;

use common::*;
use shmring::segment::HugePages;
use shmring::spsc;
use shmring::{Error, SegmentOptions};

fn meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn require_without_huge_pages_fails_and_prefer_falls_back_and_says_why() {
    if child_role().is_some() {
        return;
    }
    let dir = TestDir::new("thp");
    let layout = spsc::layout::<u64>(64).unwrap();
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
        .unwrap_or_default();
    let thp_usable = ["[always]", "[within_size]", "[advise]", "[force]"]
        .iter()
        .any(|s| thp.contains(s));
    let require = SegmentOptions::new()
        .dir(&dir.path)
        .huge_pages(HugePages::Require)
        .create("req", &shmring::raw::typed_spec::<u64>(&layout));
    if thp_usable {
        let seg = require.unwrap();
        assert_eq!(seg.layout().total_size(), 2 << 20);
    } else {
        match require {
            Err(e @ Error::HugePagesUnavailable { .. }) => {
                assert!(e.to_string().contains("shmem_enabled"), "{e}");
            }
            other => panic!("expected HugePagesUnavailable ({thp}), got {other:?}"),
        }
        assert!(dir.leftovers().is_empty(), "a refused create left a file");
    }
    let seg = SegmentOptions::new()
        .dir(&dir.path)
        .huge_pages(HugePages::Prefer)
        .create("pref", &shmring::raw::typed_spec::<u64>(&layout))
        .unwrap();
    let info = shmring::segment::inspect(&dir.path, "pref").unwrap();
    assert_eq!(info.huge_pages.as_deref(), Some("prefer"));
    assert_eq!(info.huge_active, Some(thp_usable));
    assert_eq!(info.huge_fallback.is_some(), !thp_usable, "{info:?}");
    let (code, out, _) = shmring(&dir.path, &["stat", "pref"]);
    assert_eq!(code, 0);
    if !thp_usable {
        assert!(
            out.contains("huge_fallback") && out.contains("shmem_enabled"),
            "{out}"
        );
    }
    // Anonymous rings take huge pages from the reserved pool.
    let free = meminfo("HugePages_Free:");
    let anon = SegmentOptions::new()
        .huge_pages(HugePages::Require)
        .create_anonymous("thp-test", &shmring::raw::typed_spec::<u64>(&layout));
    if free == 0 {
        assert!(
            matches!(anon, Err(Error::HugePagesUnavailable { .. })),
            "{anon:?}"
        );
    }
    drop(anon);
    drop(seg);
    dir.finish();
}
