//! Scratch directories for harnesses that must write files: one per thread (test threads run
//! harnesses side by side; AFL runs one input at a time), under `/dev/shm` when it exists (no disk
//! I/O per execution), removed when the thread ends.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new, empty directory of this process named after `what`; the caller removes it.
pub fn fresh_dir(what: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = base.join(format!("muster-fuzz-{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory can be made");
    dir
}

thread_local! {
    static DIR: Scratch = Scratch(fresh_dir("scratch"));
}

/// This thread's scratch directory, emptied: no file of an earlier input is left.
pub fn empty_dir() -> PathBuf {
    let dir = DIR.with(|d| d.0.clone());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory can be made");
    dir
}
