//! The address rules of webhooks, applied to the endpoints users give datastores (an S3
//! endpoint URL, an Azure Blob endpoint): the server connects to those too, so metadata,
//! private and loopback addresses are refused unless `serve` allows them, the same way.

use async_trait::async_trait;
use mlgrid_delivery::AddressPolicy;
use mlgrid_pipelines::EndpointGuard;

/// [`EndpointGuard`] by the server's webhook [`AddressPolicy`].
pub(crate) struct AddressRules(pub AddressPolicy);

#[async_trait]
impl EndpointGuard for AddressRules {
    async fn check(&self, url: &str) -> Result<(), String> {
        self.0.check_url(url).await
    }
}
