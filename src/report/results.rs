//! The results folder: `<results-dir>/YYYY-MM-DD_HH-MM-SS/` holding `metadata.json` and the
//! per-level results JSON. A run always gets a folder of its own (a second run in the same second
//! gets a `-2` suffix, created atomically with `create_dir`), so earlier results are never
//! overwritten; files are written to a temporary name and renamed into place, so a file is
//! either absent or complete.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::foundation::clock::LocalTime;
use crate::foundation::error::{Result, UserError};

/// A run's own results folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates a new, unique folder under `parent` named after `time`. Fails before the run if
    /// the parent cannot be created or written.
    /// Makes `--results-dir` (not yet the run's own folder), so that a folder that cannot be
    /// made is refused before any request is sent.
    pub fn prepare_parent(parent: &Path) -> Result<()> {
        std::fs::create_dir_all(parent).map_err(|e| {
            UserError::input(format!(
                "cannot create results folder '{}': {e}",
                parent.display()
            ))
        })
    }

    pub fn create(parent: &Path, time: &LocalTime) -> Result<Self> {
        Self::prepare_parent(parent)?;
        let base = time.folder_name();
        for n in 1..10_000 {
            let name = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let path = parent.join(name);
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Self { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(UserError::input(format!(
                        "cannot create a results folder in '{}': {e}",
                        parent.display()
                    )))
                }
            }
        }
        Err(UserError::input(format!(
            "too many results folders named {base}* in '{}'",
            parent.display()
        )))
    }

    /// Writes `value` as pretty JSON to `name` inside the folder, atomically.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<PathBuf> {
        let mut bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| UserError::input(format!("cannot serialize {name}: {e}")))?;
        bytes.push(b'\n');
        self.write_atomic(name, &bytes)
    }

    /// Creates `name` inside the folder for appending (it must not exist yet): for files written
    /// level by level, like `requests.jsonl`. Buffered; each level's lines are flushed after it.
    pub fn create_new(&self, name: &str) -> Result<std::io::BufWriter<std::fs::File>> {
        let path = self.path.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map(|f| std::io::BufWriter::with_capacity(1 << 20, f))
            .map_err(|e| UserError::input(format!("cannot create '{}': {e}", path.display())))
    }

    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.path.join(name);
        let tmp = self.path.join(format!(".{name}.tmp"));
        let err =
            |e: std::io::Error| UserError::input(format!("cannot write '{}': {e}", path.display()));
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)?;
        Ok(path)
    }
}

/// Keeps only the file name of a `--output`/`--plot-output` value: output files always land in
/// the run's own folder.
pub fn file_name_only(flag: &str, value: &str) -> Result<String> {
    Path::new(value)
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty() && *n != "metadata.json")
        .map(str::to_string)
        .ok_or_else(|| {
            UserError::input(format!(
                "{flag} '{value}': expected a file name such as benchmark_qps_results.json (not metadata.json)"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_folders_and_atomic_files() {
        let parent = std::env::temp_dir().join(format!("qpsbench-rd-{}", std::process::id()));
        let t = LocalTime::now();
        let a = RunDir::create(&parent, &t).unwrap();
        let b = RunDir::create(&parent, &t).unwrap();
        assert_ne!(a.path, b.path);
        assert!(b
            .path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("-2"));
        let p = a
            .write_json("x.json", &serde_json::json!({"k": 1}))
            .unwrap();
        assert_eq!(std::fs::read_to_string(p).unwrap(), "{\n  \"k\": 1\n}\n");
        assert_eq!(std::fs::read_dir(&a.path).unwrap().count(), 1);
        std::fs::remove_dir_all(&parent).unwrap();
        assert_eq!(file_name_only("--output", "a/b/r.json").unwrap(), "r.json");
        assert!(file_name_only("--output", "metadata.json").is_err());
        assert!(file_name_only("--output", "/").is_err());
    }
}
