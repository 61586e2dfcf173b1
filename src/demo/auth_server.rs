//! The demo's authorization server, served by the sample oauth-service
//! under `/oauth`: just enough OAuth 2.1 + OpenID Connect for
//! `gatehouse demo` to show the gateway's login in a browser — discovery,
//! an authorize page (any user name), a token endpoint (authorization code
//! with PKCE S256, rotating refresh tokens), and logout. Tokens are ES256
//! JWTs signed with the demo's key, so the gateway's `jwt` issuer accepts
//! the access tokens too. Nothing here is meant for production.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::DEMO_ISSUER;

/// Seconds an access token lives: short, so the demo shows refreshes.
const ACCESS_TTL: u64 = 120;

/// One authorization: who, for which client, and its PKCE challenge.
#[derive(Clone)]
struct Grant {
    user: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
}

/// The server's state: its key, its client, outstanding codes and the
/// refresh tokens that are still valid.
pub struct AuthServer {
    key: EncodingKey,
    client_secret: String,
    codes: Mutex<HashMap<String, Grant>>,
    refresh: Mutex<HashMap<String, Grant>>,
}

impl std::fmt::Debug for AuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthServer")
    }
}

/// A response: status, content type, extra headers, body.
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Content-Type.
    pub ctype: &'static str,
    /// Other headers (`Location`).
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Answer {
    fn json(status: u16, v: serde_json::Value) -> Answer {
        Answer {
            status,
            ctype: "application/json",
            headers: vec![("cache-control", "no-store".into())],
            body: v.to_string().into_bytes(),
        }
    }

    fn error(status: u16, code: &str) -> Answer {
        Answer::json(status, serde_json::json!({ "error": code }))
    }

    fn redirect(location: String) -> Answer {
        Answer {
            status: 302,
            ctype: "text/plain",
            headers: vec![("location", location)],
            body: Vec::new(),
        }
    }
}

fn params(text: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

fn random() -> String {
    let mut buf = [0u8; 24];
    boring::rand::rand_bytes(&mut buf).expect("BoringSSL's CSPRNG is available");
    URL_SAFE_NO_PAD.encode(buf)
}

/// Only the gateway on this machine may be sent a code.
fn local_redirect(uri: &str) -> bool {
    url::Url::parse(uri).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
    })
}

impl AuthServer {
    /// A server signing with `key` (the demo's ES256 key) for client
    /// `gatehouse` with `client_secret`.
    pub fn new(key: EncodingKey, client_secret: String) -> AuthServer {
        AuthServer {
            key,
            client_secret,
            codes: Mutex::new(HashMap::new()),
            refresh: Mutex::new(HashMap::new()),
        }
    }

    /// The answer for `method` `path` (`/oauth/...`) with `query` and a
    /// form `body`, or `None` when the path is not the server's.
    pub fn handle(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        authorization: Option<&str>,
    ) -> Option<Answer> {
        let body = String::from_utf8_lossy(body);
        Some(match (method, path) {
            ("GET", "/oauth/.well-known/openid-configuration") => Self::discovery(),
            ("GET", "/oauth/authorize") => Self::login_page(query),
            ("POST", "/oauth/authorize") => self.authorize(&params(query), &params(&body)),
            ("POST", "/oauth/token") => self.token(&params(&body), authorization),
            ("GET", "/oauth/logout") => Self::logout(&params(query)),
            _ => return None,
        })
    }

    fn discovery() -> Answer {
        Answer::json(
            200,
            serde_json::json!({
                "issuer": DEMO_ISSUER,
                "authorization_endpoint": format!("{DEMO_ISSUER}/authorize"),
                "token_endpoint": format!("{DEMO_ISSUER}/token"),
                "jwks_uri": format!("{DEMO_ISSUER}/.well-known/jwks.json"),
                "end_session_endpoint": format!("{DEMO_ISSUER}/logout"),
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "id_token_signing_alg_values_supported": ["ES256"],
            }),
        )
    }

    /// The sign-in form; the authorization request rides in its action.
    fn login_page(query: &str) -> Answer {
        let action = format!("/oauth/authorize?{}", html_escape(query));
        let body = format!(
            "<!doctype html><title>Sign in - demo</title>\
             <h1>Sign in to the gatehouse demo</h1>\
             <p>Any name works; the gateway gets its tokens, your browser only a session cookie.</p>\
             <form action=\"{action}\" method=\"post\">\
             <input type=\"hidden\" name=\"prompt\" value=\"login\">\
             <input name=\"login\" value=\"demo-user\" autofocus> \
             <input type=\"password\" name=\"password\" placeholder=\"any password\"> \
             <button type=\"submit\">Sign in</button></form>"
        );
        Answer {
            status: 200,
            ctype: "text/html; charset=utf-8",
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }

    fn authorize(&self, q: &HashMap<String, String>, form: &HashMap<String, String>) -> Answer {
        let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
        let redirect_uri = get("redirect_uri");
        let valid = get("response_type") == "code"
            && get("client_id") == "gatehouse"
            && get("code_challenge_method") == "S256"
            && !get("code_challenge").is_empty()
            && local_redirect(redirect_uri);
        if !valid {
            return Answer::error(400, "invalid_request");
        }
        let user = form
            .get("login")
            .map(|u| u.trim())
            .filter(|u| !u.is_empty() && u.len() <= 64 && u.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or("demo-user")
            .to_string();
        let code = random();
        let grant = Grant {
            user,
            redirect_uri: redirect_uri.to_string(),
            challenge: get("code_challenge").to_string(),
            nonce: q.get("nonce").cloned(),
        };
        if let Ok(mut codes) = self.codes.lock() {
            codes.insert(code.clone(), grant);
        }
        let mut url = match url::Url::parse(redirect_uri) {
            Ok(u) => u,
            Err(_) => return Answer::error(400, "invalid_request"),
        };
        url.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", get("state"))
            .append_pair("iss", DEMO_ISSUER);
        Answer::redirect(url.into())
    }

    fn client_ok(&self, form: &HashMap<String, String>, authorization: Option<&str>) -> bool {
        let basic = authorization
            .and_then(|a| a.strip_prefix("Basic "))
            .and_then(|b| STANDARD.decode(b.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok());
        let (id, secret) = match &basic {
            Some(pair) => pair.split_once(':').map_or(("", ""), |(a, b)| (a, b)),
            None => (
                form.get("client_id").map_or("", String::as_str),
                form.get("client_secret").map_or("", String::as_str),
            ),
        };
        id == "gatehouse" && secret == self.client_secret
    }

    fn token(&self, form: &HashMap<String, String>, authorization: Option<&str>) -> Answer {
        if !self.client_ok(form, authorization) {
            return Answer::error(401, "invalid_client");
        }
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let grant = match get("grant_type") {
            "authorization_code" => {
                let grant = self
                    .codes
                    .lock()
                    .ok()
                    .and_then(|mut c| c.remove(get("code")));
                let verifier = get("code_verifier");
                let challenge = URL_SAFE_NO_PAD.encode(boring::sha::sha256(verifier.as_bytes()));
                match grant {
                    Some(g)
                        if g.redirect_uri == get("redirect_uri") && g.challenge == challenge =>
                    {
                        g
                    }
                    _ => return Answer::error(400, "invalid_grant"),
                }
            }
            "refresh_token" => {
                match self
                    .refresh
                    .lock()
                    .ok()
                    .and_then(|mut r| r.remove(get("refresh_token")))
                {
                    Some(g) => g,
                    None => return Answer::error(400, "invalid_grant"),
                }
            }
            _ => return Answer::error(400, "unsupported_grant_type"),
        };
        let now = crate::lifecycle::unix_now();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("demo-1".into());
        let access = serde_json::json!({
            "iss": DEMO_ISSUER, "aud": "gatehouse", "sub": grant.user, "scope": "read admin",
            "iat": now, "exp": now + ACCESS_TTL, "jti": random(),
        });
        let id = serde_json::json!({
            "iss": DEMO_ISSUER, "aud": "gatehouse", "sub": grant.user, "nonce": grant.nonce,
            "iat": now, "exp": now + 3600,
        });
        let (Ok(access), Ok(id_token)) = (
            jsonwebtoken::encode(&header, &access, &self.key),
            jsonwebtoken::encode(&header, &id, &self.key),
        ) else {
            return Answer::error(500, "server_error");
        };
        let refresh = random();
        if let Ok(mut r) = self.refresh.lock() {
            r.insert(refresh.clone(), grant);
        }
        Answer::json(
            200,
            serde_json::json!({
                "access_token": access, "token_type": "Bearer", "expires_in": ACCESS_TTL,
                "refresh_token": refresh, "id_token": id_token, "scope": "openid read admin",
            }),
        )
    }

    fn logout(q: &HashMap<String, String>) -> Answer {
        match q
            .get("post_logout_redirect_uri")
            .filter(|u| local_redirect(u))
        {
            Some(u) => Answer::redirect(u.clone()),
            None => Answer::redirect("/".into()),
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
