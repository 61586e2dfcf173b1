//! Where ACME state lives: the account, each name's certificate and key,
//! the order lock and HTTP-01 answers. A directory serves one instance (or
//! several sharing a volume); the TokenginX/Redis store serves a fleet:
//! whichever instance the ACME server reaches finds the answer, one
//! instance orders while the others wait, and all serve the result.
//!
//! Private keys are written 0600 in a 0700 directory, replaced by rename
//! so a reader never sees half a file.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::lifecycle::unix_now;
use crate::tls::{CertKey, PemError};

/// Redis keys start with this.
const PREFIX: &str = "gatehouse:acme:";

/// How long a published HTTP-01 answer is kept.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(600);

/// Longest a storage call may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A certificate chain and its private key, as PEM.
#[derive(Clone, Serialize, Deserialize)]
pub struct Stored {
    /// The chain, leaf first.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl Stored {
    /// The chain and key, parsed and checked to belong together.
    pub fn cert_key(&self) -> Result<CertKey, PemError> {
        CertKey::from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
    }
}

/// The place ACME state is kept.
pub enum Storage {
    /// A directory.
    Files(PathBuf),
    /// The TokenginX/Redis store.
    Redis(Box<RedisStore>),
}

/// The TokenginX/Redis store's client and connection.
pub struct RedisStore {
    client: redis::Client,
    /// Made on first use.
    conn: OnceCell<ConnectionManager>,
}

impl Storage {
    /// Storage in the store `client` connects to.
    pub fn redis(client: redis::Client) -> Storage {
        Storage::Redis(Box::new(RedisStore {
            client,
            conn: OnceCell::new(),
        }))
    }

    /// The certificate kept for `name`.
    pub async fn certificate(&self, name: &str) -> Result<Option<Stored>, String> {
        match self {
            Storage::Files(dir) => {
                let (cert, key) = cert_paths(dir, name);
                match (
                    std::fs::read_to_string(&cert),
                    std::fs::read_to_string(&key),
                ) {
                    (Ok(cert_pem), Ok(key_pem)) => Ok(Some(Stored { cert_pem, key_pem })),
                    (Err(e), _) | (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                        Ok(None)
                    }
                    (Err(e), _) | (_, Err(e)) => Err(format!("{}: {e}", dir.display())),
                }
            }
            Storage::Redis(_) => {
                let json: Option<String> = self.redis_get(&format!("cert:{name}")).await?;
                json.map(|j| serde_json::from_str(&j).map_err(|e| format!("stored {name}: {e}")))
                    .transpose()
            }
        }
    }

    /// Keeps `stored` as the certificate of `name`.
    pub async fn save_certificate(&self, name: &str, stored: &Stored) -> Result<(), String> {
        match self {
            Storage::Files(dir) => {
                let (cert, key) = cert_paths(dir, name);
                write_private(&key, stored.key_pem.as_bytes())?;
                write_private(&cert, stored.cert_pem.as_bytes())
            }
            Storage::Redis(_) => {
                let json = serde_json::to_string(stored).map_err(|e| e.to_string())?;
                self.redis_cmd(
                    redis::cmd("SET")
                        .arg(key(&format!("cert:{name}")))
                        .arg(json),
                )
                .await
                .map(|_: ()| ())
            }
        }
    }

    /// The account credentials (JSON) kept for directory `id`.
    pub async fn account(&self, id: &str) -> Result<Option<String>, String> {
        match self {
            Storage::Files(dir) => match std::fs::read_to_string(account_path(dir, id)) {
                Ok(json) => Ok(Some(json)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("{}: {e}", dir.display())),
            },
            Storage::Redis(_) => self.redis_get(&format!("account:{id}")).await,
        }
    }

    /// Keeps the account credentials of directory `id`.
    pub async fn save_account(&self, id: &str, json: &str) -> Result<(), String> {
        match self {
            Storage::Files(dir) => write_private(&account_path(dir, id), json.as_bytes()),
            Storage::Redis(_) => self
                .redis_cmd(
                    redis::cmd("SET")
                        .arg(key(&format!("account:{id}")))
                        .arg(json),
                )
                .await
                .map(|_: ()| ()),
        }
    }

    /// Takes the order lock of `name` for `owner` until `ttl` passes;
    /// `false` when another owner holds it.
    pub async fn lock(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, String> {
        match self {
            Storage::Files(dir) => {
                let path = lock_path(dir, name);
                create_dir(&dir.join("locks"))?;
                for _ in 0..2 {
                    let content = format!("{owner} {}", unix_now() + ttl.as_secs());
                    match std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&path)
                    {
                        Ok(mut f) => {
                            f.write_all(content.as_bytes())
                                .map_err(|e| format!("{}: {e}", path.display()))?;
                            return Ok(true);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                            let held = std::fs::read_to_string(&path).unwrap_or_default();
                            let until = held
                                .split(' ')
                                .nth(1)
                                .and_then(|t| t.trim().parse::<u64>().ok())
                                .unwrap_or(0);
                            if until > unix_now() {
                                return Ok(false);
                            }
                            let _ = std::fs::remove_file(&path);
                        }
                        Err(e) => return Err(format!("{}: {e}", path.display())),
                    }
                }
                Ok(false)
            }
            Storage::Redis(_) => {
                let set: Option<String> = self
                    .redis_cmd(
                        redis::cmd("SET")
                            .arg(key(&format!("lock:{name}")))
                            .arg(owner)
                            .arg("NX")
                            .arg("PX")
                            .arg(ttl.as_millis() as u64),
                    )
                    .await?;
                Ok(set.is_some())
            }
        }
    }

    /// Releases `owner`'s lock of `name` (another owner's stays).
    pub async fn unlock(&self, name: &str, owner: &str) -> Result<(), String> {
        match self {
            Storage::Files(dir) => {
                let path = lock_path(dir, name);
                let held = std::fs::read_to_string(&path).unwrap_or_default();
                if held.split(' ').next() == Some(owner) {
                    let _ = std::fs::remove_file(&path);
                }
                Ok(())
            }
            Storage::Redis(_) => {
                let script = redis::Script::new(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                );
                let mut conn = self.connection().await?;
                let mut invocation = script.key(key(&format!("lock:{name}")));
                let call = invocation.arg(owner).invoke_async::<i64>(&mut conn);
                match tokio::time::timeout(TIMEOUT, call).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".into()),
                }
            }
        }
    }

    /// Publishes the HTTP-01 answer of `token`.
    pub async fn publish_challenge(&self, token: &str, answer: &str) -> Result<(), String> {
        match self {
            Storage::Files(dir) => {
                create_dir(&dir.join("challenges"))?;
                write_private(&challenge_path(dir, token), answer.as_bytes())
            }
            Storage::Redis(_) => self
                .redis_cmd(
                    redis::cmd("SET")
                        .arg(key(&format!("challenge:{token}")))
                        .arg(answer)
                        .arg("EX")
                        .arg(CHALLENGE_TTL.as_secs()),
                )
                .await
                .map(|_: ()| ()),
        }
    }

    /// The HTTP-01 answer of `token`, published by any instance.
    pub async fn challenge(&self, token: &str) -> Result<Option<String>, String> {
        match self {
            Storage::Files(dir) => match std::fs::read_to_string(challenge_path(dir, token)) {
                Ok(a) => Ok(Some(a)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.to_string()),
            },
            Storage::Redis(_) => self.redis_get(&format!("challenge:{token}")).await,
        }
    }

    /// Removes the HTTP-01 answer of `token`.
    pub async fn withdraw_challenge(&self, token: &str) {
        match self {
            Storage::Files(dir) => {
                let _ = std::fs::remove_file(challenge_path(dir, token));
            }
            Storage::Redis(_) => {
                let _: Result<(), String> = self
                    .redis_cmd(redis::cmd("DEL").arg(key(&format!("challenge:{token}"))))
                    .await;
            }
        }
    }

    async fn connection(&self) -> Result<ConnectionManager, String> {
        let Storage::Redis(store) = self else {
            return Err("not a Redis storage".into());
        };
        let (client, conn) = (&store.client, &store.conn);
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1);
        conn.get_or_try_init(|| async {
            ConnectionManager::new_lazy_with_config(client.clone(), config)
                .map_err(|e| e.to_string())
        })
        .await
        .cloned()
    }

    async fn redis_cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        let mut conn = self.connection().await?;
        match tokio::time::timeout(TIMEOUT, cmd.query_async::<T>(&mut conn)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    async fn redis_get(&self, suffix: &str) -> Result<Option<String>, String> {
        self.redis_cmd(redis::cmd("GET").arg(key(suffix))).await
    }
}

fn key(suffix: &str) -> String {
    format!("{PREFIX}{suffix}")
}

fn cert_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let certs = dir.join("certs");
    (
        certs.join(format!("{name}.crt")),
        certs.join(format!("{name}.key")),
    )
}

fn lock_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("locks").join(format!("{name}.lock"))
}

fn challenge_path(dir: &Path, token: &str) -> PathBuf {
    dir.join("challenges").join(token)
}

fn account_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("account-{id}.json"))
}

fn create_dir(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// Writes `bytes` to `path` (mode 0600) through a temporary file and a rename.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dir(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn files_keep_keys_private_and_one_owner_holds_a_lock() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::Files(dir.path().join("acme"));
        assert!(s.certificate("a.example").await.unwrap().is_none());
        let stored = Stored {
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
        };
        s.save_certificate("a.example", &stored).await.unwrap();
        let back = s.certificate("a.example").await.unwrap().unwrap();
        assert_eq!(
            (back.cert_pem.as_str(), back.key_pem.as_str()),
            ("CERT", "KEY")
        );
        let (cert, key) = cert_paths(&dir.path().join("acme"), "a.example");
        assert_eq!((mode(&cert), mode(&key)), (0o600, 0o600));
        assert_eq!(mode(&dir.path().join("acme").join("certs")), 0o700);

        let ttl = Duration::from_secs(60);
        assert!(s.lock("a.example", "one", ttl).await.unwrap());
        assert!(!s.lock("a.example", "two", ttl).await.unwrap());
        s.unlock("a.example", "two").await.unwrap();
        assert!(!s.lock("a.example", "two", ttl).await.unwrap());
        s.unlock("a.example", "one").await.unwrap();
        assert!(s.lock("a.example", "two", ttl).await.unwrap());
        assert!(s.lock("b.example", "one", Duration::ZERO).await.unwrap());
        assert!(
            s.lock("b.example", "two", ttl).await.unwrap(),
            "an expired lock is taken over"
        );

        s.publish_challenge("tok", "tok.thumb").await.unwrap();
        assert_eq!(
            s.challenge("tok").await.unwrap().as_deref(),
            Some("tok.thumb")
        );
        s.withdraw_challenge("tok").await;
        assert!(s.challenge("tok").await.unwrap().is_none());
    }
}
