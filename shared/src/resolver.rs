//! The one name resolver every HTTP client of the functions uses: the hosts file first, then DNS with a short
//! bound, IPv4 first.
//!
//! Why: reqwest's own DNS asked for A and AAAA records even for names the hosts file holds (`gateway` on faasd),
//! and faasd's containers name a nameserver that never answers without internet, so every call between functions
//! waited the resolver's 5 s timeout. Here a hosts-file name never reaches DNS, a DNS answer with an A record does
//! not wait on AAAA, and a silent nameserver fails the lookup within `DNS_TIMEOUT`, with a clear error.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_resolver::config::{LookupIpStrategy, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// How long one name may take in DNS before its lookup fails: A first, then AAAA only when A had nothing.
pub(crate) const DNS_TIMEOUT: Duration = Duration::from_secs(2);
/// The hosts file the functions' containers get (faasd and Kubernetes write their service names there).
pub(crate) const HOSTS_PATH: &str = "/etc/hosts";
/// A hosts file larger than this is read only up to here: nothing legitimate is this large.
const MAX_HOSTS_BYTES: u64 = 1 << 20;

/// Why a name did not resolve.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("`{name}` is not in the hosts file and DNS gave no answer within {timeout:?}")]
    TimedOut { name: String, timeout: Duration },
    #[error("`{name}` is not in the hosts file and DNS does not know it: {reason}")]
    NotFound { name: String, reason: String },
    #[error("`{name}` is not in the hosts file and no nameserver is configured")]
    NoNameserver { name: String },
}

/// Hosts file, then DNS; cheap to clone (everything is shared).
#[derive(Clone)]
pub struct FunctionResolver {
    hosts: Arc<HashMap<String, Vec<IpAddr>>>,
    /// The nameservers' settings; none: no DNS.
    dns_config: Option<Arc<(ResolverConfig, ResolverOpts)>>,
    /// Built on first lookup: hickory's resolver must be built inside the runtime.
    dns: Arc<OnceLock<TokioResolver>>,
    timeout: Duration,
}

impl std::fmt::Debug for FunctionResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionResolver")
            .field("hosts", &self.hosts.len())
            .field("dns", &self.dns_config.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl FunctionResolver {
    /// The machine's: `HOSTS_PATH`, and the nameservers and search domains of `/etc/resolv.conf` (none when it
    /// cannot be read: then only the hosts file and `localhost` resolve).
    pub fn system() -> Self {
        Self::new(Path::new(HOSTS_PATH), hickory_resolver::system_conf::read_system_conf().ok(), DNS_TIMEOUT)
    }

    /// `hosts_path` (missing or unreadable: empty), then the plain-UDP/TCP nameservers at `nameservers` (none: no
    /// DNS), each name failing after `timeout`.
    pub fn with_nameservers(hosts_path: &Path, nameservers: &[SocketAddr], timeout: Duration) -> Self {
        let dns = (!nameservers.is_empty()).then(|| {
            let mut group = NameServerConfigGroup::new();
            for address in nameservers {
                group.merge(NameServerConfigGroup::from_ips_clear(&[address.ip()], address.port(), true));
            }
            (ResolverConfig::from_parts(None, vec![], group), ResolverOpts::default())
        });
        Self::new(hosts_path, dns, timeout)
    }

    fn new(hosts_path: &Path, dns: Option<(ResolverConfig, ResolverOpts)>, timeout: Duration) -> Self {
        let dns_config = dns.filter(|(config, _)| !config.name_servers().is_empty()).map(|(config, mut options)| {
            // The whole lookup is bounded by `timeout`; one try per server inside it, A before AAAA.
            options.timeout = timeout;
            options.attempts = 0;
            options.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
            options.use_hosts_file = ResolveHosts::Never;
            Arc::new((config, options))
        });
        Self { hosts: Arc::new(read_hosts(hosts_path)), dns_config, dns: Arc::default(), timeout }
    }

    fn dns(&self) -> Option<&TokioResolver> {
        let settings = self.dns_config.as_ref()?;
        Some(self.dns.get_or_init(|| {
            let (config, options) = settings.as_ref().clone();
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default()).with_options(options).build()
        }))
    }

    /// The addresses of `name`: from the hosts file when it is there (IPv4 first), else from DNS.
    pub async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(addresses) = self.hosts.get(&key) {
            return Ok(addresses.clone());
        }
        if key == "localhost" || key.ends_with(".localhost") {
            return Ok(vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]);
        }
        let Some(dns) = self.dns() else {
            return Err(ResolveError::NoNameserver { name: name.to_owned() });
        };
        match tokio::time::timeout(self.timeout, dns.lookup_ip(key.as_str())).await {
            Err(_) => Err(ResolveError::TimedOut { name: name.to_owned(), timeout: self.timeout }),
            Ok(Err(error)) if error.is_no_records_found() => {
                Err(ResolveError::NotFound { name: name.to_owned(), reason: "no such name".into() })
            }
            Ok(Err(error)) if error.to_string().contains("timed out") => {
                Err(ResolveError::TimedOut { name: name.to_owned(), timeout: self.timeout })
            }
            Ok(Err(error)) => Err(ResolveError::NotFound { name: name.to_owned(), reason: error.to_string() }),
            Ok(Ok(found)) => {
                let mut addresses: Vec<IpAddr> = found.iter().collect();
                addresses.sort_by_key(IpAddr::is_ipv6);
                if addresses.is_empty() {
                    return Err(ResolveError::NotFound { name: name.to_owned(), reason: "no addresses".into() });
                }
                Ok(addresses)
            }
        }
    }
}

impl Resolve for FunctionResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            let addresses = resolver.lookup(name.as_str()).await?;
            // reqwest puts the URL's port on each address.
            let addrs: Addrs = Box::new(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The process's resolver, made on first use (the system's files are read once).
pub(crate) fn shared_resolver() -> Arc<FunctionResolver> {
    static RESOLVER: OnceLock<Arc<FunctionResolver>> = OnceLock::new();
    Arc::clone(RESOLVER.get_or_init(|| Arc::new(FunctionResolver::system())))
}

/// The resolver as hyper's connector takes it (the gateway's keep-alive client).
impl tower::Service<hyper_util::client::legacy::connect::dns::Name> for FunctionResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, ResolveError>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), ResolveError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let resolver = self.clone();
        Box::pin(async move {
            let addresses = resolver.lookup(name.as_str()).await?;
            Ok(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect::<Vec<_>>().into_iter())
        })
    }
}

/// Where every HTTP client of the functions starts: reqwest with `shared_resolver`.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().dns_resolver(shared_resolver())
}

/// `name → addresses` from a hosts file (`IP name alias…`, `#` comments), IPv4 addresses first per name.
fn read_hosts(path: &Path) -> HashMap<String, Vec<IpAddr>> {
    use std::io::Read as _;
    let mut text = String::new();
    let read = std::fs::File::open(path).and_then(|file| file.take(MAX_HOSTS_BYTES).read_to_string(&mut text));
    if read.is_err() {
        return HashMap::new();
    }
    parse_hosts(&text)
}

fn parse_hosts(text: &str) -> HashMap<String, Vec<IpAddr>> {
    let mut hosts: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(Ok(ip)) = fields.next().map(str::parse::<IpAddr>) else { continue };
        for name in fields {
            let addresses = hosts.entry(name.trim_end_matches('.').to_ascii_lowercase()).or_default();
            if !addresses.contains(&ip) {
                addresses.push(ip);
            }
        }
    }
    for addresses in hosts.values_mut() {
        addresses.sort_by_key(IpAddr::is_ipv6);
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lines_give_every_name_its_addresses_ipv4_first() {
        let hosts = parse_hosts(
            "# comment\n127.0.0.1 localhost\n::1 localhost ip6-localhost\n10.62.0.5\tgateway Gateway.openfaas. # x\n\
             not-an-ip name\n\n",
        );
        assert_eq!(hosts["localhost"], ["127.0.0.1".parse::<IpAddr>().unwrap(), "::1".parse().unwrap()]);
        assert_eq!(hosts["gateway"], ["10.62.0.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(hosts["gateway.openfaas"], ["10.62.0.5".parse::<IpAddr>().unwrap()]);
        assert!(!hosts.contains_key("name"));
    }
}
