//! The library's messages as the CLI shows them say what is true and what
//! to do (issue 14, item 6): inode exhaustion, the command that removes a
//! damaged or foreign-version ring (run here as printed), symbolic links
//! and FIFOs, names with control characters. The abandoned-creation
//! messages are checked in cli_gc.rs.

mod common;

use std::os::unix::fs::FileExt;

use common::*;
use shmring::raw::VERSION_MAJOR;

fn poke(dir: &TestDir, name: &str, offset: u64, bytes: &[u8]) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.file(name))
        .unwrap()
        .write_all_at(bytes, offset)
        .unwrap();
}

fn create(dir: &TestDir, name: &str) {
    let (code, _, err) = shmring(&dir.path, &["create", name]);
    assert_eq!(code, 0, "{err}");
}

/// `shmring recv NAME` on a ring it cannot use: its error text.
fn recv_error(dir: &TestDir, name: &str) -> String {
    let (code, _, err) = shmring(&dir.path, &["recv", name, "--timeout", "100"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("shmring: error:"), "{err}");
    err
}

/// Runs the first `shmring ...` command quoted in `text` exactly as
/// written (the test directory has no characters that need quoting).
fn run_the_suggested_command(text: &str) -> (i32, String) {
    let start = text.find("`shmring ").expect("a suggested command") + 1;
    let len = text[start..].find('`').expect("closing backquote");
    let words: Vec<&str> = text[start..start + len].split_whitespace().collect();
    assert_eq!(words[0], "shmring");
    let out = ChildGuard(Some(
        shmring_bin()
            .args(&words[1..])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    ))
    .output_within(std::time::Duration::from_secs(60));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The message names a command; that command, with nobody attached,
/// removes the ring.
fn suggested_command_removes_it(dir: &TestDir, name: &str, err: &str) {
    assert!(
        err.contains(&format!("`shmring --dir {} rm {name}`", dir.path.display())),
        "{err}"
    );
    let (code, rm_err) = run_the_suggested_command(err);
    assert_eq!(code, 0, "the suggested command failed: {rm_err}");
    assert!(!dir.file(name).exists());
}

#[test]
fn version_mismatch_names_the_command_that_removes_the_ring() {
    let dir = TestDir::new("msg-version");
    create(&dir, "x");
    poke(&dir, "x", 8, &(VERSION_MAJOR + 1).to_le_bytes());
    let err = recv_error(&dir, "x");
    assert!(err.contains("layout version"), "{err}");
    assert!(!err.contains("remove and recreate"), "{err}");
    suggested_command_removes_it(&dir, "x", &err);
    dir.finish();
}

#[test]
fn size_mismatch_names_the_command_that_removes_the_ring() {
    let dir = TestDir::new("msg-size");
    for (name, len) in [("short", 100), ("truncated", 8192)] {
        create(&dir, name);
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.file(name))
            .unwrap()
            .set_len(len)
            .unwrap();
        let err = recv_error(&dir, name);
        assert!(err.contains("size mismatch"), "{err}");
        suggested_command_removes_it(&dir, name, &err);
    }
    dir.finish();
}

#[test]
fn corrupted_names_the_command_that_removes_the_ring() {
    let dir = TestDir::new("msg-corrupt");
    create(&dir, "x");
    // The capacity (offset 32) no longer a power of two.
    poke(&dir, "x", 32, &63u64.to_le_bytes());
    let err = recv_error(&dir, "x");
    assert!(err.contains("corrupted shared state"), "{err}");
    assert!(err.contains("--force` to remove the name while"), "{err}");
    suggested_command_removes_it(&dir, "x", &err);
    dir.finish();
}

#[test]
fn symlinks_and_fifos_are_named_for_what_they_are() {
    let dir = TestDir::new("msg-notfile");
    let elsewhere = TestDir::new("msg-notfile-target");
    create(&elsewhere, "ring");
    std::os::unix::fs::symlink(elsewhere.file("ring"), dir.file("link")).unwrap();
    let fifo =
        std::ffi::CString::new(dir.file("fifo").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo reads it and keeps nothing.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    for (name, kind) in [("link", "a symbolic link"), ("fifo", "a FIFO")] {
        let err = recv_error(&dir, name);
        assert!(
            err.contains(&format!("not a regular file but {kind}")),
            "{err}"
        );
        assert!(!err.contains("magic"), "{err}");
        let (code, out, err) = shmring(&dir.path, &["stat", name, "--json"]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["state"], "foreign");
        assert!(
            v["detail"]
                .as_str()
                .unwrap()
                .starts_with(&format!("not a regular file: {kind}")),
            "{out}"
        );
        // Plain rm leaves it; the command the message names removes the
        // name only.
        let (code, _, err) = shmring(&dir.path, &["rm", name]);
        assert_eq!(code, 1, "{err}");
        assert!(dir.file(name).symlink_metadata().is_ok());
        let (code, rm_err) = run_the_suggested_command(&err);
        assert_eq!(code, 0, "{rm_err}");
        assert!(dir.file(name).symlink_metadata().is_err());
    }
    assert!(elsewhere.file("ring").exists(), "the link's target is kept");
    let (code, _, err) = shmring(&elsewhere.path, &["rm", "ring"]);
    assert_eq!(code, 0, "{err}");
    elsewhere.finish();
    dir.finish();
}

#[test]
fn names_with_control_characters_are_refused() {
    let dir = TestDir::new("msg-names");
    for name in ["a\nb", "tab\there", "esc\u{1b}[2J"] {
        for args in [
            vec!["create", name],
            vec!["recv", name, "--create", "--timeout", "100"],
        ] {
            let (code, _, err) = shmring(&dir.path, &args);
            assert_eq!(code, 1, "{args:?}: {err}");
            assert!(
                err.contains("invalid ring name") && err.contains("control characters"),
                "{err}"
            );
        }
    }
    dir.finish();
}

#[test]
fn inode_exhaustion_says_so_and_what_to_do() {
    let Some(fs) = FewInodes::mount("msg-inodes", 4) else {
        return;
    };
    // The root directory takes one of the four inodes.
    let mut err = String::new();
    for i in 0..4 {
        let (code, _, e) = shmring(&fs.dir.path, &["create", &format!("r{i}")]);
        if code != 0 {
            err = e;
            break;
        }
    }
    assert!(
        err.contains("out of inodes")
            && err.contains("bytes are free")
            && err.contains("nr_inodes=")
            && err.contains("shmring gc"),
        "{err}"
    );
    assert!(!err.contains("0 bytes needed"), "{err}");
    for i in 0..4 {
        let _ = shmring(&fs.dir.path, &["rm", &format!("r{i}")]);
    }
    assert!(fs.dir.leftovers().is_empty(), "{:?}", fs.dir.leftovers());
}
