//! Role locks: one OFD byte-range lock per role, past the end of the
//! object, and the role records beside them in the header.

use super::Segment;
use crate::error::{Error, Result};
use crate::layout::RoleRecord;
use crate::sys;

impl Segment {
    /// The record of role `index`.
    pub(crate) fn role_record(&self, index: u32) -> Option<&RoleRecord> {
        if index >= self.layout.roles() {
            return None;
        }
        let offset = self.layout.role_record_offset(index) as usize;
        // SAFETY: index < roles(), and `Layout::new` places roles() records
        // of ROLE_RECORD_SIZE bytes at roles_offset (64-byte aligned), before
        // control_offset < total_size; `RoleRecord` is atomics only.
        Some(unsafe { &*self.map.as_ptr().add(offset).cast::<RoleRecord>() })
    }

    fn role_lock_offset(&self, index: u32) -> u64 {
        // One byte per role, past the end of the data: byte-range locks need
        // no backing bytes, and nothing else locks there.
        self.layout.total_size + u64::from(index)
    }

    /// Takes role `index` (its OFD byte-range lock) for this handle.
    pub(crate) fn lock_role(&self, index: u32, role: &str) -> Result<()> {
        let taken = || Error::RoleTaken {
            path: self.path.clone(),
            role: role.to_string(),
            pid: self
                .role_record(index)
                .map(|r| r.pid.load(std::sync::atomic::Ordering::Relaxed) as i32)
                .filter(|&p| p > 0),
        };
        let mut held = self.held_roles.lock().unwrap_or_else(|p| p.into_inner());
        if held.contains(&index) {
            return Err(taken());
        }
        if !sys::try_ofd_lock(&self.file, self.role_lock_offset(index))
            .map_err(|e| Error::io(&self.path, "fcntl(F_OFD_SETLK)", e))?
        {
            return Err(taken());
        }
        held.push(index);
        Ok(())
    }

    /// Releases role `index`.
    pub(crate) fn unlock_role(&self, index: u32) {
        let mut held = self.held_roles.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = held.iter().position(|&r| r == index) {
            held.swap_remove(i);
            let _ = sys::ofd_unlock(&self.file, self.role_lock_offset(index));
        }
    }

    /// Is role `index` held by a live handle (this one or another process's)?
    /// One `fcntl` call unless this handle holds it.
    pub(crate) fn role_alive(&self, index: u32) -> bool {
        {
            let held = self.held_roles.lock().unwrap_or_else(|p| p.into_inner());
            if held.contains(&index) {
                return true;
            }
        }
        // On error, say alive: a wrong "alive" costs a wait, a wrong "dead"
        // would lose data.
        sys::ofd_locked_by_other(&self.file, self.role_lock_offset(index)).unwrap_or(true)
    }
}
