//! Where we are willing to send: public addresses only, unless the deployment says otherwise.
//!
//! Checked twice: on the URL when an endpoint is saved (literal addresses and names that
//! resolve to a refused range), and at every send: a literal address in the URL is checked
//! before connecting (the connector never resolves a literal), and a name's resolved
//! addresses are checked in the resolver, which hands the connection only those, so DNS
//! cannot change the answer between check and connect.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use url::{Host, Url};

pub const MAX_URL_LEN: usize = 2048;
/// A slow resolver must not stall an API call; the send-time check still runs.
const SAVE_TIME_LOOKUP: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a URL or destination is refused. `Display` is the sentence an owner reads: the API's
/// 400 message at save time, a delivery's `last_error` at send time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("url must be at most {MAX_URL_LEN} characters")]
    TooLong,
    #[error("url must not have leading or trailing whitespace")]
    Whitespace,
    #[error("url is not a valid absolute URL ({0})")]
    Invalid(url::ParseError),
    #[error("url must use https")]
    NotHttps,
    #[error("url scheme {0:?} is not supported; use https")]
    Scheme(String),
    #[error("url must not contain credentials")]
    Credentials,
    #[error("url must have a host")]
    NoHost,
    /// `localhost` and `*.localhost`, refused by name before any lookup.
    #[error("destination {0} is a loopback name; only public addresses are allowed")]
    LoopbackName(String),
    /// An address in a refused range, written as a literal or resolved from a name.
    #[error("destination {ip} is a {reason}; only public addresses are allowed")]
    Refused { ip: IpAddr, reason: &'static str },
    /// A name with at least one refused address among its answers.
    #[error(
        "{host} resolves to a refused address: destination {ip} is a {reason}; only public addresses are allowed"
    )]
    ResolvesToRefused {
        host: String,
        ip: IpAddr,
        reason: &'static str,
    },
    /// The name has no address (now). Not a refusal at save time; every send checks again.
    #[error("could not resolve host {0}")]
    Unresolved(String),
}

#[derive(Debug, Clone, Default)]
pub struct DestinationPolicy {
    /// `ALLOW_PRIVATE_DESTINATIONS`: loopback and private targets, for local development.
    pub allow_private: bool,
    /// `ALLOWED_DESTINATION_SUBNETS`: specific refused ranges opened up (e.g. a VPC peer).
    pub allowlist: Vec<IpNet>,
    /// `ALLOW_INSECURE_URLS`: plain `http` endpoints.
    pub allow_http: bool,
}

/// Why an address is not a public unicast destination, or `None` if it is.
pub fn refusal_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => "unspecified address",
        (0, _, _) => "\"this network\" address",
        (127, _, _) => "loopback address",
        (10, _, _) | (192, 168, _) => "private address",
        (172, b, _) if (16..32).contains(&b) => "private address",
        (169, 254, _) => "link-local address (cloud metadata lives here)",
        (100, b, _) if (64..128).contains(&b) => "carrier-grade NAT address",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation address",
        (198, 18 | 19, _) => "benchmarking address",
        (192, 88, 99) => "reserved 6to4 relay address",
        _ if ip.is_broadcast() => "broadcast address",
        (224..=239, _, _) => "multicast address",
        (240..=255, _, _) => "reserved address",
        _ => return None,
    })
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(match s {
        _ if ip.is_unspecified() => "unspecified address",
        _ if ip.is_loopback() => "loopback address",
        [0, 0, 0, 0, 0, 0xffff, _, _] => "IPv4-mapped IPv6 address",
        [0, 0, 0, 0, 0, 0, _, _] => "IPv4-compatible IPv6 address",
        [0x64, 0xff9b, ..] => "NAT64 address",
        [0x100, 0, 0, 0, ..] => "discard-only address",
        [0x2001, 0xdb8, ..] => "documentation address",
        [0x2002, ..] => "6to4 address",
        [0x2001, b, ..] if b < 0x200 => "IETF protocol assignment",
        [a, ..] if a & 0xfe00 == 0xfc00 => "unique-local address",
        [a, ..] if a & 0xffc0 == 0xfe80 => "link-local address",
        [a, ..] if a & 0xffc0 == 0xfec0 => "site-local address",
        [a, ..] if a & 0xff00 == 0xff00 => "multicast address",
        _ => return None,
    })
}

impl DestinationPolicy {
    /// Why this policy refuses `ip`, or `None` if it may be sent to.
    fn refuses(&self, ip: IpAddr) -> Option<&'static str> {
        let reason = refusal_reason(ip)?;
        let opened = self.allow_private || self.allowlist.iter().any(|n| n.contains(&ip));
        (!opened).then_some(reason)
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), DestinationError> {
        match self.refuses(ip) {
            None => Ok(()),
            Some(reason) => Err(DestinationError::Refused { ip, reason }),
        }
    }

    /// The checks that need no network: shape, scheme, credentials, literal addresses.
    pub fn check_url(&self, raw: &str) -> Result<Url, DestinationError> {
        if raw.len() > MAX_URL_LEN {
            return Err(DestinationError::TooLong);
        }
        if raw.trim() != raw {
            return Err(DestinationError::Whitespace);
        }
        let url = Url::parse(raw).map_err(DestinationError::Invalid)?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => return Err(DestinationError::NotHttps),
            other => return Err(DestinationError::Scheme(other.to_owned())),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(DestinationError::Credentials);
        }
        match url.host() {
            None => return Err(DestinationError::NoHost),
            Some(Host::Domain(d)) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if (d == "localhost" || d.ends_with(".localhost")) && !self.allow_private {
                    return Err(DestinationError::LoopbackName(d));
                }
            }
            Some(_) => self.check_literal(&url)?,
        }
        Ok(url)
    }

    /// The address a URL names literally, checked; a URL naming a host by name passes (its
    /// addresses are checked when it is resolved).
    ///
    /// The send-time half for literals: the connector connects to a literal host without
    /// asking the resolver, so the resolver's check never sees it. The WHATWG parser has
    /// already turned decimal, octal, hex and shortened IPv4 spellings into addresses.
    pub fn check_literal(&self, url: &Url) -> Result<(), DestinationError> {
        match url.host() {
            Some(Host::Ipv4(ip)) => self.check_ip(ip.into()),
            Some(Host::Ipv6(ip)) => self.check_ip(ip.into()),
            Some(Host::Domain(_)) | None => Ok(()),
        }
    }

    /// Resolves `host` and keeps only permitted addresses; the caller connects to these.
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, DestinationError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|_| DestinationError::Unresolved(host.to_owned()))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(DestinationError::Unresolved(host.to_owned()));
        }
        // One refused address refuses the name: a name mixing public and private answers is a
        // rebinding setup, not a real endpoint.
        match addrs
            .iter()
            .find_map(|a| Some((a.ip(), self.refuses(a.ip())?)))
        {
            Some((ip, reason)) => Err(DestinationError::ResolvesToRefused {
                host: host.to_owned(),
                ip,
                reason,
            }),
            None => Ok(addrs),
        }
    }

    /// The save-time check: shape, then the resolved addresses if the name resolves now.
    /// A name that does not resolve yet (or not within [`SAVE_TIME_LOOKUP`]) is accepted;
    /// every send checks again.
    pub async fn check_new_endpoint(&self, raw: &str) -> Result<Url, DestinationError> {
        let url = self.check_url(raw)?;
        if self.allow_private {
            // Every address is allowed: nothing a lookup could refuse.
            return Ok(url);
        }
        if let (Some(Host::Domain(d)), Some(port)) = (url.host(), url.port_or_known_default()) {
            match tokio::time::timeout(SAVE_TIME_LOOKUP, self.resolve(d, port)).await {
                Ok(Ok(_)) | Ok(Err(DestinationError::Unresolved(_))) | Err(_) => {}
                Ok(Err(refused)) => return Err(refused),
            }
        }
        Ok(url)
    }

    /// [`Self::check_new_endpoint`] with the refusal as its sentence, which is what the API's
    /// `400` carries (`ApiError::BadRequest` takes text).
    pub async fn check_endpoint_url(&self, raw: &str) -> Result<Url, String> {
        self.check_new_endpoint(raw)
            .await
            .map_err(|e| e.to_string())
    }
}

pub fn parse_allowlist(s: &str) -> Result<Vec<IpNet>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<IpNet>()
                .map_err(|_| format!("ALLOWED_DESTINATION_SUBNETS: {p:?} is not a CIDR subnet"))
        })
        .collect()
}

#[cfg(test)]
mod tests;
