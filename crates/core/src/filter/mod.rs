//! Event Grid's event subscription filters: what a subscription asks for, and which events
//! it gets.
//!
//! A filter ([`EventFilter`]) is written as Event Grid's ARM API writes the `filter` of an
//! event subscription: `includedEventTypes`, `subjectBeginsWith`, `subjectEndsWith`,
//! `isSubjectCaseSensitive`, `enableAdvancedFilteringOnArrays` and `advancedFilters`, each
//! advanced filter an `operatorType`, a `key` and a `value` or `values`. Every condition must
//! hold (AND); the values of one advanced filter are alternatives (OR). String comparisons
//! ignore case, unless `isSubjectCaseSensitive` asks otherwise for the subject.
//!
//! A filter is checked once ([`EventFilter::validate`], with Event Grid's limits) and
//! compiled once ([`CompiledFilter`]): strings folded to lower case, keys split into
//! segments, number sets sorted. Events are seen through an [`EventView`], which reads
//! either schema and folds the event type and subject once per event. A [`RoutingTable`]
//! holds the compiled filters of many subscriptions and finds the ones an event matches
//! without trying each: it indexes them by event type and by subject prefix.
//!
//! `docs/filtering.md` states every rule, including the decisions taken where Event
//! Grid's documentation is silent or ambiguous.
//!
//! ```
//! use mlgrid_core::EventSchema;
//! use mlgrid_core::filter::{EventFilter, EventView, RoutingTable};
//! use serde_json::json;
//!
//! let filter: EventFilter = serde_json::from_value(json!({
//!     "includedEventTypes": ["Microsoft.MachineLearningServices.ModelRegistered"],
//!     "subjectBeginsWith": "models/churn:",
//!     "advancedFilters": [
//!         {"operatorType": "StringIn", "key": "data.ModelTags.stage", "values": ["production"]}
//!     ]
//! }))
//! .unwrap();
//! let mut table = RoutingTable::new();
//! table.insert("alerts", &filter).unwrap();
//!
//! let event = json!({
//!     "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws",
//!     "subject": "Models/Churn:3",
//!     "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
//!     "eventTime": "2026-11-26T16:00:00.0000000Z",
//!     "id": "1",
//!     "data": {"ModelName": "churn", "ModelVersion": 3, "ModelTags": {"stage": "Production"}},
//!     "dataVersion": "",
//!     "metadataVersion": "1"
//! });
//! let mut matched = Vec::new();
//! table.route(&EventView::new(EventSchema::EventGridSchema, &event), &mut matched);
//! assert_eq!(matched, ["alerts"]);
//! ```

mod compiled;
mod fold;
mod model;
mod routing;
mod view;

pub use compiled::CompiledFilter;
pub use model::{
    AdvancedFilter, Condition, EventFilter, FilterError, MAX_ADVANCED_FILTERS, MAX_FILTER_VALUES, MAX_KEY_SEGMENTS,
    MAX_STRING_VALUE_CHARS, OperatorType, UnknownOperator,
};
pub use routing::RoutingTable;
pub use view::EventView;
