//! What `create`, `ls` and `stat` print: capacities in the unit they were
//! asked in, JSON with units, the `ls` table and the `stat` listing.

use serde::Serialize;
use shmring::segment::{self, Inspection};
use shmring::{Error, Layout};

use super::{KindArg, Shape, broadcast};

/// Prints `value` as pretty JSON on stdout.
pub(super) fn print_json<T: Serialize>(value: &T) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::InvalidConfig {
        what: format!("cannot encode JSON: {e}"),
    })?;
    println!("{text}");
    Ok(())
}

/// What `create` says about the capacity: in the unit of `--capacity`
/// (slots), and for frame rings the byte area it makes.
pub(super) fn created_capacity(kind: KindArg, shape: &Shape, layout: &Layout) -> String {
    let (cap, slot) = (shape.capacity, shape.slot_size);
    let slots = if cap == 1 { "slot" } else { "slots" };
    match kind {
        KindArg::Frames => format!(
            "capacity {cap} {slots} of {slot} B = {} bytes of frames",
            layout.capacity()
        ),
        _ => format!("capacity {cap} {slots} of {slot} B"),
    }
}

/// The unit of an inspected ring's `capacity`: frame rings record their
/// byte area, the others their slots.
fn capacity_unit(info: &Inspection) -> Option<&'static str> {
    info.capacity?;
    Some(if info.kind.as_deref() == Some("frames") {
        "bytes"
    } else {
        "slots"
    })
}

/// The inspection as JSON, plus `capacity_unit` ("slots" or "bytes") when
/// it has a capacity. (The other keys keep their documented meaning.)
pub(super) fn json_with_units(info: &Inspection) -> Result<serde_json::Value, Error> {
    let mut v = serde_json::to_value(info).map_err(|e| Error::InvalidConfig {
        what: format!("cannot encode JSON: {e}"),
    })?;
    if let (Some(unit), Some(obj)) = (capacity_unit(info), v.as_object_mut()) {
        obj.insert("capacity_unit".into(), unit.into());
    }
    Ok(v)
}

/// A capacity with its unit, for `stat` and `ls`.
fn capacity_text(info: &Inspection, long: bool) -> String {
    match (info.capacity, capacity_unit(info)) {
        (Some(c), Some("bytes")) if long => format!("{c} bytes of frames"),
        (Some(c), Some("bytes")) => format!("{c} B"),
        (Some(c), Some(_)) if long => format!("{c} slots"),
        (c, _) => opt(c),
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn state_name(info: &Inspection) -> String {
    serde_json::to_value(info.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub(super) fn print_table(all: &[Inspection]) {
    println!(
        "{:<24} {:<9} {:>10} {:>6} {:>12} {:>8} {:>8} {:<12}",
        "NAME", "KIND", "CAPACITY", "SLOT", "BYTES", "LEN", "ATTACHED", "STATE"
    );
    for i in all {
        println!(
            "{:<24} {:<9} {:>10} {:>6} {:>12} {:>8} {:>8} {:<12}",
            i.name,
            i.kind.as_deref().unwrap_or("-"),
            capacity_text(i, false),
            opt(i.slot_size),
            i.size_bytes,
            opt(i.len),
            i.attached,
            state_name(i)
        );
    }
}

pub(super) fn print_stat(i: &Inspection) {
    let line = |k: &str, v: String| println!("{k:<14} {v}");
    line("name", i.name.clone());
    line("path", i.path.display().to_string());
    line("state", state_name(i));
    if let Some(d) = &i.detail {
        line("detail", d.clone());
    }
    line("kind", opt(i.kind.clone()));
    line("version", opt(i.version.clone()));
    line("capacity", capacity_text(i, true));
    line("slot_size", opt(i.slot_size));
    if let Some(name) = &i.message_name {
        line("message", name.clone());
    }
    if let Some(id) = &i.message_id {
        line("message_id", id.clone());
    }
    line("size_bytes", i.size_bytes.to_string());
    line("persistent", i.persistent.to_string());
    line("len", opt(i.len));
    broadcast::stat_lines(i, &line);
    if let Some(n) = i.skipped {
        line(
            "skipped",
            format!("{n} (slots whose producer died mid-write)"),
        );
    }
    if let Some(n) = i.redelivered {
        line(
            "redelivered",
            format!("{n} (messages whose consumer died holding them)"),
        );
    }
    if let Some(b) = i.bytes_used {
        line("bytes_used", b.to_string());
    }
    if let Some(u) = &i.upstream {
        let c = &u.counts;
        let writer = match i.upstream_writer_alive {
            Some(true) => format!("written by pid {} (running)", u.writer),
            Some(false) => format!("last written by pid {} (gone)", u.writer),
            None => "no relay attached".to_string(),
        };
        line(
            "upstream",
            format!(
                "session {:#018x}, last seq {}, {} delivered; {writer}",
                c.session, c.last_seq, c.delivered
            ),
        );
        line(
            "upstream gaps",
            format!("{} (messages lost before reaching this ring)", c.gaps),
        );
    }
    if let Some(h) = &i.huge_pages {
        let active = if i.huge_active == Some(true) {
            "in use"
        } else {
            "not in use"
        };
        line(
            "huge_pages",
            format!("{h} ({active}; {} KiB pages)", opt(i.page_size_kib)),
        );
    }
    if let Some(f) = &i.huge_fallback {
        line("huge_fallback", f.clone());
    }
    if i.populate == Some(true) || i.lock_memory == Some(true) {
        line(
            "on attach",
            format!(
                "{}{}",
                if i.populate == Some(true) {
                    "populate "
                } else {
                    ""
                },
                if i.lock_memory == Some(true) {
                    "mlock"
                } else {
                    ""
                }
            ),
        );
    }
    for m in &i.mappings {
        line(
            &format!("pid {}", m.pid),
            format!(
                "{} KiB mapped, {} KiB resident, {} KiB locked, {} KiB pages, {} KiB PMD-mapped{}",
                m.size_kib,
                m.rss_kib,
                m.locked_kib,
                m.kernel_page_kib,
                m.pmd_mapped_kib,
                if m.huge() { " (huge)" } else { "" }
            ),
        );
    }
    line("mode", format!("{} (uid {})", i.mode, i.uid));
    line("inode", i.inode.to_string());
    line(
        "generation",
        opt(i.generation.map(|g| format!("{g:#018x}"))),
    );
    line("creator_pid", opt(i.creator_pid));
    let pids: Vec<String> = i.attached_pids.iter().map(|p| p.to_string()).collect();
    line("attached", format!("{} [{}]", i.attached, pids.join(", ")));
    for (label, w) in [("wait data", &i.wait_data), ("wait space", &i.wait_space)] {
        if let Some(w) = w {
            line(
                label,
                format!(
                    "{} wakeups, {} sleeps, {} spurious, {} waiting now",
                    w.wakeups, w.sleeps, w.spurious, w.waiters
                ),
            );
        }
    }
    // A broadcast ring's subscribers have their own lines (above).
    let listed = |r: &&segment::RoleInfo| i.subscribers.is_none() || r.role != "subscriber";
    for r in i.roles.iter().filter(listed) {
        line(
            &r.role,
            format!(
                "{} (pid {})",
                if r.alive { "alive" } else { "not held" },
                r.pid
            ),
        );
    }
}
