//! Published definitions, parsed once: a published pipeline never changes (but for
//! whether it is enabled), so its id keys its parsed form for the life of the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mlgrid_core::pipeline::Pipeline;
use mlgrid_store::{PublishedPipeline, SourceId, Store, StoreError};

use crate::service::PipelineError;

/// Most definitions kept; past it the cache starts again (a re-parse is cheap).
const MOST: usize = 1024;

#[derive(Clone, Default)]
pub struct Definitions {
    parsed: Arc<Mutex<HashMap<String, Arc<Pipeline>>>>,
}

impl Definitions {
    /// The parsed definition of a published pipeline. One that no longer parses (a
    /// newer mlgrid checking more) is a corrupt row, named.
    pub fn get(&self, published: &PublishedPipeline) -> Result<Arc<Pipeline>, PipelineError> {
        if let Some(found) = self.lock().get(&published.id) {
            return Ok(found.clone());
        }
        let pipeline = Pipeline::parse(&published.definition).map_err(|e| {
            StoreError::Corrupt(format!(
                "pipeline `{}` version {} ({}) no longer reads: {e}",
                published.name, published.version, published.id
            ))
        })?;
        let pipeline = Arc::new(pipeline);
        let mut parsed = self.lock();
        if parsed.len() >= MOST {
            parsed.clear();
        }
        parsed.insert(published.id.clone(), pipeline.clone());
        Ok(pipeline)
    }

    /// The parsed definition of pipeline `id` of a workspace, read from the store only
    /// the first time (the executor asks for it at every step).
    pub async fn load(&self, store: &dyn Store, workspace: SourceId, id: &str) -> Result<Arc<Pipeline>, PipelineError> {
        if let Some(found) = self.lock().get(id) {
            return Ok(found.clone());
        }
        let published = store.pipeline(workspace, id).await?;
        self.get(&published)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Pipeline>>> {
        self.parsed.lock().expect("never held across a panic")
    }
}
