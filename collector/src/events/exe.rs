//! The executable's path of the process behind an event, from
//! /proc/<pid>/exe, remembered per process: reading the link costs a path
//! walk in procfs, more than the rest of the enrichment together, and one
//! process often causes many events in a row.
//!
//! A remembered path must not outlive the program it names. An exec the
//! agent sees replaces it with the program the kernel ran, an exit forgets
//! the process, and a different `comm` (an exec usually renames the task)
//! reads the link again. What remains (an exec the agent did not see, of a
//! program with the same name, while the process module is off) lasts at
//! most [`TTL`].

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;

/// How long a path is trusted without a sign that it is still right.
pub const TTL: Duration = Duration::from_secs(1);
/// Past this many processes, those not seen within [`TTL`] are forgotten.
const SWEEP_AT: usize = 16_384;

struct Known {
    /// `None` after an exec: the task's new name is the one its next event
    /// carries.
    comm: Option<String>,
    /// `None`: the link could not be read (the process is gone).
    exe: Option<Arc<str>>,
    read: Instant,
}

#[derive(Default)]
pub struct Executables {
    known: Mutex<FxHashMap<u32, Known>>,
}

impl Executables {
    /// The executable of `pid`, whose task is called `comm` now.
    pub fn get(&self, pid: u32, comm: &str) -> Option<Arc<str>> {
        let now = Instant::now();
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = known.get_mut(&pid)
            && now.duration_since(k.read) < TTL
        {
            match &k.comm {
                Some(c) if c == comm => return k.exe.clone(),
                Some(_) => {}
                None => {
                    k.comm = Some(comm.to_owned());
                    return k.exe.clone();
                }
            }
        }
        if known.len() >= SWEEP_AT {
            known.retain(|_, k| now.duration_since(k.read) < TTL);
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| Arc::from(p.to_string_lossy().as_ref()));
        known.insert(
            pid,
            Known {
                comm: Some(comm.to_owned()),
                exe: exe.clone(),
                read: now,
            },
        );
        exe
    }

    /// `parent`'s executable, now also `child`'s (a fork).
    pub fn inherit(&self, parent: u32, comm: &str, child: u32) -> Option<Arc<str>> {
        let exe = self.get(parent, comm);
        self.known.lock().unwrap_or_else(|e| e.into_inner()).insert(
            child,
            Known {
                comm: Some(comm.to_owned()),
                exe: exe.clone(),
                read: Instant::now(),
            },
        );
        exe
    }

    /// What was known of `pid`, which has ended; it is forgotten.
    pub fn take(&self, pid: u32) -> Option<Arc<str>> {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pid)
            .and_then(|k| k.exe)
    }

    /// `pid` now runs `exe` (an exec that succeeded).
    pub fn ran(&self, pid: u32, exe: Arc<str>) {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).insert(
            pid,
            Known {
                comm: None,
                exe: Some(exe),
                read: Instant::now(),
            },
        );
    }

    /// What `pid` runs is not known any more.
    pub fn forget(&self, pid: u32) {
        self.take(pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_comm() -> String {
        std::fs::read_to_string("/proc/self/comm")
            .unwrap()
            .trim_end()
            .to_owned()
    }

    #[test]
    fn reads_the_link_and_remembers_it() {
        let exes = Executables::default();
        let pid = std::process::id();
        let expected = std::fs::read_link("/proc/self/exe").unwrap();
        let got = exes.get(pid, &own_comm()).unwrap();
        assert_eq!(*got, *expected.to_string_lossy());
        // Remembered: the same allocation comes back.
        assert!(Arc::ptr_eq(&got, &exes.get(pid, &own_comm()).unwrap()));
    }

    #[test]
    fn another_name_or_forget_reads_again() {
        let exes = Executables::default();
        let pid = std::process::id();
        let first = exes.get(pid, &own_comm()).unwrap();
        let renamed = exes.get(pid, "other-name").unwrap();
        assert!(!Arc::ptr_eq(&first, &renamed));
        exes.forget(pid);
        let again = exes.get(pid, "other-name").unwrap();
        assert!(!Arc::ptr_eq(&renamed, &again));
    }

    #[test]
    fn a_child_runs_its_parents_program_until_it_ends() {
        let exes = Executables::default();
        let pid = std::process::id();
        let parent = exes.get(pid, &own_comm()).unwrap();
        // No such process: only the inheritance can name its program.
        let child = u32::MAX - 2;
        let inherited = exes.inherit(pid, &own_comm(), child).unwrap();
        assert!(Arc::ptr_eq(&parent, &inherited));
        assert!(Arc::ptr_eq(&parent, &exes.get(child, &own_comm()).unwrap()));
        assert!(Arc::ptr_eq(&parent, &exes.take(child).unwrap()));
        assert_eq!(exes.take(child), None);
        assert_eq!(exes.get(child, &own_comm()), None);
    }

    #[test]
    fn after_an_exec_the_program_run_is_known_under_the_new_name() {
        let exes = Executables::default();
        let pid = u32::MAX - 3;
        exes.ran(pid, Arc::from("/usr/bin/true"));
        let got = exes.get(pid, "true").unwrap();
        assert_eq!(&*got, "/usr/bin/true");
        // The name it was first seen with sticks: another one reads /proc
        // (and finds no such process).
        assert_eq!(exes.get(pid, "true").as_deref(), Some("/usr/bin/true"));
        assert_eq!(exes.get(pid, "renamed"), None);
    }

    #[test]
    fn a_process_that_is_gone_has_none() {
        let exes = Executables::default();
        // Above the kernel's pid_max limit (4,194,304): never a process.
        assert_eq!(exes.get(u32::MAX - 1, "x"), None);
    }
}
