//! Where pipeline files live under the data directory. Every path is computed here, so
//! that the executor, the API that serves logs and the cleanup agree:
//!
//! ```text
//! <data_dir>/datastores/<datastore>/                             a local datastore (the
//!                                                                dead-letter folders too)
//! <data_dir>/datastore-cache/<workspace>/<datastore>/...         files fetched from remote
//!                                                                datastores
//! <data_dir>/pipeline-runs/<workspace>/<pipeline_run_id>/<step>/ a step's folder
//!     outputs/<output>/                                          what it writes for later steps
//!     stdout.log, stderr.log                                     its logs
//! ```
//!
//! Workspace names, run ids and step names are checked identifiers already, but they
//! become folder names here, so each is checked again: no `/`, no `.` or `..`, no NUL.
//! (A step may well be named `..`: core's asset names allow dots.)

use std::io;
use std::path::{Path, PathBuf};

/// A name that cannot be one folder's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} `{value}` cannot name a folder: it must not be empty, `.` or `..`, nor contain `/` or NUL; rename it")]
pub struct LayoutError {
    pub what: &'static str,
    pub value: String,
}

/// `value` as one path segment, or the error naming it as `what`.
fn segment<'a>(what: &'static str, value: &'a str) -> Result<&'a str, LayoutError> {
    if value.is_empty() || value == "." || value == ".." || value.contains(['/', '\0']) {
        Err(LayoutError {
            what,
            value: value.to_owned(),
        })
    } else {
        Ok(value)
    }
}

/// The data directory, as pipelines use it.
#[derive(Debug, Clone)]
pub struct DataLayout {
    datastores: PathBuf,
    runs: PathBuf,
    cache: PathBuf,
}

impl DataLayout {
    pub fn new(data_dir: impl Into<PathBuf>) -> DataLayout {
        let data_dir = data_dir.into();
        DataLayout::from_roots(data_dir.join("datastores"), data_dir.join("pipeline-runs"))
    }

    /// A layout whose local datastores and runs are in these folders; the cache of
    /// remote datastores is `datastore-cache` beside the runs' folder.
    pub fn from_roots(datastores: impl Into<PathBuf>, runs: impl Into<PathBuf>) -> DataLayout {
        let runs = runs.into();
        DataLayout {
            datastores: datastores.into(),
            cache: runs.with_file_name("datastore-cache"),
            runs,
        }
    }

    /// The folder of the files fetched from remote datastores.
    pub fn cache_root(&self) -> PathBuf {
        self.cache.clone()
    }

    /// The folder of the runs, which tells this server's steps from another's.
    pub fn runs_root(&self) -> &Path {
        &self.runs
    }

    /// The folder of a local datastore. Local datastores are the server's: a step runs
    /// as the server's user and could read any of them anyway.
    pub fn datastore(&self, datastore: &str) -> Result<PathBuf, LayoutError> {
        Ok(self.datastores.join(segment("datastore", datastore)?))
    }

    /// The files of one pipeline run.
    pub fn run(&self, workspace: &str, pipeline_run_id: &str) -> Result<RunLayout, LayoutError> {
        Ok(RunLayout {
            dir: self
                .runs
                .join(segment("workspace", workspace)?)
                .join(segment("pipeline run id", pipeline_run_id)?),
        })
    }
}

/// The folder of one pipeline run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLayout {
    dir: PathBuf,
}

impl RunLayout {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder of one of the run's steps.
    pub fn step(&self, step: &str) -> Result<StepLayout, LayoutError> {
        Ok(StepLayout {
            dir: self.dir.join(segment("step", step)?),
        })
    }
}

/// The folder of one step of a run: its default working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepLayout {
    dir: PathBuf,
}

impl StepLayout {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder the step writes its output `name` to, which the steps reading it get.
    pub fn output(&self, name: &str) -> Result<PathBuf, LayoutError> {
        Ok(self.outputs_dir().join(segment("output", name)?))
    }

    pub fn stdout_log(&self) -> PathBuf {
        self.dir.join("stdout.log")
    }

    pub fn stderr_log(&self) -> PathBuf {
        self.dir.join("stderr.log")
    }

    fn outputs_dir(&self) -> PathBuf {
        self.dir.join("outputs")
    }

    /// Makes the step's folder and an empty folder for each output, before an attempt
    /// runs or earlier outputs are copied in. Whatever an earlier attempt left in the
    /// outputs is removed first, so that nothing a failed attempt wrote passes for the
    /// output of the next.
    pub async fn prepare(&self, outputs: &[String]) -> io::Result<()> {
        let folders = outputs
            .iter()
            .map(|name| {
                self.output(name)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
            })
            .collect::<io::Result<Vec<_>>>()?;
        let (dir, outputs) = (self.dir.clone(), self.outputs_dir());
        // One trip to the blocking pool: the step's start waits for it.
        let prepared = tokio::task::spawn_blocking(move || {
            if let Err(e) = std::fs::remove_dir_all(outputs)
                && e.kind() != io::ErrorKind::NotFound
            {
                return Err(e);
            }
            std::fs::create_dir_all(dir)?;
            folders.into_iter().try_for_each(std::fs::create_dir_all)
        })
        .await;
        prepared.unwrap_or_else(|e| Err(io::Error::other(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_under_the_data_directory_as_documented() {
        let layout = DataLayout::new("/data");
        let step = layout.run("ws1", "run-1").unwrap().step("train").unwrap();
        assert_eq!(step.dir(), Path::new("/data/pipeline-runs/ws1/run-1/train"));
        assert_eq!(
            step.output("model").unwrap(),
            Path::new("/data/pipeline-runs/ws1/run-1/train/outputs/model")
        );
        assert_eq!(
            step.stdout_log(),
            Path::new("/data/pipeline-runs/ws1/run-1/train/stdout.log")
        );
        assert_eq!(
            step.stderr_log(),
            Path::new("/data/pipeline-runs/ws1/run-1/train/stderr.log")
        );
        assert_eq!(
            layout.datastore("workspaceblobstore").unwrap(),
            Path::new("/data/datastores/workspaceblobstore")
        );
    }

    #[test]
    fn names_that_would_leave_their_folder_are_refused() {
        let layout = DataLayout::new("/data");
        let run = layout.run("ws1", "run-1").unwrap();
        for bad in ["..", ".", "", "a/b", "a\0b"] {
            assert!(run.step(bad).is_err(), "{bad:?}");
            assert!(layout.run(bad, "run-1").is_err(), "{bad:?}");
            assert!(layout.run("ws1", bad).is_err(), "{bad:?}");
        }
        let error = run.step("..").unwrap_err().to_string();
        assert!(error.starts_with("step `..` cannot name a folder"), "{error}");
        assert!(run.step("prep.v2").is_ok(), "dots within a name are fine");
    }

    #[tokio::test]
    async fn prepare_leaves_empty_output_folders() {
        let data = tempfile::tempdir().unwrap();
        let step = DataLayout::new(data.path()).run("ws", "r").unwrap().step("s").unwrap();
        let outputs = vec!["model".to_owned()];
        step.prepare(&outputs).await.unwrap();
        std::fs::write(step.output("model").unwrap().join("partial"), "x").unwrap();
        step.prepare(&outputs).await.unwrap();
        assert!(step.output("model").unwrap().is_dir());
        assert_eq!(std::fs::read_dir(step.output("model").unwrap()).unwrap().count(), 0);
    }
}
