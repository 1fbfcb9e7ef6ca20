//! The store's file operations: load (with the previous version's files), append, fsync,
//! and compaction into a snapshot (temp file, fsync, rename, fsync of the directory).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::log::read_log;
use super::migrate::{read_old, remove_old};
use super::{encode, StoreError, StoreProblem, StoreState};

/// The log's file name under the state directory.
pub const LOG_NAME: &str = "store.log";
const TMP_NAME: &str = ".store.log.tmp";

/// The open log; owned by the one writer.
#[derive(Debug)]
pub struct StoreFile {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    records: usize,
}

/// What [`StoreFile::open`] found and made.
#[derive(Debug)]
pub struct Opened {
    /// The log, compacted.
    pub file: StoreFile,
    /// The state it holds.
    pub state: StoreState,
    /// What was reported while loading.
    pub problems: Vec<StoreProblem>,
}

struct Loaded {
    state: StoreState,
    problems: Vec<StoreProblem>,
    damaged: bool,
    migrated: Vec<PathBuf>,
}

fn load(state_dir: &Path) -> Result<Loaded, StoreError> {
    let path = state_dir.join(LOG_NAME);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(err) => return Err(StoreError::io("read", &path, err)),
    };
    let read = read_log(&bytes);
    let mut state = StoreState::default();
    read.records.into_iter().for_each(|r| state.apply(r));
    let damaged = !read.problems.is_empty();
    let mut problems: Vec<StoreProblem> = read.problems.into_iter().map(Into::into).collect();
    let (old, old_problems) = read_old(state_dir);
    problems.extend(old_problems);
    for (key, count) in old.firings {
        let slot = state.firings.entry(key).or_insert(0);
        *slot = count.max(*slot);
    }
    for entry in old.journal {
        state.journal.entry(entry.id.clone()).or_insert(entry);
    }
    Ok(Loaded {
        state,
        problems,
        damaged,
        migrated: old.done,
    })
}

/// The state under `state_dir` (the log and the previous version's files), read only.
pub fn read_state(state_dir: &Path) -> Result<(StoreState, Vec<StoreProblem>), StoreError> {
    let loaded = load(state_dir)?;
    Ok((loaded.state, loaded.problems))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync", dir, e))
}

/// Writes `state` as a snapshot next to the log, durably, renames it over the log and
/// returns the log opened for appending with its record count.
fn write_snapshot(
    dir: &Path,
    path: &Path,
    state: &StoreState,
) -> Result<(File, usize), StoreError> {
    let records = state.snapshot();
    let bytes = encode(&records)?;
    let tmp = dir.join(TMP_NAME);
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| StoreError::io("create", &tmp, e))
        .and_then(|mut f| {
            f.write_all(&bytes)
                .map_err(|e| StoreError::io("write", &tmp, e))?;
            f.sync_all().map_err(|e| StoreError::io("fsync", &tmp, e))
        })
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| StoreError::io("rename", path, e)));
    if let Err(err) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err);
    }
    sync_dir(dir)?;
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| StoreError::io("open", path, e))?;
    Ok((file, records.len()))
}

impl StoreFile {
    /// Opens the store under `state_dir` (created if needed): loads the log, folds in the
    /// previous version's files, writes the result as a fresh snapshot, then removes the
    /// migrated files. Fails only when the directory cannot be read or written.
    pub fn open(state_dir: &Path) -> Result<Opened, StoreError> {
        fs::create_dir_all(state_dir).map_err(|e| StoreError::io("create", state_dir, e))?;
        let path = state_dir.join(LOG_NAME);
        let loaded = load(state_dir)?;
        if loaded.damaged {
            let aside = state_dir.join(format!(
                "{LOG_NAME}.damaged-{}",
                crate::journal::now_unix_ms()
            ));
            match fs::hard_link(&path, &aside) {
                Ok(()) => {
                    tracing::warn!(path = %aside.display(), "store: the damaged log is kept for inspection")
                }
                Err(err) => {
                    tracing::warn!(path = %aside.display(), error = %err, "store: cannot keep the damaged log")
                }
            }
        }
        let (file, records) = write_snapshot(state_dir, &path, &loaded.state)?;
        remove_old(state_dir, &loaded.migrated);
        Ok(Opened {
            file: StoreFile {
                dir: state_dir.to_path_buf(),
                path,
                file,
                records,
            },
            state: loaded.state,
            problems: loaded.problems,
        })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records in the log (live and superseded).
    pub fn records(&self) -> usize {
        self.records
    }

    /// Appends `records` encoded records (one `write`; not durable before [`StoreFile::sync`]).
    pub fn append(&mut self, bytes: &[u8], records: usize) -> Result<(), StoreError> {
        self.file
            .write_all(bytes)
            .map_err(|e| StoreError::io("write", &self.path, e))?;
        self.records += records;
        Ok(())
    }

    /// Makes what was appended durable (`fdatasync`).
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.file
            .sync_data()
            .map_err(|e| StoreError::io("fsync", &self.path, e))
    }

    /// Rewrites the log as a snapshot of `state` (durable on return). Also the way out after
    /// a failed append: whatever it left in the old log is gone.
    pub fn compact(&mut self, state: &StoreState) -> Result<(), StoreError> {
        let (file, records) = write_snapshot(&self.dir, &self.path, state)?;
        self.file = file;
        self.records = records;
        Ok(())
    }
}
