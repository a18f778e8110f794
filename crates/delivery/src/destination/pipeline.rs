//! The pipeline trigger destination: each event submits a published pipeline, with
//! parameter values templated from the event. Submitting is idempotent (the event's id
//! and the subscription make the key), so an event delivered twice starts one run.
//!
//! The delivery crate does not run pipelines: it hands submissions to a
//! [`PipelineLauncher`] that the server provides.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use mlgrid_core::pipeline::trigger::TriggerTemplate;
use mlgrid_core::retry::AttemptResult;
use mlgrid_store::{EventSubscription, SourceId, SubscriptionId};
use serde_json::Value;

use super::{Batch, Destination, Sent};

/// A pipeline submission an event asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    /// The workspace whose pipeline runs, by name; `None` for the subscription's own.
    pub workspace: Option<String>,
    /// A pipeline's id, or a pipeline endpoint's name.
    pub pipeline: String,
    pub experiment_name: String,
    pub parameters: BTreeMap<String, Value>,
    /// The same for every delivery of one event to one subscription.
    pub idempotency_key: String,
}

/// Why a submission did not start a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchError {
    /// It never will as it stands (no such pipeline, a disabled one, a parameter of the
    /// wrong type): the event is dead-lettered with this reason.
    Refused(String),
    /// It might later (the store is unavailable): the event is retried.
    Unavailable(String),
}

/// Starts pipeline runs; the server implements it over its pipelines.
#[async_trait]
pub trait PipelineLauncher: Send + Sync {
    /// Submits the run for a subscription of `source`; returns its id (an earlier run's,
    /// for a key seen before).
    async fn launch(&self, source: SourceId, launch: Launch) -> Result<String, LaunchError>;
}

/// A subscription's pipeline trigger.
pub(crate) struct PipelineTrigger {
    subscription: SubscriptionId,
    source: SourceId,
    workspace: Option<String>,
    /// `pipeline:{source}/{pipeline}`: triggers of one pipeline share slots and health.
    endpoint: String,
    pipeline: String,
    experiment_name: String,
    parameters: Vec<(String, TriggerTemplate)>,
    launcher: Arc<dyn PipelineLauncher>,
}

impl PipelineTrigger {
    pub(crate) fn new(subscription: &EventSubscription, launcher: Arc<dyn PipelineLauncher>) -> Result<Self, String> {
        let properties = &subscription.spec.destination.properties;
        let pipeline = properties
            .pipeline
            .clone()
            .ok_or("its destination names no pipeline")?;
        let experiment_name = properties
            .experiment_name
            .clone()
            .ok_or("its destination names no experiment")?;
        let parameters = properties
            .parameter_assignments
            .iter()
            .map(|(name, template)| {
                TriggerTemplate::parse(template)
                    .map(|t| (name.clone(), t))
                    .map_err(|e| format!("parameterAssignments `{name}`: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(PipelineTrigger {
            subscription: subscription.id,
            source: subscription.source_id,
            workspace: properties.workspace.clone(),
            endpoint: format!("pipeline:{}/{pipeline}", subscription.source_id),
            pipeline,
            experiment_name,
            parameters,
            launcher,
        })
    }

    /// The submission one event asks for, or why it cannot be made.
    fn launch_for(&self, body: &str) -> Result<Launch, String> {
        let event: Value = serde_json::from_str(body).map_err(|e| format!("the stored event is not JSON: {e}"))?;
        let id = event["id"].as_str().ok_or("the event has no `id`")?;
        let mut parameters = BTreeMap::new();
        for (name, template) in &self.parameters {
            let value = template
                .render(&event)
                .map_err(|e| format!("parameter `{name}`: {e}"))?;
            parameters.insert(name.clone(), value);
        }
        Ok(Launch {
            workspace: self.workspace.clone(),
            pipeline: self.pipeline.clone(),
            experiment_name: self.experiment_name.clone(),
            parameters,
            idempotency_key: format!("subscription:{}:event:{id}", self.subscription),
        })
    }
}

#[async_trait]
impl Destination for PipelineTrigger {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn send(&self, batch: &Batch<'_>) -> Sent {
        let started = Instant::now();
        let mut runs = Vec::with_capacity(batch.deliveries.len());
        for delivery in batch.deliveries {
            let outcome = match self.launch_for(&delivery.body) {
                Ok(launch) => self.launcher.launch(self.source, launch).await,
                Err(reason) => Err(LaunchError::Refused(reason)),
            };
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            match outcome {
                Ok(run) => runs.push(run),
                Err(LaunchError::Refused(reason)) => {
                    return Sent {
                        result: AttemptResult::Refused { reason },
                        status: None,
                        latency_ms,
                        excerpt: None,
                    };
                }
                Err(LaunchError::Unavailable(reason)) => {
                    return Sent::failed(reason, started.elapsed());
                }
            }
        }
        Sent {
            result: AttemptResult::Delivered,
            status: None,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
            excerpt: Some(format!("started run {}", runs.join(", "))),
        }
    }
}
