//! Steps left running by a server that died (SIGKILL, a crash, the machine's OOM killer)
//! would outlive it: their processes are in groups of their own. Each step's processes
//! carry the executor's mark in their environment ([`MARK_VARIABLE`]), which children
//! and grandchildren inherit; at start, the executor kills every process that carries its
//! mark, found through `/proc`, before it recovers the steps in the store.

use std::path::Path;

/// The environment variable that marks a step's processes with the executor that ran them.
pub const MARK_VARIABLE: &str = "MLGRID_EXECUTOR";

/// The mark of an executor: its node's name (empty for the only node of its runs
/// folder) and its runs folder, which together say which server's steps a process
/// belongs to.
pub fn mark(holder: &str, runs_root: &Path) -> String {
    format!("{holder}@{}", runs_root.display())
}

/// Kills (SIGKILL) every process of this user whose environment carries `mark`; returns
/// how many. Processes that cannot be read (other users', or gone meanwhile) are skipped.
pub fn kill_marked(mark: &str) -> usize {
    let wanted = format!("{MARK_VARIABLE}={mark}");
    let own = std::process::id();
    let mut killed = 0;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid as u32 == own {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|var| var == wanted.as_bytes()) {
            // SAFETY: kill(2) on a pid read from /proc; at worst it is gone (ESRCH).
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn marked_processes_are_killed_and_others_are_not() {
        let mark = format!("test-{}", uuid::Uuid::new_v4());
        let mut marked = Command::new("sleep")
            .arg("30")
            .env(MARK_VARIABLE, &mark)
            .spawn()
            .unwrap();
        let mut other = Command::new("sleep")
            .arg("30")
            .env(MARK_VARIABLE, "someone-else")
            .spawn()
            .unwrap();
        // The child has exec'd once its environment reads as sleep's.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(kill_marked(&mark), 1);
        assert!(marked.wait().unwrap().code().is_none(), "killed by a signal");
        assert!(other.try_wait().unwrap().is_none(), "the other one still runs");
        other.kill().unwrap();
        other.wait().unwrap();
    }
}
