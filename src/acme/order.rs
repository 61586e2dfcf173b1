//! One ACME order for one name with `instant-acme`: the account (created
//! once, then loaded from the storage), the challenge published where the
//! ACME server will look, finalisation with a fresh P-256 key (rcgen) and
//! the issued chain. Every step is bounded by the order's deadline.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, ChallengeType, Identifier,
    NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use log::info;

use super::storage::Stored;
use super::{alpn, lock, Acme};
use crate::config::acme_file::ChallengeKind;
use crate::tls::CertKey;

/// Longest one order may take, validation included.
pub const DEADLINE: Duration = Duration::from_secs(300);

/// Orders a certificate for `name`: as stored, and parsed for serving.
pub async fn order(acme: &Acme, name: &str) -> Result<(Stored, CertKey), String> {
    match tokio::time::timeout(DEADLINE, order_inner(acme, name)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no certificate within {} s", DEADLINE.as_secs())),
    }
}

async fn order_inner(acme: &Acme, name: &str) -> Result<(Stored, CertKey), String> {
    let account = account(acme).await?;
    let ids = [Identifier::Dns(name.to_string())];
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(|e| format!("new order: {e}"))?;
    let mut published = Vec::new();
    let result = async {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => return Err(format!("authorization is {other:?}")),
            }
            let kind = match acme.settings.challenge {
                ChallengeKind::Http01 => ChallengeType::Http01,
                ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
            };
            let mut challenge = authz
                .challenge(kind.clone())
                .ok_or_else(|| format!("the server offers no {kind:?} challenge"))?;
            let answer = challenge.key_authorization();
            match kind {
                ChallengeType::TlsAlpn01 => {
                    let cert = alpn::challenge_certificate(name, answer.digest().as_ref())?;
                    lock(&acme.alpn).insert(name.to_string(), Arc::new(cert));
                }
                _ => {
                    let token = challenge.token.clone();
                    lock(&acme.answers).insert(token.clone(), answer.as_str().to_string());
                    acme.storage
                        .publish_challenge(&token, answer.as_str())
                        .await?;
                    published.push(token);
                }
            }
            challenge
                .set_ready()
                .await
                .map_err(|e| format!("challenge: {e}"))?;
        }
        let polling = RetryPolicy::default().timeout(DEADLINE);
        match order.poll_ready(&polling).await {
            Ok(OrderStatus::Ready) => {}
            Ok(status) => return Err(format!("order is {status:?}: {:?}", order.state().error)),
            Err(e) => return Err(format!("validation: {e}")),
        }
        let key_pem = order
            .finalize()
            .await
            .map_err(|e| format!("finalize: {e}"))?;
        let cert_pem = order
            .poll_certificate(&polling)
            .await
            .map_err(|e| format!("certificate: {e}"))?;
        let stored = Stored { cert_pem, key_pem };
        let cert = stored
            .cert_key()
            .map_err(|e| format!("issued certificate: {e}"))?;
        Ok((stored, cert))
    }
    .await;
    for token in published {
        lock(&acme.answers).remove(&token);
        acme.storage.withdraw_challenge(&token).await;
    }
    lock(&acme.alpn).remove(name);
    if result.is_ok() {
        info!("acme: certificate for {name} issued");
    }
    result
}

/// The account at the directory: the stored one, else a new one (stored).
async fn account(acme: &Acme) -> Result<Account, String> {
    let s = &acme.settings;
    let id = directory_id(&s.directory_url);
    if let Some(json) = acme.storage.account(&id).await? {
        let credentials: AccountCredentials =
            serde_json::from_str(&json).map_err(|e| format!("stored account: {e}"))?;
        return builder(acme)?
            .from_credentials(credentials)
            .await
            .map_err(|e| format!("account: {e}"));
    }
    let contact: Vec<&str> = s.contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder(acme)?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            s.directory_url.clone(),
            None,
        )
        .await
        .map_err(|e| format!("new account at {}: {e}", s.directory_url))?;
    let json = serde_json::to_string(&credentials).map_err(|e| e.to_string())?;
    acme.storage.save_account(&id, &json).await?;
    Ok(account)
}

/// The HTTP client: the system's roots, or `ca_file`'s.
fn builder(acme: &Acme) -> Result<instant_acme::AccountBuilder, String> {
    let Some(roots) = &acme.settings.ca_roots else {
        return Account::builder().map_err(|e| format!("HTTP client: {e}"));
    };
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store
            .add(root.clone())
            .map_err(|e| format!("acme.ca_file: {e}"))?;
    }
    let tls = crate::http_client::config(store);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client: HyperClient<_, BodyWrapper<Bytes>> =
        HyperClient::builder(TokioExecutor::new()).build(https);
    Ok(Account::builder_with_http(Box::new(client)))
}

/// A short, file-safe name of a directory URL: accounts are per server.
fn directory_id(url: &str) -> String {
    crate::auth::api_key::sha256_hex(url)[..16].to_string()
}
