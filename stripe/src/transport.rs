//! The HTTP transport under [`crate::StripeClient`]: hyper's pooled client, with rustls
//! for `https` bases, or reqwest when a proxy from the environment (`HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY`, less `NO_PROXY`, as curl reads them) applies to `api_base`.
//!
//! hyper's client alone costs about a third of reqwest's per request: no URL re-parsing,
//! redirect or retry layers (the client never follows redirects and retries by Stripe's
//! rules itself). Proxies, tunnelled for `https`, are reqwest's.

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

/// An error from a response body or a connection.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// A response body, whichever transport read it.
pub type Body = BoxBody<Bytes, BoxError>;

/// Connection settings shared by both transports.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Longest a TCP connect may take.
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// TCP keepalive interval.
    pub tcp_keepalive: Duration,
}

/// A request that got no response.
#[derive(Debug)]
pub struct SendError {
    /// The error and its causes, joined.
    pub message: String,
    /// The request itself was unusable (never sent).
    pub invalid_request: bool,
    /// Connecting timed out.
    pub timed_out: bool,
}

impl SendError {
    /// A failure to connect or to exchange the request and response.
    pub fn connection(error: &(dyn StdError + 'static)) -> Self {
        SendError {
            message: chain(error),
            invalid_request: false,
            timed_out: timed_out(error),
        }
    }
}

/// How requests reach Stripe.
#[derive(Clone)]
pub enum Transport {
    /// hyper's pooled client: plain TCP for `http`, rustls with the webpki roots for `https`.
    Direct(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
    /// reqwest, because a proxy applies to `api_base`.
    Proxied(reqwest::Client),
}

impl Transport {
    /// The transport for `base`: [`Transport::Proxied`] when `proxies` intercept it.
    pub fn new(settings: &Settings, base: &Uri, proxies: &Matcher) -> Result<Self, String> {
        if proxies.intercept(base).is_some() {
            Self::proxied(settings)
        } else {
            Self::direct(settings)
        }
    }

    /// hyper's client, without proxies.
    pub fn direct(settings: &Settings) -> Result<Self, String> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(settings.connect_timeout));
        tcp.set_keepalive(Some(settings.tcp_keepalive));
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.pool_max_idle_per_host)
            .build(connector);
        Ok(Transport::Direct(client))
    }

    /// reqwest's client, with the system's proxies.
    pub fn proxied(settings: &Settings) -> Result<Self, String> {
        reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.pool_max_idle_per_host)
            .tcp_nodelay(true)
            .tcp_keepalive(settings.tcp_keepalive)
            // Never follow a redirect with the Authorization header.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map(Transport::Proxied)
            .map_err(|e| chain(&e))
    }

    /// Whether requests go through a proxy.
    pub fn is_proxied(&self) -> bool {
        matches!(self, Transport::Proxied(_))
    }

    /// Sends `request`; the response's body is still to be read.
    pub async fn send(&self, request: Request<Bytes>) -> Result<Response<Body>, SendError> {
        match self {
            Transport::Direct(client) => {
                let response = client
                    .request(request.map(Full::new))
                    .await
                    .map_err(|e| SendError::connection(&e))?;
                Ok(response.map(|body| body.map_err(BoxError::from).boxed()))
            }
            Transport::Proxied(client) => {
                let request = reqwest::Request::try_from(request).map_err(|e| SendError {
                    invalid_request: true,
                    ..SendError::connection(&e)
                })?;
                let response = client.execute(request).await.map_err(|e| SendError {
                    invalid_request: e.is_builder(),
                    timed_out: e.is_timeout() || timed_out(&e),
                    ..SendError::connection(&e)
                })?;
                let response: Response<reqwest::Body> = response.into();
                Ok(response.map(|body| body.map_err(BoxError::from).boxed()))
            }
        }
    }
}

/// Whether `error` or one of its causes is an I/O timeout.
fn timed_out(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// The error and each cause not already in the message, joined by ": ".
pub fn chain(error: &dyn StdError) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            connect_timeout: Duration::from_secs(1),
            pool_idle_timeout: Duration::from_secs(30),
            pool_max_idle_per_host: 4,
            tcp_keepalive: Duration::from_secs(30),
        }
    }

    #[derive(Debug)]
    struct Wrapped(std::io::Error);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("tcp connect error")
        }
    }
    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_connect_timeout_anywhere_in_the_chain_is_a_timeout() {
        use std::io::{Error, ErrorKind};
        let timeout = SendError::connection(&Wrapped(Error::new(ErrorKind::TimedOut, "slow")));
        assert!(timeout.timed_out);
        assert_eq!(timeout.message, "tcp connect error: slow");
        let refused =
            SendError::connection(&Wrapped(Error::new(ErrorKind::ConnectionRefused, "no")));
        assert!(!refused.timed_out && !refused.invalid_request);
    }

    #[tokio::test]
    async fn a_proxy_for_the_base_selects_reqwest_and_no_proxy_hyper() {
        let https: Uri = "https://api.stripe.com".parse().unwrap();
        let local: Uri = "http://127.0.0.1:12111".parse().unwrap();
        let none = Matcher::builder().build();
        assert!(!Transport::new(&settings(), &https, &none)
            .unwrap()
            .is_proxied());
        let proxy = Matcher::builder()
            .https("http://proxy.internal:3128")
            .no("localhost,127.0.0.1")
            .build();
        assert!(Transport::new(&settings(), &https, &proxy)
            .unwrap()
            .is_proxied());
        // NO_PROXY exempts the emulator; HTTPS_PROXY does not apply to http.
        assert!(!Transport::new(&settings(), &local, &proxy)
            .unwrap()
            .is_proxied());
        let all = Matcher::builder().all("http://proxy.internal:3128").build();
        assert!(Transport::new(&settings(), &local, &all)
            .unwrap()
            .is_proxied());
    }
}
