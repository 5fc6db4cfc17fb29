//! Names and what they name, from the library (issue 14, item 6): names
//! with control characters are refused (yet what is there can still be
//! listed and removed), things that are not regular files are called what
//! they are, a file system out of inodes says so, and the removal advice
//! names the exact command. The CLI's view is in
//! cli/tests/cli_lib_messages.rs.

mod common;

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use shmring::raw::{VERSION_MAJOR, bytes_spec};
use shmring::segment::{self, Status};
use shmring::{Error, Kind, Layout, SegmentOptions};

fn opts(dir: &TestDir) -> SegmentOptions {
    SegmentOptions::new()
        .dir(&dir.path)
        .timeout(Duration::from_millis(200))
}

fn layout() -> Layout {
    Layout::new(Kind::Spsc, 64, 8, 8).unwrap()
}

const CONTROL_NAMES: [&str; 6] = [
    "a\nb",
    "tab\there",
    "cr\r",
    "esc\u{1b}[2J",
    "del\u{7f}",
    "c1\u{85}",
];

fn assert_control_refused(result: Result<impl std::fmt::Debug, Error>, name: &str) {
    match result {
        Err(e @ Error::InvalidName { .. }) => {
            let text = e.to_string();
            assert!(text.contains("control characters"), "{text}");
        }
        other => panic!("{name:?}: expected InvalidName, got {other:?}"),
    }
}

#[test]
fn control_characters_are_refused_wherever_a_ring_is_named() {
    let dir = TestDir::new("names-control");
    for name in CONTROL_NAMES {
        assert_control_refused(segment::object_path(&dir.path, name), name);
        assert_control_refused(opts(&dir).create(name, &bytes_spec(&layout())), name);
        assert_control_refused(opts(&dir).open(name), name);
        assert_control_refused(
            opts(&dir).open_or_create(name, &bytes_spec(&layout())),
            name,
        );
        assert_control_refused(
            shmring::spsc::Producer::<u64>::builder(name)
                .dir(&dir.path)
                .capacity(64)
                .open_or_create(),
            name,
        );
    }
    // Printable non-ASCII is a fine name.
    let seg = opts(&dir).create("ring-é", &bytes_spec(&layout())).unwrap();
    drop(seg);
    dir.finish();
}

#[test]
fn an_object_named_with_a_control_character_can_still_be_listed_and_removed() {
    let dir = TestDir::new("names-existing");
    // Made by hand (or by an older version): list and rm must reach it.
    std::fs::write(dir.file("bad\nname"), b"not a ring").unwrap();
    let all = segment::list(&dir.path).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].name, "bad\nname");
    assert_eq!(all[0].state, Status::Foreign);
    assert_eq!(
        segment::inspect(&dir.path, "bad\nname").unwrap().state,
        Status::Foreign
    );
    segment::remove(&dir.path, "bad\nname", true).unwrap();
    dir.finish();
}

#[test]
fn links_fifos_and_directories_are_called_what_they_are() {
    let dir = TestDir::new("names-notfile");
    let elsewhere = TestDir::new("names-notfile-target");
    drop(
        opts(&elsewhere)
            .persistent(true)
            .create("ring", &bytes_spec(&layout()))
            .unwrap(),
    );
    std::os::unix::fs::symlink(elsewhere.file("ring"), dir.file("link")).unwrap();
    let fifo =
        std::ffi::CString::new(dir.file("fifo").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo reads it and keeps nothing.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::fs::create_dir(dir.file("subdir")).unwrap();

    for (name, kind) in [
        ("link", "a symbolic link"),
        ("fifo", "a FIFO (named pipe)"),
        ("subdir", "a directory"),
    ] {
        for result in [
            opts(&dir).open(name),
            opts(&dir).open_or_create(name, &bytes_spec(&layout())),
        ] {
            match result {
                Err(e @ Error::NotAFile { .. }) => {
                    let text = e.to_string();
                    assert!(
                        text.contains(&format!("not a regular file but {kind}")),
                        "{text}"
                    );
                    assert!(!text.contains("magic"), "{text}");
                    // The way to remove it, except for a directory.
                    assert_eq!(
                        text.contains(&format!("rm {name} --force")),
                        name != "subdir",
                        "{text}"
                    );
                }
                other => panic!("{name}: expected NotAFile, got {other:?}"),
            }
        }
        let info = segment::inspect(&dir.path, name).unwrap();
        assert_eq!(info.state, Status::Foreign);
        assert_eq!(
            info.detail.as_deref(),
            Some(format!("not a regular file: {kind}").as_str())
        );
        assert!(matches!(
            segment::remove(&dir.path, name, false),
            Err(Error::NotAFile { .. })
        ));
    }
    // Forced, the link and the FIFO go (the link's target stays).
    segment::remove(&dir.path, "link", true).unwrap();
    segment::remove(&dir.path, "fifo", true).unwrap();
    assert!(elsewhere.file("ring").exists());
    assert!(matches!(
        segment::remove(&dir.path, "subdir", true),
        Err(Error::NotAFile { .. })
    ));
    std::fs::remove_dir(dir.file("subdir")).unwrap();
    segment::remove(&elsewhere.path, "ring", false).unwrap();
    elsewhere.finish();
    dir.finish();
}

#[test]
fn removal_advice_names_the_exact_command() {
    let dir = TestDir::new("names-advice");
    drop(
        opts(&dir)
            .persistent(true)
            .create("x", &bytes_spec(&layout()))
            .unwrap(),
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.file("x"))
        .unwrap()
        .write_all_at(&(VERSION_MAJOR + 1).to_le_bytes(), 8)
        .unwrap();
    let rm = format!("`shmring --dir {} rm x`", dir.path.display());
    match opts(&dir).open("x") {
        Err(e @ Error::VersionMismatch { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&rm) && text.contains("--force"), "{text}");
        }
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
    // And that command works: plain `remove` takes a ring of another
    // version that nobody is attached to.
    segment::remove(&dir.path, "x", false).unwrap();

    // In the default directory no --dir is needed; odd names are quoted.
    let at = |name: &str| PathBuf::from("/dev/shm").join(name);
    let size = Error::SizeMismatch {
        path: at("x"),
        recorded: 8192,
        actual: 100,
    }
    .to_string();
    assert!(size.contains("`shmring rm x`"), "{size}");
    let corrupted = Error::Corrupted {
        path: at("my ring"),
        what: "test".into(),
    }
    .to_string();
    assert!(
        corrupted.contains("`shmring rm 'my ring'`")
            && corrupted.contains("`shmring rm 'my ring' --force`"),
        "{corrupted}"
    );
    let anonymous = Error::Corrupted {
        path: PathBuf::from("memfd:shmring:t"),
        what: "test".into(),
    }
    .to_string();
    assert!(
        anonymous.contains("drop every handle") && !anonymous.contains("shmring rm"),
        "{anonymous}"
    );
    dir.finish();
}

#[test]
fn a_file_system_out_of_inodes_is_no_inodes() {
    let Some(fs) = FewInodes::mount("names-inodes", 3) else {
        return;
    };
    let o = SegmentOptions::new().dir(&fs.dir.path).persistent(true);
    // The directory takes one inode, "a" and "b" the other two.
    drop(o.create("a", &bytes_spec(&layout())).unwrap());
    drop(o.create("b", &bytes_spec(&layout())).unwrap());
    match o.create("c", &bytes_spec(&layout())) {
        Err(e @ Error::NoInodes { free: Some(f), .. }) => {
            assert!(f > 0, "a tmpfs out of inodes with space left");
            let text = e.to_string();
            assert!(
                text.contains("out of inodes") && text.contains("nr_inodes="),
                "{text}"
            );
        }
        other => panic!("expected NoInodes, got {other:?}"),
    }
    segment::remove(&fs.dir.path, "a", false).unwrap();
    segment::remove(&fs.dir.path, "b", false).unwrap();
    assert!(fs.dir.leftovers().is_empty(), "{:?}", fs.dir.leftovers());
}
