//! Task log files: where they live, rotation by copy-truncate, and reading them back in order.
//!
//! A task writes its stdout and stderr straight into `alloc/logs/<task>.<stdout|stderr>.0`
//! (opened with O_APPEND), so no helper process stands between a task and its logs and both
//! survive an agent crash. The agent rotates by copying `.0` to `.1` (older files shift up, the
//! oldest beyond `max_files` is deleted) and truncating `.0`; the task's O_APPEND descriptor then
//! continues at the new end. The trade-off: lines written between the copy and the truncate are
//! lost, and a file may briefly exceed its size limit between checks. Higher index = older.
//! This module does no HTTP; `http` streams what it reads.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// `stdout` or `stderr`.
pub fn valid_kind(kind: &str) -> bool {
    kind == "stdout" || kind == "stderr"
}

/// Task names as Nomad allows them in paths: no separators, no dot-dot, nothing empty.
pub fn valid_task_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\\')
        && !name.contains('\0')
}

/// `<alloc dir>/alloc/logs`.
pub fn logs_dir(alloc_dir: &Path) -> PathBuf {
    alloc_dir.join("alloc").join("logs")
}

/// One log file of a task.
pub fn log_file(alloc_dir: &Path, task: &str, kind: &str, index: u32) -> PathBuf {
    logs_dir(alloc_dir).join(format!("{task}.{kind}.{index}"))
}

/// Rotates the live file if it is larger than `max_bytes`. Returns true if it rotated.
pub fn rotate_if_needed(
    alloc_dir: &Path,
    task: &str,
    kind: &str,
    max_files: u32,
    max_bytes: u64,
) -> io::Result<bool> {
    let live = log_file(alloc_dir, task, kind, 0);
    let size = match fs::metadata(&live) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if size <= max_bytes || max_files < 2 {
        if size > max_bytes {
            // One file allowed: keep only the live one, emptied.
            fs::OpenOptions::new().write(true).open(&live)?.set_len(0)?;
            return Ok(true);
        }
        return Ok(false);
    }
    let _ = fs::remove_file(log_file(alloc_dir, task, kind, max_files - 1));
    for index in (1..max_files - 1).rev() {
        let from = log_file(alloc_dir, task, kind, index);
        if from.exists() {
            fs::rename(&from, log_file(alloc_dir, task, kind, index + 1))?;
        }
    }
    fs::copy(&live, log_file(alloc_dir, task, kind, 1))?;
    fs::OpenOptions::new().write(true).open(&live)?.set_len(0)?;
    Ok(true)
}

/// The task's log files, oldest first (the live `.0` last).
pub fn files_in_order(alloc_dir: &Path, task: &str, kind: &str) -> Vec<PathBuf> {
    let prefix = format!("{task}.{kind}.");
    let mut indexed: Vec<(u32, PathBuf)> = fs::read_dir(logs_dir(alloc_dir))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let index = name.strip_prefix(&prefix)?.parse().ok()?;
            Some((index, e.path()))
        })
        .collect();
    indexed.sort_by_key(|(index, _)| std::cmp::Reverse(*index));
    indexed.into_iter().map(|(_, p)| p).collect()
}

/// Reads up to `max` bytes of `path` from `offset`.
pub fn read_at(path: &Path, offset: u64, max: usize) -> io::Result<Vec<u8>> {
    let mut f = fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take(max as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_max_files_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(logs_dir(dir.path())).unwrap();
        let live = log_file(dir.path(), "web", "stdout", 0);
        for round in 0..4 {
            fs::write(&live, format!("round {round} ").repeat(10)).unwrap();
            assert!(rotate_if_needed(dir.path(), "web", "stdout", 3, 20).unwrap());
            assert_eq!(fs::metadata(&live).unwrap().len(), 0);
        }
        let files = files_in_order(dir.path(), "web", "stdout");
        let names: Vec<String> =
            files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into()).collect();
        assert_eq!(names, ["web.stdout.2", "web.stdout.1", "web.stdout.0"]);
        assert!(fs::read_to_string(&files[0]).unwrap().starts_with("round 2"));
        assert!(fs::read_to_string(&files[1]).unwrap().starts_with("round 3"));
        assert!(!rotate_if_needed(dir.path(), "web", "stdout", 3, 20).unwrap());
    }

    #[test]
    fn task_names_that_escape_are_refused() {
        assert!(valid_task_name("web-1"));
        for bad in ["", "..", "a/b", "../x", "."] {
            assert!(!valid_task_name(bad), "{bad}");
        }
        assert!(!valid_kind("stdin"));
    }
}
