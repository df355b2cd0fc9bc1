//! TODO
/// Client settings.
pub struct ClientConfig;
/// The Stripe API client.
pub struct StripeClient;
