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
        let pipeline = properties.pipeline.clone().ok_or("its destination names no pipeline")?;
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::Utc;
    use mlgrid_core::EventSchema;
    use mlgrid_core::subscription::ProvisioningState;
    use mlgrid_store::DueDelivery;

    use super::*;
    use crate::fixture::topic_with_subscription;

    /// Records what it is asked to launch; answers with `answer`.
    struct Recorder {
        launched: Mutex<Vec<Launch>>,
        answer: Result<String, LaunchError>,
    }

    #[async_trait]
    impl PipelineLauncher for Recorder {
        async fn launch(&self, _source: SourceId, launch: Launch) -> Result<String, LaunchError> {
            self.launched.lock().unwrap().push(launch);
            self.answer.clone()
        }
    }

    async fn trigger(answer: Result<String, LaunchError>) -> (PipelineTrigger, Arc<Recorder>) {
        let mut subscription = topic_with_subscription(ProvisioningState::Succeeded).await.subscription;
        subscription.spec.destination = serde_json::from_value(serde_json::json!({
            "endpointType": "Pipeline",
            "properties": {"pipeline": "p1", "workspace": "ws", "experimentName": "e",
                           "parameterAssignments": {"model": "${data.ModelName}", "v": "${data.ModelVersion}"}}
        }))
        .unwrap();
        let recorder = Arc::new(Recorder {
            launched: Mutex::default(),
            answer,
        });
        (PipelineTrigger::new(&subscription, recorder.clone()).unwrap(), recorder)
    }

    fn delivery(sequence: u64, body: serde_json::Value) -> DueDelivery {
        DueDelivery {
            subscription_id: SubscriptionId(1),
            sequence,
            attempts: 0,
            schema: EventSchema::EventGridSchema,
            published_at: Utc::now(),
            body: body.to_string(),
        }
    }

    async fn send(trigger: &PipelineTrigger, deliveries: &[DueDelivery]) -> Sent {
        let batch = Batch {
            subscription: SubscriptionId(1),
            deliveries,
            delivery_count: 0,
            at: Utc::now(),
        };
        trigger.send(&batch).await
    }

    #[tokio::test]
    async fn an_event_delivered_twice_asks_for_the_same_run() {
        let (trigger, recorder) = trigger(Ok("run-1".into())).await;
        let event = serde_json::json!({"id": "e-7", "data": {"ModelName": "wine", "ModelVersion": 3}});
        for _ in 0..2 {
            let sent = send(&trigger, &[delivery(1, event.clone())]).await;
            assert_eq!(sent.result, AttemptResult::Delivered);
            assert_eq!(sent.excerpt.as_deref(), Some("started run run-1"));
        }
        let launched = recorder.launched.lock().unwrap();
        assert_eq!(launched[0], launched[1]);
        assert_eq!(launched[0].workspace.as_deref(), Some("ws"));
        assert_eq!(launched[0].parameters["model"], serde_json::json!("wine"));
        assert_eq!(launched[0].parameters["v"], serde_json::json!(3));
        assert!(
            launched[0].idempotency_key.ends_with(":event:e-7"),
            "{}",
            launched[0].idempotency_key
        );
    }

    #[tokio::test]
    async fn an_event_without_a_templated_field_is_refused_for_good() {
        let (trigger, recorder) = trigger(Ok("run-1".into())).await;
        let sent = send(
            &trigger,
            &[delivery(1, serde_json::json!({"id": "e", "data": {"ModelName": "x"}}))],
        )
        .await;
        match sent.result {
            AttemptResult::Refused { reason } => assert!(reason.contains("data.ModelVersion"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(recorder.launched.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_store_that_cannot_take_the_run_is_retried() {
        let (trigger, _) = trigger(Err(LaunchError::Unavailable("the store is closed".into()))).await;
        let event = serde_json::json!({"id": "e", "data": {"ModelName": "x", "ModelVersion": 1}});
        let sent = send(&trigger, &[delivery(1, event)]).await;
        assert!(matches!(sent.result, AttemptResult::Failed { .. }), "{:?}", sent.result);
        let refused = trigger_refused().await;
        assert!(matches!(refused.result, AttemptResult::Refused { .. }));
    }

    async fn trigger_refused() -> Sent {
        let (trigger, _) = trigger(Err(LaunchError::Refused("pipeline p1 is disabled".into()))).await;
        let event = serde_json::json!({"id": "e", "data": {"ModelName": "x", "ModelVersion": 1}});
        send(&trigger, &[delivery(1, event)]).await
    }
}
