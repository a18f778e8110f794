//! The executor: claims ready steps (on any node sharing the store), runs each with a
//! [`StepRunner`] under a lease it keeps renewing, and records how it ended. Recording
//! an end claims the steps it made ready in the same transaction, so that a next step
//! starts without waiting for a poll: the overhead between steps is one commit and a
//! process start.
//!
//! At most `max_parallel` steps run at once on a node. A step whose node dies is found by
//! its expired lease and retried or failed ([`Store::recover_steps`]); on shutdown the
//! executor kills its steps' process groups and records them failed ("the server
//! stopped"), so that no process outlives the server.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use mlgrid_core::pipeline::{Pipeline, Step};
use mlgrid_store::{ClaimedStep, SourceId, StepClaim, StepOutcome, Store, StoreError};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::datastore::registry::DatastoreRegistry;
use crate::definitions::Definitions;
use crate::layout::DataLayout;
use crate::render::{StepSpec, render_step};
use crate::reuse::{copy_outputs, reuse_key};
use crate::runner::{ExitOutcome, StepRunner};

/// The reason a step's run gets when the server stopped while it ran.
pub const STOPPED: &str = "the server stopped while the step ran";
/// The reason a step gets when it was found running after a restart.
pub const RESTARTED: &str = "server restarted";
/// The reason a step gets when its node stopped renewing its lease.
pub const LEASE_LOST: &str = "the node running the step stopped renewing its lease (it died or lost the database)";

#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// This node's name, the holder of its claims.
    pub holder: String,
    /// Steps running at once on this node.
    pub max_parallel: usize,
    /// How long a claim lasts without renewal; renewed every third of it.
    pub lease: Duration,
    /// How often to look for ready steps when nothing wakes the executor (steps
    /// submitted on another node, retries).
    pub poll: Duration,
    /// Whether this node is the only one using its runs folder (the embedded store
    /// belongs to one process): then every step process left under that folder is its
    /// own to clean up after a crash, whatever the node was called; otherwise only those
    /// of a node of the same name.
    pub exclusive: bool,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            holder: "mlgrid".to_owned(),
            max_parallel: std::thread::available_parallelism().map_or(2, |n| n.get()),
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(500),
            exclusive: true,
        }
    }
}

/// A step running on this node: what renews its lease and what stops it.
struct Running {
    workspace: SourceId,
    lease: u64,
    cancel: CancellationToken,
}

/// What the API holds of the executor: a way to wake it and to stop a step.
#[derive(Clone, Default)]
pub struct ExecutorHandle {
    wake: Arc<Notify>,
    running: Arc<Mutex<HashMap<String, Running>>>,
    /// Holds on new claims (see [`ExecutorHandle::hold`]).
    holds: Arc<AtomicUsize>,
}

impl ExecutorHandle {
    /// Says that steps may be ready (a submission on this node).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Holds back this node's claims of new steps while the hold lives (steps running go
    /// on): the scheduler records the ticks due together first, since a tick is late
    /// until it is recorded, and their runs' steps would compete with it for the store's
    /// one writer. Dropping the last hold wakes the executor.
    pub fn hold(&self) -> ClaimHold {
        self.holds.fetch_add(1, Ordering::SeqCst);
        ClaimHold { handle: self.clone() }
    }

    fn held(&self) -> bool {
        self.holds.load(Ordering::SeqCst) > 0
    }

    /// Stops a step running on this node, if it does.
    pub fn cancel(&self, step_run_id: &str) {
        if let Some(running) = self.lock().get(step_run_id) {
            running.cancel.cancel();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().expect("never held across a panic")
    }
}

/// See [`ExecutorHandle::hold`].
pub struct ClaimHold {
    handle: ExecutorHandle,
}

impl Drop for ClaimHold {
    fn drop(&mut self) {
        if self.handle.holds.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.handle.wake();
        }
    }
}

#[derive(Clone)]
pub struct Executor {
    store: Arc<dyn Store>,
    runner: Arc<dyn StepRunner>,
    layout: DataLayout,
    datastores: DatastoreRegistry,
    definitions: Definitions,
    config: ExecutorConfig,
    handle: ExecutorHandle,
    slots: Arc<Semaphore>,
    /// Cancelled when the server stops: every running step is killed.
    stopping: CancellationToken,
}

impl Executor {
    pub fn new(
        store: Arc<dyn Store>,
        runner: Arc<dyn StepRunner>,
        layout: DataLayout,
        datastores: DatastoreRegistry,
        definitions: Definitions,
        config: ExecutorConfig,
    ) -> Executor {
        let slots = Arc::new(Semaphore::new(config.max_parallel.max(1)));
        Executor {
            store,
            runner,
            layout,
            datastores,
            definitions,
            config,
            handle: ExecutorHandle::default(),
            slots,
            stopping: CancellationToken::new(),
        }
    }

    pub fn handle(&self) -> ExecutorHandle {
        self.handle.clone()
    }

    /// What this executor's step processes carry in their environment.
    fn mark(&self) -> String {
        let holder = if self.config.exclusive { "" } else { &self.config.holder };
        crate::orphans::mark(holder, self.layout.runs_root())
    }

    fn claim(&self) -> StepClaim {
        let now = Utc::now();
        StepClaim {
            holder: self.config.holder.clone(),
            now,
            lease_until: now + chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::MAX),
        }
    }

    /// Runs until `stop`; then kills the steps still running and records them.
    pub async fn run(self, stop: CancellationToken) {
        let orphans = crate::orphans::kill_marked(&self.mark());
        if orphans > 0 {
            tracing::warn!(
                orphans,
                "killed the processes of steps a previous run of the server left running"
            );
        }
        if let Err(e) = self.store.recover_steps(Utc::now(), RESTARTED).await {
            tracing::warn!(error = %e, "could not recover the steps of a previous run of the server");
        }
        let renewals = tokio::spawn(self.clone().renew_leases(stop.clone()));
        let mut recovered_at = tokio::time::Instant::now();
        loop {
            let free = self.slots.available_permits();
            let mut full = false;
            if free > 0 && !self.handle.held() {
                match self.store.claim_steps(&self.claim(), free as u32).await {
                    Ok(claimed) => {
                        full = claimed.len() == free;
                        for step in claimed {
                            let permit = self.slots.clone().acquire_owned().await.expect("never closed");
                            tokio::spawn(self.clone().execute(step, permit));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not claim pipeline steps"),
                }
            }
            if recovered_at.elapsed() > self.config.lease {
                recovered_at = tokio::time::Instant::now();
                if let Err(e) = self.store.recover_steps(Utc::now(), LEASE_LOST).await {
                    tracing::warn!(error = %e, "could not recover steps of lost nodes");
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.handle.wake.notified() => {}
                () = tokio::time::sleep(self.config.poll) => {}
            }
        }
        self.stopping.cancel();
        for running in self.handle.lock().values() {
            running.cancel.cancel();
        }
        // Every step holds a slot until its end is recorded.
        let _all = self.slots.acquire_many(self.config.max_parallel.max(1) as u32).await;
        renewals.abort();
    }

    /// Renews the leases of the steps running here every third of the lease; stops those
    /// whose lease was lost or whose cancellation was asked on another node.
    async fn renew_leases(self, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.config.lease / 3) => {}
            }
            let held: Vec<(SourceId, String, u64)> = self
                .handle
                .lock()
                .iter()
                .map(|(id, r)| (r.workspace, id.clone(), r.lease))
                .collect();
            if held.is_empty() {
                continue;
            }
            match self
                .store
                .renew_steps(&self.config.holder, &held, self.claim().lease_until)
                .await
            {
                Ok(stopped) => {
                    for id in stopped {
                        self.handle.cancel(&id);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not renew the leases of running steps"),
            }
        }
    }

    /// Runs a claimed step, records its end, and runs the steps that end made ready: the
    /// first in this task with this slot, the others in tasks of their own (a boxed
    /// future: it spawns itself for them).
    fn execute(self, step: ClaimedStep, permit: OwnedSemaphorePermit) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut current = Some(step);
            while let Some(step) = current.take() {
                let mut claimed = self.execute_one(&step).await.into_iter();
                current = claimed.next();
                for other in claimed {
                    let slot = self.slots.clone().acquire_owned().await.expect("never closed");
                    tokio::spawn(self.clone().execute(other, slot));
                }
            }
            drop(permit);
            // A slot is free (and a retried step may be ready again): claim more.
            self.handle.wake();
        })
    }

    /// Runs one step and records its end; returns the steps that end made ready, claimed
    /// for this node.
    async fn execute_one(&self, step: &ClaimedStep) -> Vec<ClaimedStep> {
        let cancel = CancellationToken::new();
        self.handle.lock().insert(
            step.step.run_id.clone(),
            Running {
                workspace: step.workspace,
                lease: step.lease,
                cancel: cancel.clone(),
            },
        );
        let outcome = self.attempt(step, cancel).await;
        self.handle.lock().remove(&step.step.run_id);
        let next = (!self.stopping.is_cancelled()).then(|| self.claim());
        match self
            .store
            .finish_step(step.workspace, &step.step.run_id, step.lease, outcome, next)
            .await
        {
            Ok(finished) => finished.claimed,
            Err(StoreError::Conflict(reason)) => {
                tracing::warn!(step = %step.step.run_id, %reason, "a step's end was not recorded: its lease was lost");
                Vec::new()
            }
            Err(e) => {
                tracing::error!(step = %step.step.run_id, error = %e, "could not record a step's end");
                Vec::new()
            }
        }
    }

    /// One attempt of a step: reused outputs when an earlier run computed the same, else
    /// the process.
    async fn attempt(&self, claimed: &ClaimedStep, cancel: CancellationToken) -> StepOutcome {
        match self.prepare(claimed).await {
            Ok(Prepared::Reused(outcome)) => outcome,
            Ok(Prepared::Run { spec, reuse }) => {
                let exit = self.runner.run(&spec, cancel).await;
                let started_at = Some(exit.started_at_utc);
                let failed = |error: String, exit_code| StepOutcome::Failed {
                    error,
                    exit_code,
                    started_at,
                };
                match &exit.outcome {
                    ExitOutcome::Succeeded => StepOutcome::Completed {
                        reuse_key: reuse,
                        reused_from: None,
                        started_at,
                    },
                    ExitOutcome::Canceled if self.stopping.is_cancelled() => failed(STOPPED.to_owned(), None),
                    ExitOutcome::Canceled => StepOutcome::Canceled {
                        reason: "canceled while it ran".to_owned(),
                    },
                    ExitOutcome::Failed { exit_code, .. } => failed(exit.outcome.to_string(), *exit_code),
                    ExitOutcome::TimedOut { .. } => failed(exit.outcome.to_string(), None),
                }
            }
            Err(error) => StepOutcome::Failed {
                error,
                exit_code: None,
                started_at: None,
            },
        }
    }

    /// Everything a step needs before its process starts: its definition, values,
    /// data files, folders, and (when it allows reuse) an earlier run's outputs.
    async fn prepare(&self, claimed: &ClaimedStep) -> Result<Prepared, String> {
        let pipeline = self
            .definitions
            .load(&*self.store, claimed.workspace, &claimed.pipeline_id)
            .await
            .map_err(|e| format!("the step's pipeline cannot be read: {e}"))?;
        let step = find_step(&pipeline, &claimed.step.name)?;
        let values = pipeline
            .assign(&claimed.parameters)
            .map_err(|e| format!("the run's parameters no longer fit the pipeline: {e}"))?;
        let workspace = claimed.workspace.to_string();
        let datastores = self
            .datastores
            .datastores(claimed.workspace)
            .await
            .map_err(|e| e.to_string())?;
        let mut data_files = BTreeMap::new();
        for (name, value) in &claimed.data_paths {
            let file = datastores
                .resolve(&value.datastore, &value.path)
                .await
                .map_err(|e| format!("data path `{name}`: {e}"))?;
            data_files.insert(name.clone(), file);
        }
        let run = self
            .layout
            .run(&workspace, &claimed.pipeline_run_id)
            .map_err(|e| e.to_string())?;
        let folder = run.step(&step.name).map_err(|e| e.to_string())?;
        folder
            .prepare(&step.outputs)
            .await
            .map_err(|e| format!("cannot make the step's folders under {}: {e}", folder.dir().display()))?;
        let mut spec = render_step(step, &values, &data_files, &run).map_err(|e| e.to_string())?;
        spec.env.insert(crate::orphans::MARK_VARIABLE.to_owned(), self.mark());
        if !step.allow_reuse {
            return Ok(Prepared::Run {
                spec: Box::new(spec),
                reuse: None,
            });
        }
        let key = reuse_key(&pipeline.name, step, &values, &spec)
            .await
            .map_err(|e| format!("cannot hash the step's inputs: {e}"))?;
        let earlier = self
            .store
            .reusable_step(claimed.workspace, &key)
            .await
            .map_err(|e| format!("cannot look for a reusable run: {e}"))?;
        let Some((earlier_run, earlier_step)) = earlier else {
            return Ok(Prepared::Run {
                spec: Box::new(spec),
                reuse: Some(key),
            });
        };
        let from = self
            .layout
            .run(&workspace, &earlier_run)
            .and_then(|run| run.step(&earlier_step.name))
            .map_err(|e| e.to_string())?;
        for (output, dir) in &spec.outputs {
            let earlier_output = from.output(output).map_err(|e| e.to_string())?;
            copy_outputs(&earlier_output, dir)
                .await
                .map_err(|e| format!("cannot reuse the outputs of step run {}: {e}", earlier_step.run_id))?;
        }
        Ok(Prepared::Reused(StepOutcome::Completed {
            reuse_key: Some(key),
            reused_from: Some(earlier_step.run_id),
            started_at: None,
        }))
    }
}

enum Prepared {
    Reused(StepOutcome),
    Run { spec: Box<StepSpec>, reuse: Option<String> },
}

fn find_step<'p>(pipeline: &'p Pipeline, name: &str) -> Result<&'p Step, String> {
    pipeline
        .steps
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| format!("pipeline `{}` has no step `{name}` any more", pipeline.name))
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[test]
    fn claims_are_held_until_the_last_hold_ends_which_wakes_the_executor() {
        let handle = ExecutorHandle::default();
        let (first, second) = (handle.hold(), handle.hold());
        assert!(handle.held());
        drop(first);
        assert!(handle.held(), "one hold is left");
        assert!(handle.wake.notified().now_or_never().is_none(), "nothing woke it yet");
        drop(second);
        assert!(!handle.held());
        assert!(
            handle.wake.notified().now_or_never().is_some(),
            "the last hold's end wakes the executor to claim what waited"
        );
    }
}
