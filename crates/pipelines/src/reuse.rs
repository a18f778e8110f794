//! Reuse (Azure ML's `allow_reuse`): a step whose command, environment, parameters and
//! input data are those of an earlier completed step takes that step's outputs instead
//! of running again.
//!
//! [`reuse_key`] hashes what determines a step's outputs, and nothing that differs from
//! one run to the next for the same work:
//! - the pipeline's and the step's names, the declared outputs;
//! - the command, declared environment and working directory, rendered with the
//!   parameter values but with every data path, input and output folder written as its
//!   placeholder (`${inputs.data}`): those paths name this run's folders, and what they
//!   hold is hashed instead;
//! - every parameter's type and value (a step sees them all, as `MLGRID_PARAM_*`);
//! - the contents of every data path and input folder: each file's relative path and
//!   bytes, each link's target (never followed), each empty folder, in sorted order; a
//!   data path's file name too, since programs go by extensions.
//!
//! The inherited variables (`PATH`, `HOME`, ...) are left out, since they are the
//! node's, not the step's, as are the `MLGRID_*` variables, made of what is hashed. The
//! programs a command runs and files it reads from elsewhere are not hashed either: a
//! step that reads anything but its parameters, data paths and inputs should set
//! `allow_reuse: false`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use mlgrid_core::pipeline::{ParameterValue, Placeholder, Step};
use sha2::{Digest, Sha256};

use crate::render::{RenderError, StepSpec, render_templates};

/// Bumped when what the key hashes changes, so that no old key matches a new one.
const KEY_VERSION: &str = "mlgrid-reuse-1";

/// Files are hashed through a buffer of this size, whatever their size.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Why a reuse key could not be made, or outputs not copied.
#[derive(Debug, thiserror::Error)]
pub enum ReuseError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("{action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is neither a file, a folder nor a symbolic link; a step's outputs hold only those", .0.display())]
    Special(PathBuf),
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ReuseError {
    let path = path.to_owned();
    move |source| ReuseError::Io { action, path, source }
}

/// A hasher that writes each field with its length, so that no two sequences of fields
/// hash alike.
struct KeyHasher(Sha256);

impl KeyHasher {
    fn field(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    fn count(&mut self, n: usize) {
        self.0.update((n as u64).to_be_bytes());
    }
}

/// The hex SHA-256 that a later step with the same work shares with this one. `spec` is
/// the step rendered for this run (its data paths, inputs and outputs are read from it).
/// Reads every data path and input file, on a blocking thread; the step's own outputs
/// are not read, so the key is known before it runs, to look for an earlier one.
pub async fn reuse_key(
    pipeline: &str,
    step: &Step,
    parameters: &BTreeMap<String, ParameterValue>,
    spec: &StepSpec,
) -> Result<String, ReuseError> {
    let mut values: BTreeMap<Placeholder, String> = parameters
        .iter()
        .map(|(name, value)| (Placeholder::Parameter(name.clone()), value.to_string()))
        .collect();
    let neutral = spec
        .data_paths
        .keys()
        .map(|name| Placeholder::DataPath(name.clone()))
        .chain(spec.inputs.keys().map(|name| Placeholder::Input(name.clone())))
        .chain(spec.outputs.keys().map(|name| Placeholder::Output(name.clone())));
    for placeholder in neutral {
        let text = placeholder.to_string();
        values.insert(placeholder, text);
    }
    let rendered = render_templates(step, &values)?;

    let mut key = KeyHasher(Sha256::new());
    key.field(KEY_VERSION.as_bytes());
    key.field(pipeline.as_bytes());
    key.field(step.name.as_bytes());
    key.count(rendered.argv.len());
    for arg in &rendered.argv {
        key.field(arg.as_bytes());
    }
    key.count(rendered.environment.len());
    for (name, value) in &rendered.environment {
        key.field(name.as_bytes());
        key.field(value.as_bytes());
    }
    key.field(rendered.working_directory.as_deref().unwrap_or("").as_bytes());
    key.count(step.outputs.len());
    for output in &step.outputs {
        key.field(output.as_bytes());
    }
    key.count(parameters.len());
    for (name, value) in parameters {
        let kind = match value {
            ParameterValue::String(_) => "string",
            ParameterValue::Int(_) => "int",
            ParameterValue::Float(_) => "float",
            ParameterValue::Bool(_) => "bool",
        };
        key.field(name.as_bytes());
        key.field(kind.as_bytes());
        key.field(value.to_string().as_bytes());
    }

    let data_paths: Vec<(String, PathBuf)> = spec.data_paths.iter().map(|(n, p)| (n.clone(), p.clone())).collect();
    let inputs: Vec<(String, PathBuf)> = spec.inputs.iter().map(|(n, p)| (n.clone(), p.clone())).collect();
    let key = tokio::task::spawn_blocking(move || -> Result<KeyHasher, ReuseError> {
        key.count(data_paths.len());
        for (name, path) in &data_paths {
            key.field(name.as_bytes());
            key.field(path.file_name().map_or(&[][..], |n| n.as_bytes()));
            hash_tree(&mut key, path)?;
        }
        key.count(inputs.len());
        for (name, path) in &inputs {
            key.field(name.as_bytes());
            hash_tree(&mut key, path)?;
        }
        Ok(key)
    })
    .await
    .expect("hashing does not panic")?;
    Ok(hex(&key.0.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the walk of a tree finds at a path.
enum Entry {
    File,
    Folder,
    Link,
    Special,
}

/// Every path below `root` (and `root` itself, as the empty path), sorted, links not
/// followed.
fn walk(root: &Path) -> Result<Vec<(PathBuf, Entry)>, ReuseError> {
    let kind = |path: &Path| -> Result<Entry, ReuseError> {
        let kind = fs::symlink_metadata(path)
            .map_err(io_error("reading", path))?
            .file_type();
        Ok(if kind.is_symlink() {
            Entry::Link
        } else if kind.is_dir() {
            Entry::Folder
        } else if kind.is_file() {
            Entry::File
        } else {
            Entry::Special
        })
    };
    let mut found = vec![(PathBuf::new(), kind(root)?)];
    let mut folders = match found[0].1 {
        Entry::Folder => vec![PathBuf::new()],
        _ => Vec::new(),
    };
    while let Some(relative) = folders.pop() {
        let folder = root.join(&relative);
        for entry in fs::read_dir(&folder).map_err(io_error("reading", &folder))? {
            let entry = entry.map_err(io_error("reading", &folder))?;
            let path = relative.join(entry.file_name());
            let entry = kind(&root.join(&path))?;
            if let Entry::Folder = entry {
                folders.push(path.clone());
            }
            found.push((path, entry));
        }
    }
    found.sort_by(|a, b| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()));
    Ok(found)
}

/// Hashes the tree at `root` into `key`: each entry's kind and relative path, a file's
/// bytes (through a bounded buffer), a link's target.
fn hash_tree(key: &mut KeyHasher, root: &Path) -> Result<(), ReuseError> {
    let entries = walk(root)?;
    key.count(entries.len());
    let mut buffer = vec![0u8; READ_BUFFER_BYTES];
    for (relative, entry) in entries {
        // Not `root.join("")`, which is `root/`, no file's name.
        let path = if relative.as_os_str().is_empty() {
            root.to_owned()
        } else {
            root.join(&relative)
        };
        key.field(relative.as_os_str().as_bytes());
        match entry {
            Entry::Folder => key.field(b"folder"),
            Entry::Special => key.field(b"special"),
            Entry::Link => {
                key.field(b"link");
                let target = fs::read_link(&path).map_err(io_error("reading", &path))?;
                key.field(target.as_os_str().as_bytes());
            }
            Entry::File => {
                key.field(b"file");
                let mut file = fs::File::open(&path).map_err(io_error("reading", &path))?;
                let mut contents = Sha256::new();
                loop {
                    let read = file.read(&mut buffer).map_err(io_error("reading", &path))?;
                    if read == 0 {
                        break;
                    }
                    contents.update(&buffer[..read]);
                }
                key.field(&contents.finalize());
            }
        }
    }
    Ok(())
}

/// Copies the tree at `from` (an earlier step's output folder) into `to`, made if
/// missing: files hard-linked where the file system allows it (the same disk), else
/// copied; links made anew with the same target. On a blocking thread.
///
/// Hard-linked files are shared with the earlier run, as inputs are for reading.
pub async fn copy_outputs(from: &Path, to: &Path) -> Result<(), ReuseError> {
    let (from, to) = (from.to_owned(), to.to_owned());
    tokio::task::spawn_blocking(move || copy_tree(&from, &to))
        .await
        .expect("copying does not panic")
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), ReuseError> {
    fs::create_dir_all(to).map_err(io_error("making", to))?;
    for (relative, entry) in walk(from)? {
        if relative.as_os_str().is_empty() {
            if !matches!(entry, Entry::Folder) {
                return Err(ReuseError::Io {
                    action: "copying",
                    path: from.to_owned(),
                    source: io::Error::new(io::ErrorKind::NotADirectory, "outputs are folders"),
                });
            }
            continue;
        }
        let (source, target) = (from.join(&relative), to.join(&relative));
        match entry {
            Entry::Folder => fs::create_dir_all(&target).map_err(io_error("making", &target))?,
            Entry::File => {
                if fs::hard_link(&source, &target).is_err() {
                    fs::copy(&source, &target).map_err(io_error("copying", &source))?;
                }
            }
            Entry::Link => {
                let link = fs::read_link(&source).map_err(io_error("reading", &source))?;
                std::os::unix::fs::symlink(link, &target).map_err(io_error("making", &target))?;
            }
            Entry::Special => return Err(ReuseError::Special(source)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(root: &Path) -> Vec<u8> {
        let mut key = KeyHasher(Sha256::new());
        hash_tree(&mut key, root).unwrap();
        key.0.finalize().to_vec()
    }

    #[test]
    fn a_tree_hashes_by_relative_paths_and_contents() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for root in [a.path(), b.path()] {
            fs::create_dir_all(root.join("sub/empty")).unwrap();
            fs::write(root.join("sub/x.csv"), "1,2").unwrap();
            fs::write(root.join("y"), vec![7u8; 3 * READ_BUFFER_BYTES + 5]).unwrap();
            std::os::unix::fs::symlink("y", root.join("link")).unwrap();
        }
        assert_eq!(digest(a.path()), digest(b.path()), "same tree, other place");
        fs::write(b.path().join("sub/x.csv"), "1,3").unwrap();
        assert_ne!(digest(a.path()), digest(b.path()), "a file's contents");
        fs::write(b.path().join("sub/x.csv"), "1,2").unwrap();
        fs::rename(b.path().join("sub/empty"), b.path().join("sub/void")).unwrap();
        assert_ne!(digest(a.path()), digest(b.path()), "an empty folder's name");
    }

    #[test]
    fn a_file_alone_hashes_by_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
        fs::write(&a, "1,2").unwrap();
        fs::write(&b, "1,2").unwrap();
        assert_eq!(digest(&a), digest(&b));
        fs::write(&b, "1,3").unwrap();
        assert_ne!(digest(&a), digest(&b));
    }

    #[tokio::test]
    async fn outputs_are_copied_whole() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::create_dir_all(from.path().join("sub")).unwrap();
        fs::write(from.path().join("sub/model.bin"), "weights").unwrap();
        std::os::unix::fs::symlink("sub/model.bin", from.path().join("latest")).unwrap();
        let target = to.path().join("outputs/model");
        copy_outputs(from.path(), &target).await.unwrap();
        assert_eq!(fs::read_to_string(target.join("sub/model.bin")).unwrap(), "weights");
        assert_eq!(
            fs::read_link(target.join("latest")).unwrap(),
            Path::new("sub/model.bin")
        );
        assert_eq!(digest(from.path()), digest(&target));
    }
}
