//! `mlgrid bench filter`: routes Azure ML events through the filters of many subscriptions
//! on one workspace, in memory on the current thread; reports events/s and ns per event.
//!
//! No server is involved: this measures the filter engine (`mlgrid_core::filter`) alone.
//! Subscriptions and events come from a seeded generator, so a run is reproducible. Most
//! subscriptions are scoped to one resource (a model, an endpoint, an experiment, a drift
//! monitor) by subject prefix, often with advanced filters; a few are broader (by event type
//! only, by advanced filters only, or everything). The events are parsed and their views
//! built before the clock starts: the figure is routing alone (a view's cost is reported
//! apart).

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::bail;
use chrono::DateTime;
use clap::Args;
use mlgrid_core::EventSchema;
use mlgrid_core::filter::{AdvancedFilter, Condition, EventFilter, EventView, RoutingTable};
use mlgrid_core::ml::{
    DatasetDriftDetected, MlEvent, MlEventType, ModelDeployed, ModelRegistered, RunCompleted, RunStatusChanged, Tags,
};
use serde_json::{Value, json};

use super::stats::round3;

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Subscriptions on the workspace.
    #[arg(long, default_value_t = 10_000)]
    pub subscriptions: usize,
    /// Events to route.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Seed of the generator of subscriptions and events.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Distinct events generated; the routed events cycle through them. The default is a
    /// page of the fan-out, whose events are routed while still in cache from parsing; a
    /// large number (20000) measures events that are cold in cache.
    #[arg(long, default_value_t = 1_000)]
    pub distinct_events: usize,
}

const TOPIC: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml/providers/Microsoft.MachineLearningServices/workspaces/bench";
const STAGES: [&str; 4] = ["Production", "Staging", "Development", "Archived"];
const TEAMS: [&str; 5] = ["vision", "nlp", "forecasting", "ads", "fraud"];
const FRAMEWORKS: [&str; 4] = ["sklearn", "pytorch", "tensorflow", "lightgbm"];
const COMPUTE_TYPES: [&str; 3] = ["ACI", "AKS", "ManagedOnlineEndpoint"];
const ENVIRONMENTS: [&str; 3] = ["prod", "staging", "dev"];
const RUN_TYPES: [Option<&str>; 4] = [Some("azureml.scriptrun"), Some("automl"), Some("hyperdrive"), None];
const RUN_STATUSES: [&str; 4] = ["failed", "canceled", "completed", "running"];

pub fn run(args: FilterArgs) -> anyhow::Result<()> {
    if args.events == 0 || args.distinct_events == 0 {
        bail!("--events and --distinct-events must be at least 1");
    }
    let mut rng = SplitMix64(args.seed);
    let workspace = Workspace::new(&mut rng);

    eprintln!("bench: building {} subscriptions", args.subscriptions);
    let started = Instant::now();
    let mut table = RoutingTable::new();
    let mut shapes: BTreeMap<&str, usize> = BTreeMap::new();
    for key in 0..args.subscriptions {
        let (shape, filter) = workspace.subscription(&mut rng);
        *shapes.entry(shape).or_default() += 1;
        table.insert(key, &filter)?;
    }
    let build_ms = started.elapsed().as_secs_f64() * 1000.0;

    let distinct = args.events.min(args.distinct_events);
    eprintln!("bench: generating {distinct} distinct events");
    let events: Vec<(EventSchema, Value)> = (0..distinct).map(|n| workspace.event(&mut rng, n)).collect();
    let views: Vec<EventView<'_>> = events
        .iter()
        .map(|(schema, json)| EventView::new(*schema, json))
        .collect();
    // What a view costs (folding the type and subject), timed apart and warm: a first pass
    // would mostly time the allocator growing the heap.
    let started = Instant::now();
    for (schema, json) in &events {
        std::hint::black_box(EventView::new(*schema, json));
    }
    let view_ns = started.elapsed().as_nanos() as f64 / distinct as f64;

    eprintln!(
        "bench: routing {} events through {} subscriptions",
        args.events,
        table.len()
    );
    let mut routed = Vec::with_capacity(1024);
    let mut matches = 0u64;
    let mut most = 0usize;
    let started = Instant::now();
    let mut reported = started;
    for (n, view) in views.iter().cycle().take(args.events).enumerate() {
        routed.clear();
        table.route(view, &mut routed);
        matches += routed.len() as u64;
        most = most.max(routed.len());
        // Reading the clock is cheap next to routing, but not free: look every 16384 events.
        if n % 16_384 == 16_383 && reported.elapsed().as_secs() >= 1 {
            reported = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "bench: {}/{} events routed, {:.0} events/s",
                n + 1,
                args.events,
                (n + 1) as f64 / secs
            );
        }
    }
    let elapsed = started.elapsed().as_secs_f64();

    let result = json!({
        "bench": "filter",
        "subscriptions": args.subscriptions,
        "events": args.events,
        "distinct_events": distinct,
        "seed": args.seed,
        "subscription_shapes": shapes,
        "build_ms": round3(build_ms),
        "view_ns_per_event": round3(view_ns),
        "matches": matches,
        "avg_matches_per_event": round3(matches as f64 / args.events as f64),
        "max_matches_per_event": most,
        "seconds": round3(elapsed),
        "events_per_sec": (args.events as f64 / elapsed).round(),
        "ns_per_event": round3(elapsed * 1e9 / args.events as f64),
    });
    println!("{result}");
    Ok(())
}

/// splitmix64: a few lines, fast, and good enough to shuffle a benchmark.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// In `0..n` (the modulo bias is irrelevant here).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// In `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    fn percent(&mut self, p: u64) -> bool {
        self.next_u64() % 100 < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// In `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Experiment {
    id: String,
    name: String,
}

/// The resources of one busy workspace; subscriptions and events draw from the same ones.
struct Workspace {
    models: Vec<String>,
    services: Vec<String>,
    experiments: Vec<Experiment>,
    drifts: Vec<String>,
}

fn uuid(rng: &mut SplitMix64) -> String {
    let (a, b) = (rng.next_u64(), rng.next_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

impl Workspace {
    fn new(rng: &mut SplitMix64) -> Workspace {
        Workspace {
            models: (0..500).map(|i| format!("model-{i}")).collect(),
            services: (0..200).map(|i| format!("svc-{i}")).collect(),
            experiments: (0..300)
                .map(|i| Experiment {
                    id: uuid(rng),
                    name: format!("{}-experiment-{i}", TEAMS[i % TEAMS.len()]),
                })
                .collect(),
            drifts: (0..100).map(|_| uuid(rng)).collect(),
        }
    }

    fn run_id(&self, rng: &mut SplitMix64, experiment: &Experiment) -> String {
        format!("{}_{}", experiment.name, rng.between(0, 99))
    }

    /// One event, in the Event Grid schema or (one in five) the CloudEvents schema.
    fn event(&self, rng: &mut SplitMix64, n: usize) -> (EventSchema, Value) {
        let tags =
            |pairs: &[(&str, &str)]| -> Tags { pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() };
        let experiment = rng.pick(&self.experiments);
        let run = RunCompleted {
            experiment_id: experiment.id.clone(),
            experiment_name: experiment.name.clone(),
            run_id: self.run_id(rng, experiment),
            run_type: rng.pick(&RUN_TYPES).map(str::to_owned),
            run_tags: tags(&[("team", *rng.pick(&TEAMS))]),
            run_properties: tags(&[
                ("runTemplate", "automl_child"),
                ("iteration", &rng.between(0, 20).to_string()),
            ]),
        };
        let event = match rng.below(100) {
            0..15 => MlEvent::ModelRegistered(ModelRegistered {
                model_name: rng.pick(&self.models).clone(),
                model_version: rng.between(1, 20),
                model_tags: tags(&[("stage", *rng.pick(&STAGES)), ("team", *rng.pick(&TEAMS))]),
                model_properties: tags(&[
                    ("framework", *rng.pick(&FRAMEWORKS)),
                    ("accuracy", &format!("{:.3}", rng.unit())),
                ]),
            }),
            15..25 => MlEvent::ModelDeployed(ModelDeployed {
                service_name: rng.pick(&self.services).clone(),
                service_compute_type: rng.pick(&COMPUTE_TYPES).to_string(),
                model_ids: format!(
                    "{}:{},{}:{}",
                    rng.pick(&self.models),
                    rng.between(1, 20),
                    rng.pick(&self.models),
                    rng.between(1, 20)
                ),
                service_tags: tags(&[("env", *rng.pick(&ENVIRONMENTS))]),
                service_properties: Tags::new(),
            }),
            25..50 => MlEvent::RunCompleted(run),
            50..85 => MlEvent::RunStatusChanged(RunStatusChanged {
                run,
                run_status: rng.pick(&RUN_STATUSES).to_string(),
            }),
            _ => {
                let start = DateTime::from_timestamp(1_780_000_000 + rng.between(0, 10_000_000) as i64, 0)
                    .expect("a timestamp in range");
                MlEvent::DatasetDriftDetected(DatasetDriftDetected {
                    data_drift_id: rng.pick(&self.drifts).clone(),
                    data_drift_name: format!("drift-monitor-{}", rng.below(10)),
                    run_id: format!("{}_{}", uuid(rng), rng.between(1_571_590_300_000, 1_581_590_300_000)),
                    base_dataset_id: uuid(rng),
                    target_dataset_id: uuid(rng),
                    drift_coefficient: rng.unit(),
                    start_time: start,
                    end_time: start + chrono::Duration::days(1),
                })
            }
        };
        let grid = event.to_event_grid(TOPIC, &format!("bench-{n}"), "2026-11-26T16:00:00.0000000Z");
        if rng.percent(20) {
            let cloud = grid.to_cloud_event();
            (
                EventSchema::CloudEventSchemaV1_0,
                serde_json::to_value(cloud).expect("events serialise"),
            )
        } else {
            (
                EventSchema::EventGridSchema,
                serde_json::to_value(grid).expect("events serialise"),
            )
        }
    }

    /// One subscription's filter, and the name of its shape for the report.
    fn subscription(&self, rng: &mut SplitMix64) -> (&'static str, EventFilter) {
        let mut filter = EventFilter::default();
        let shape = match rng.below(1000) {
            // Everything, perhaps narrowed by one advanced filter (an audit log, a dashboard).
            0..5 => {
                if rng.percent(50) {
                    let event_type = *rng.pick(&MlEventType::ALL);
                    filter.advanced_filters.push(self.advanced_filter(rng, event_type));
                }
                "everything"
            }
            // By event type only.
            5..25 => {
                filter.included_event_types = Some(self.event_types(rng));
                "event_type_only"
            }
            // By event type and advanced filters, no subject.
            25..50 => {
                let event_type = *rng.pick(&MlEventType::ALL);
                filter.included_event_types = Some(vec![event_type.as_str().to_owned()]);
                for _ in 0..rng.between(1, 3) {
                    filter.advanced_filters.push(self.advanced_filter(rng, event_type));
                }
                "event_type_and_advanced"
            }
            // One resource: a model, an endpoint, an experiment's runs, a drift monitor.
            50..600 => {
                let event_type = *rng.pick(&MlEventType::ALL);
                filter.subject_begins_with = Some(self.resource_prefix(rng, event_type));
                if rng.percent(70) {
                    filter.included_event_types = Some(vec![event_type.as_str().to_owned()]);
                }
                if rng.percent(10) {
                    filter.is_subject_case_sensitive = true;
                }
                if rng.percent(30) {
                    for _ in 0..rng.between(1, 3) {
                        filter.advanced_filters.push(self.advanced_filter(rng, event_type));
                    }
                }
                "resource"
            }
            // One resource and a subject suffix: a model's first version, a run's first child.
            600..800 => {
                let event_type = *rng.pick(&MlEventType::ALL);
                filter.included_event_types = Some(vec![event_type.as_str().to_owned()]);
                filter.subject_begins_with = Some(self.resource_prefix(rng, event_type));
                filter.subject_ends_with = Some(match event_type {
                    MlEventType::ModelRegistered => format!(":{}", rng.between(1, 3)),
                    _ => format!("_{}", rng.between(0, 9)),
                });
                "resource_and_suffix"
            }
            // A family of resources (`models/model-12` also covers model-120 to model-129)
            // with one to five advanced filters.
            _ => {
                let event_type = *rng.pick(&MlEventType::ALL);
                filter.included_event_types = Some(vec![event_type.as_str().to_owned()]);
                let prefix = self.resource_prefix(rng, event_type);
                filter.subject_begins_with = Some(match event_type {
                    MlEventType::ModelRegistered => prefix.trim_end_matches(':').to_owned(),
                    _ => prefix,
                });
                for _ in 0..rng.between(1, 5) {
                    filter.advanced_filters.push(self.advanced_filter(rng, event_type));
                }
                "resource_family_and_advanced"
            }
        };
        (shape, filter)
    }

    fn event_types(&self, rng: &mut SplitMix64) -> Vec<String> {
        (0..rng.between(1, 2))
            .map(|_| rng.pick(&MlEventType::ALL).as_str().to_owned())
            .collect()
    }

    /// The subject prefix of one resource of the kind `event_type` is about.
    fn resource_prefix(&self, rng: &mut SplitMix64, event_type: MlEventType) -> String {
        match event_type {
            MlEventType::ModelRegistered => format!("models/{}:", rng.pick(&self.models)),
            MlEventType::ModelDeployed => format!("endpoints/{}", rng.pick(&self.services)),
            MlEventType::RunCompleted | MlEventType::RunStatusChanged => {
                format!("experiments/{}/runs/", rng.pick(&self.experiments).id)
            }
            MlEventType::DatasetDriftDetected => format!("datadrift/{}/run/", rng.pick(&self.drifts)),
        }
    }

    /// A condition on the data an event of `event_type` has, in one of the ways people
    /// write them.
    fn advanced_filter(&self, rng: &mut SplitMix64, event_type: MlEventType) -> AdvancedFilter {
        let strings = |values: Vec<&str>| values.into_iter().map(str::to_owned).collect::<Vec<_>>();
        let (key, condition) = match (event_type, rng.below(4)) {
            (MlEventType::ModelRegistered, 0) => (
                "data.ModelTags.stage",
                Condition::StringIn(strings(vec![*rng.pick(&STAGES), *rng.pick(&STAGES)])),
            ),
            (MlEventType::ModelRegistered, 1) => (
                "data.ModelVersion",
                Condition::NumberGreaterThanOrEquals(rng.between(1, 10) as f64),
            ),
            (MlEventType::ModelRegistered, 2) => (
                "data.ModelProperties.framework",
                Condition::StringNotIn(strings(vec![*rng.pick(&FRAMEWORKS)])),
            ),
            (MlEventType::ModelRegistered, _) => (
                "data.ModelName",
                Condition::StringBeginsWith(vec![format!("model-{}", rng.below(50))]),
            ),
            (MlEventType::ModelDeployed, 0) => (
                "data.ServiceComputeType",
                Condition::StringIn(strings(vec![*rng.pick(&COMPUTE_TYPES)])),
            ),
            (MlEventType::ModelDeployed, 1) => (
                "data.ModelIds",
                Condition::StringContains(vec![format!("{}:", rng.pick(&self.models))]),
            ),
            (MlEventType::ModelDeployed, 2) => (
                "data.ServiceTags.env",
                Condition::StringIn(strings(vec![*rng.pick(&ENVIRONMENTS)])),
            ),
            (MlEventType::ModelDeployed, _) => ("data.ServiceTags.owner", Condition::IsNullOrUndefined),
            (MlEventType::RunCompleted | MlEventType::RunStatusChanged, 0) => (
                "data.RunStatus",
                Condition::StringIn(strings(vec!["failed", *rng.pick(&RUN_STATUSES)])),
            ),
            (MlEventType::RunCompleted | MlEventType::RunStatusChanged, 1) => (
                "data.RunType",
                Condition::StringNotIn(strings(vec![rng.pick(&RUN_TYPES).unwrap_or("automl")])),
            ),
            (MlEventType::RunCompleted | MlEventType::RunStatusChanged, 2) => (
                "data.RunTags.team",
                Condition::StringIn(strings(vec![*rng.pick(&TEAMS), *rng.pick(&TEAMS)])),
            ),
            (MlEventType::RunCompleted | MlEventType::RunStatusChanged, _) => (
                "data.RunId",
                Condition::StringNotEndsWith(vec![format!("_{}", rng.below(10))]),
            ),
            (MlEventType::DatasetDriftDetected, 0) => (
                "data.DriftCoefficient",
                Condition::NumberGreaterThan((rng.below(10) as f64) / 10.0),
            ),
            (MlEventType::DatasetDriftDetected, 1) => {
                let lo = rng.below(5) as f64 / 10.0;
                ("data.DriftCoefficient", Condition::NumberInRange(vec![[lo, lo + 0.3]]))
            }
            (MlEventType::DatasetDriftDetected, 2) => (
                "data.DataDriftName",
                Condition::StringIn(vec![format!("drift-monitor-{}", rng.below(10))]),
            ),
            (MlEventType::DatasetDriftDetected, _) => (
                "data.DriftCoefficient",
                Condition::NumberNotInRange(vec![[0.0, rng.below(5) as f64 / 10.0]]),
            ),
        };
        AdvancedFilter {
            key: key.to_owned(),
            condition,
        }
    }
}
