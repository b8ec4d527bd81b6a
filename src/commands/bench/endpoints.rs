//! The run's endpoints, part of the plan (stage 1): each `--endpoint` parsed, resolved and with
//! its TLS settings (`Replica`), and the one API they all speak.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use crate::cli::BenchArgs;
use crate::foundation::error::{Result, UserError};
use crate::http::tls;
use crate::http::url::Endpoint;
use crate::workload::prepared::{api_of_path, Api};

/// One `--endpoint`, parsed, resolved and with its TLS settings.
pub struct Replica {
    /// As shown in files and messages (secret query parameters masked).
    pub shown: String,
    pub endpoint: Endpoint,
    pub addrs: Vec<SocketAddr>,
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

/// One `--endpoint`, resolved, with its TLS settings.
pub fn replica(args: &BenchArgs, shown: String, endpoint: Endpoint) -> Result<Replica> {
    let tls = tls_settings(args, &endpoint)?;
    let addrs = endpoint
        .resolve()
        .map_err(|e| UserError::input(format!("--endpoint {shown}: {e}")))?;
    Ok(Replica {
        shown,
        endpoint,
        addrs,
        tls,
    })
}

/// `--api`, or the API the endpoints' paths imply (the same for every one of them).
pub fn api_of(args: &BenchArgs, replicas: &[Replica]) -> Result<Api> {
    if let Some(api) = args.api {
        return Ok(api);
    }
    let api = api_of_path(&replicas[0].endpoint.target);
    if let Some(r) = replicas
        .iter()
        .find(|r| api_of_path(&r.endpoint.target) != api)
    {
        return Err(UserError::input(format!(
            "--endpoint {} and {}: their paths name different APIs ({} and {}); replicas of one model speak one API (or give --api)",
            replicas[0].shown, r.shown, api, api_of_path(&r.endpoint.target)
        )));
    }
    Ok(api)
}

/// The TLS client settings for an `https://` endpoint (none for `http://`).
fn tls_settings(
    args: &BenchArgs,
    endpoint: &Endpoint,
) -> Result<Option<(Arc<ClientConfig>, ServerName<'static>)>> {
    if !endpoint.tls {
        if args.ca_cert.is_some() || args.insecure {
            eprintln!("note: --ca-cert and --insecure apply to https:// endpoints only; this one is http://");
        }
        return Ok(None);
    }
    let config =
        tls::client_config(args.ca_cert.as_deref(), args.insecure).map_err(UserError::input)?;
    let name = tls::server_name(&endpoint.host)
        .map_err(|e| UserError::input(format!("--endpoint: {e}")))?;
    if args.insecure {
        eprintln!("warning: --insecure: the endpoint's TLS certificate is not verified; anyone on the path can read the key and the traffic");
    }
    Ok(Some((config, name)))
}
