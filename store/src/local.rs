//! The local-folder backend. Objects are files under the root; a key's `/` separates folders.
//!
//! Every write goes to a temporary file in the target's folder, is synced, and is renamed into
//! place, so a reader never sees a half-written object and a crash leaves at most a stray
//! temporary file (named `.dispr-tmp-*`, which listings skip). `put_if_absent` renames with
//! `RENAME_NOREPLACE` (or a hard link where that is missing), so of several racing writers
//! exactly one wins. Files and folders get the modes any program's files get (0666 and 0777 less
//! the umask: 0644 and 0755 usually), so other accounts can read a run's outputs. The file-system
//! calls block, so each operation runs on tokio's blocking pool.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::{ErrorKind, Op, StoreError};
use crate::key::TEMP_PREFIX;

/// A store rooted at a local folder (which is created on the first write).
#[derive(Debug)]
pub(crate) struct LocalFolder {
    root: PathBuf,
}

impl LocalFolder {
    pub(crate) fn new(root: PathBuf) -> Self {
        LocalFolder { root }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.root.join(key);
        let target = path.display().to_string();
        let read = blocking(Op::Read, &path, move |path| match unreadable_entry(path) {
            Some(what) => Ok(Err(what)),
            None => std::fs::read(path).map(|data| Ok(Bytes::from(data))),
        })
        .await?;
        read.map_err(|what| crate::error::not_a_file(target, what))
    }

    pub(crate) async fn get_at_most(&self, key: &str, max_bytes: u64) -> Result<Bytes, StoreError> {
        let path = self.root.join(key);
        let target = path.display().to_string();
        let read = blocking(Op::Read, &path, move |path| {
            use std::io::Read;
            if let Some(what) = unreadable_entry(path) {
                return Ok(Err(Refused::NotAFile(what)));
            }
            let file = std::fs::File::open(path)?;
            // The size on disk first, then at most one byte more than allowed in case it grew.
            let size = file.metadata()?.len();
            if size > max_bytes {
                return Ok(Err(Refused::TooLarge(size)));
            }
            let mut data = Vec::with_capacity(size as usize);
            file.take(max_bytes.saturating_add(1)).read_to_end(&mut data)?;
            if data.len() as u64 > max_bytes {
                return Ok(Err(Refused::TooLarge(data.len() as u64)));
            }
            Ok(Ok(Bytes::from(data)))
        })
        .await?;
        read.map_err(|refused| match refused {
            Refused::TooLarge(size) => crate::error::too_large(target, size, max_bytes),
            Refused::NotAFile(what) => crate::error::not_a_file(target, what),
        })
    }

    pub(crate) async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let path = self.root.join(key);
        blocking(Op::Write, &path, move |path| write_atomically(path, &data, true).map(|_| ())).await
    }

    pub(crate) async fn put_file(&self, key: &str, source: &Path) -> Result<(), StoreError> {
        let path = self.root.join(key);
        let source = source.to_owned();
        blocking(Op::Write, &path, move |path| {
            let mut file = std::fs::File::open(&source)?;
            write_atomically_from(path, &mut file, true).map(|_| ())
        })
        .await
    }

    pub(crate) async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StoreError> {
        let path = self.root.join(key);
        blocking(Op::WriteIfAbsent, &path, move |path| write_atomically(path, &data, false)).await
    }

    pub(crate) async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let path = self.root.join(key);
        blocking(Op::Check, &path, |path| match std::fs::metadata(path) {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if is_absent(&e) => Ok(false),
            Err(e) => Err(e),
        })
        .await
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.root.join(key);
        blocking(Op::Delete, &path, |path| match std::fs::remove_file(path) {
            Err(e) if is_absent(&e) => Ok(()),
            other => other,
        })
        .await
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // Walk only the folder the prefix names; its last, partial segment filters the entries
        // at the top of that folder (`image/A_` lists `image/A_1.tif` and `image/A_x/...`).
        let (folder, partial) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let dir = self.root.join(folder);
        let root = self.root.clone();
        let partial = partial.to_owned();
        blocking(Op::List, &dir, move |dir| list_files(&root, dir, &partial)).await
    }
}

/// Why a bounded read refused a path before reading it.
enum Refused {
    TooLarge(u64),
    NotAFile(String),
}

/// What is at `path` when it is there but is not a file one can read: a folder, a FIFO (opening
/// one would wait for a writer forever), a socket, a device or a symbolic link to nothing. `None`
/// for a file, a link to one, and for nothing at all (the read then says the object is missing).
fn unreadable_entry(path: &Path) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    let entry = std::fs::symlink_metadata(path).ok()?;
    let kind = match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => return None,
        Ok(meta) => meta.file_type(),
        Err(e) if entry.file_type().is_symlink() => {
            let to = std::fs::read_link(path).map_or_else(|_| "?".into(), |t| t.display().to_string());
            return Some(if e.kind() == io::ErrorKind::NotFound {
                format!("it is a symbolic link to {to}, which does not exist")
            } else {
                format!("it is a symbolic link to {to}, which cannot be followed ({e})")
            });
        }
        Err(_) => return None,
    };
    let what = if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "something other than a file"
    };
    Some(format!("it is {what}, not a file"))
}

/// Runs a blocking file-system call off the async runtime and turns its error into a
/// [`StoreError`] naming `path`.
async fn blocking<T, F>(op: Op, path: &Path, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&Path) -> io::Result<T> + Send + 'static,
{
    let owned = path.to_owned();
    let result = tokio::task::spawn_blocking(move || f(&owned)).await;
    let target = path.display().to_string();
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(io_error(op, target, e)),
        Err(join) => {
            Err(StoreError::new(ErrorKind::Io, op, target, "the file-system task failed").caused_by(join))
        }
    }
}

fn io_error(op: Op, target: String, e: io::Error) -> StoreError {
    if op == Op::Read && is_absent(&e) {
        return StoreError::new(ErrorKind::NotFound, op, target, "no such object").caused_by(e);
    }
    // The OS error's text is the detail; it is not also attached as the source, which would
    // print it twice in an error chain ("...: Permission denied (os error 13); check ...:
    // Permission denied (os error 13)").
    match e.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            StoreError::new(ErrorKind::AccessDenied, op, target, e.to_string())
                .hint("check the folder's owner and permissions")
        }
        io::ErrorKind::StorageFull => StoreError::new(ErrorKind::Io, op, target, e.to_string())
            .hint("free space on that disk or write the output elsewhere"),
        _ => StoreError::new(ErrorKind::Io, op, target, e.to_string()),
    }
}

/// Whether an error means "there is no object here": a missing file or folder, or a folder or
/// a file where the key expects the other.
fn is_absent(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::IsADirectory | io::ErrorKind::NotADirectory)
}

/// Writes `data` to `path` through a synced temporary file in the same folder. With `overwrite`
/// false the final rename fails if `path` exists; the result says whether `data` was written.
fn write_atomically(path: &Path, mut data: &[u8], overwrite: bool) -> io::Result<bool> {
    write_atomically_from(path, &mut data, overwrite)
}

/// [`write_atomically`] of what `data` reads: a file copied in a buffer at a time.
fn write_atomically_from(path: &Path, data: &mut impl io::Read, overwrite: bool) -> io::Result<bool> {
    let folder = path.parent().ok_or_else(|| io::Error::other("an object needs a parent folder"))?;
    std::fs::create_dir_all(folder)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(TEMP_PREFIX);
    // Readable by others, like any file a program writes (0666 less the umask, so 0644 under the
    // usual umask 022): outputs on a shared filesystem are opened in Fiji under other accounts.
    // tempfile's default of 0600 would survive the rename. Folders get 0777 less the umask from
    // `create_dir_all` already.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut temp = builder.tempfile_in(folder)?;
    io::copy(data, &mut temp)?;
    temp.flush()?;
    // Durable before visible: a worker acks a job once its outputs are written.
    temp.as_file().sync_all()?;
    let written = if overwrite {
        temp.persist(path).map_err(|e| e.error)?;
        true
    } else {
        match temp.persist_noclobber(path) {
            Ok(_) => true,
            // The temporary file is deleted when the error (which owns it) is dropped.
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e.error),
        }
    };
    if written {
        // The rename itself is durable only once the folder is synced.
        std::fs::File::open(folder)?.sync_all()?;
    }
    Ok(written)
}

/// The keys of the files under `dir` (relative to `root`, `/`-separated, sorted) whose first
/// path component below `dir` starts with `partial`. A missing folder has no keys.
fn list_files(root: &Path, dir: &Path, partial: &str) -> io::Result<Vec<String>> {
    let walk = walkdir::WalkDir::new(dir).min_depth(1).follow_links(true).into_iter().filter_entry(|entry| {
        let name = entry.file_name().to_string_lossy();
        !name.starts_with(TEMP_PREFIX) && (entry.depth() > 1 || name.starts_with(partial))
    });
    let mut keys = Vec::new();
    for entry in walk {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.depth() == 0 && e.io_error().is_some_and(is_absent) => return Ok(Vec::new()),
            // A symbolic link to nothing (or into a loop) is no object: skip it, as other
            // entries that are not files are; reading it says what it is.
            Err(e)
                if e.depth() > 0
                    && e.path()
                        .is_some_and(|p| p.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink())) =>
            {
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry.path().strip_prefix(root).map_err(io::Error::other)?;
        let key = relative.to_str().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("file name {} is not UTF-8: rename it", relative.display()),
            )
        })?;
        keys.push(key.to_owned());
    }
    keys.sort_unstable();
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn temporary_files_never_show() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFolder::new(dir.path().to_owned());
        store.put("a/b.bin", Bytes::from_static(b"x")).await.unwrap();
        // A writer that crashed mid-write leaves a temporary file behind.
        std::fs::write(dir.path().join("a").join(format!("{TEMP_PREFIX}123")), b"half").unwrap();
        assert_eq!(store.list("").await.unwrap(), vec!["a/b.bin".to_owned()]);
        let names: Vec<_> =
            std::fs::read_dir(dir.path().join("a")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "put left no temporary file of its own: {names:?}");
    }

    /// Objects and their folders are as readable as any file this process creates: what
    /// `File::create` and `create_dir` give under the same umask (0644 and 0755 under 022), not
    /// the temporary file's private 0600.
    #[cfg(unix)]
    #[tokio::test]
    async fn objects_get_the_modes_of_ordinary_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFolder::new(dir.path().to_owned());
        store.put("a/b.bin", Bytes::from_static(b"x")).await.unwrap();
        assert!(store.put_if_absent("a/c.json", Bytes::from_static(b"y")).await.unwrap());
        std::fs::File::create(dir.path().join("plain")).unwrap();
        std::fs::create_dir(dir.path().join("plain-dir")).unwrap();
        let mode = |p: &str| std::fs::metadata(dir.path().join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("a/b.bin"), mode("plain"));
        assert_eq!(mode("a/c.json"), mode("plain"));
        assert_eq!(mode("a"), mode("plain-dir"));
    }

    #[tokio::test]
    async fn racing_put_if_absent_has_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(LocalFolder::new(dir.path().to_owned()));
        let tasks: Vec<_> = (0..16u8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(
                    async move { store.put_if_absent("done.json", Bytes::from(vec![i; 4096])).await },
                )
            })
            .collect();
        let mut winners = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            if task.await.unwrap().unwrap() {
                winners.push(i as u8);
            }
        }
        assert_eq!(winners.len(), 1, "exactly one writer wins: {winners:?}");
        assert_eq!(store.get("done.json").await.unwrap(), Bytes::from(vec![winners[0]; 4096]));
    }

    #[tokio::test]
    async fn what_is_not_a_file_is_listed_by_none_and_named_by_its_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFolder::new(dir.path().to_owned());
        store.put("image/good.tif", Bytes::from_static(b"x")).await.unwrap();
        let image = dir.path().join("image");
        std::fs::create_dir(image.join("folder.tif")).unwrap();
        let made = std::process::Command::new("mkfifo").arg(image.join("fifo.tif")).status().unwrap();
        assert!(made.success(), "mkfifo (coreutils) made the FIFO");
        std::os::unix::fs::symlink(dir.path().join("gone.tif"), image.join("dangling.tif")).unwrap();

        assert_eq!(store.list("image/").await.unwrap(), vec!["image/good.tif".to_owned()]);
        for (key, says) in [
            ("image/folder.tif", "it is a folder, not a file"),
            // Opening a FIFO would wait for a writer forever: it is refused before.
            ("image/fifo.tif", "it is a FIFO (named pipe), not a file"),
            ("image/dangling.tif", "it is a symbolic link to "),
        ] {
            for err in [store.get(key).await.unwrap_err(), store.get_at_most(key, 100).await.unwrap_err()] {
                assert_eq!(err.kind(), ErrorKind::NotAFile, "{key}: {err}");
                let text = err.to_string();
                assert!(
                    text.contains(&dir.path().join(key).display().to_string()) && text.contains(says),
                    "{text}"
                );
                assert!(text.contains("put the file itself there, or remove it"), "{text}");
            }
        }
        let text = store.get("image/dangling.tif").await.unwrap_err().to_string();
        assert!(text.contains("gone.tif, which does not exist"), "{text}");
    }

    #[tokio::test]
    async fn a_file_in_the_way_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFolder::new(dir.path().to_owned());
        store.put("a", Bytes::from_static(b"x")).await.unwrap();
        let err = store.put("a/b", Bytes::from_static(b"y")).await.unwrap_err();
        assert!(!err.is_not_found() && !err.is_retriable());
        assert!(err.to_string().contains(&dir.path().join("a/b").display().to_string()), "{err}");
    }
}
