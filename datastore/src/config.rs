//! Which datastore a binary talks to, from the environment as Calico's binaries read it (`DATASTORE_TYPE`,
//! `ETCD_ENDPOINTS`, `ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`, `ETCD_KEY_FILE`, `ETCD_TIMEOUT`, each also read with
//! a `CALICO_` prefix, which wins). Besides `etcdv3`, calico-rs has the `local` store of a single node:
//! `DATASTORE_TYPE=local` with `CALICO_LOCAL_STORE_DIR`, default `/var/lib/calico-rs/ipam`. With neither a type
//! nor etcd endpoints the local store is used (Calico would pick `kubernetes`, which calico-rs does not have).
//! calicoctl also reads the same settings from its config file (`calicoctl/src/config.rs`).
use crate::store::etcd::TlsFiles;
use crate::store::{Datastore, EtcdOptions, EtcdStore, FileStore, StoreError, Watchable};
use std::path::PathBuf;
use std::time::Duration;

/// The plugin's and calicoctl's local store directory.
pub const DEFAULT_LOCAL_DIR: &str = "/var/lib/calico-rs/ipam";

#[derive(Debug, Clone, PartialEq)]
pub enum DatastoreConf {
    Local(PathBuf),
    Etcd(EtcdOptions),
}

/// The names the settings go by in messages: the environment's, or a config file's fields.
pub struct FieldNames {
    pub datastore_type: String,
    pub endpoints: String,
}

impl FieldNames {
    pub fn env() -> FieldNames {
        FieldNames { datastore_type: "DATASTORE_TYPE".into(), endpoints: "ETCD_ENDPOINTS".into() }
    }
}

/// The datastore the environment names; `env` looks up a variable.
pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<DatastoreConf, String> {
    // Calico's envconfig reads `CALICO_<NAME>` first, then `<NAME>`.
    let var = |name: &str| env(&format!("CALICO_{name}")).or_else(|| env(name)).unwrap_or_default();
    let timeout = match var("ETCD_TIMEOUT") {
        t if t.is_empty() => None,
        t => Some(t.parse::<f64>().map_err(|_| format!("ETCD_TIMEOUT {t:?} is not a number of seconds"))?),
    };
    settle(
        &FieldNames::env(),
        &var("DATASTORE_TYPE"),
        &var("ETCD_ENDPOINTS"),
        [&var("ETCD_CA_CERT_FILE"), &var("ETCD_CERT_FILE"), &var("ETCD_KEY_FILE")],
        &env("CALICO_LOCAL_STORE_DIR").unwrap_or_default(),
        timeout,
    )
}

/// The datastore of these settings (empty strings are unset).
pub fn settle(
    names: &FieldNames,
    kind: &str,
    endpoints: &str,
    [ca, cert, key]: [&str; 3],
    dir: &str,
    timeout: Option<f64>,
) -> Result<DatastoreConf, String> {
    let (ty, eps) = (&names.datastore_type, &names.endpoints);
    let kind = match kind {
        "" if !endpoints.is_empty() => "etcdv3",
        "" => "local",
        k => k,
    };
    match kind {
        "local" => Ok(DatastoreConf::Local(if dir.is_empty() { DEFAULT_LOCAL_DIR.into() } else { dir.into() })),
        "etcdv3" => {
            if endpoints.trim().is_empty() {
                return Err(format!("{eps} is required with datastore type etcdv3"));
            }
            let mut o = EtcdOptions::new(endpoints);
            let file = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
            o.tls = TlsFiles { ca: file(ca), cert: file(cert), key: file(key) };
            if let Some(t) = timeout {
                if !(t > 0.0 && t <= 3600.0) {
                    return Err(format!("the etcd timeout must be between 0 and 3600 seconds, got {t}"));
                }
                o.timeout = Duration::from_secs_f64(t);
            }
            Ok(DatastoreConf::Etcd(o))
        }
        "kubernetes" => Err(format!("{ty} kubernetes is not supported by calico-rs: use etcdv3 or local")),
        other => Err(format!("{ty} {other:?} is not a datastore type (etcdv3, or calico-rs's local)")),
    }
}

/// An opened datastore. Nothing is sent to etcd until the first read.
pub enum Opened {
    Local(FileStore),
    Etcd(EtcdStore),
}

impl DatastoreConf {
    pub fn open(&self) -> Result<Opened, StoreError> {
        Ok(match self {
            DatastoreConf::Local(dir) => Opened::Local(FileStore::open(dir)?),
            DatastoreConf::Etcd(o) => Opened::Etcd(EtcdStore::open(o)?),
        })
    }
}

impl Opened {
    pub fn datastore(&self) -> &dyn Datastore {
        match self {
            Opened::Local(s) => s,
            Opened::Etcd(s) => s,
        }
    }

    pub fn watchable(&self) -> &dyn Watchable {
        match self {
            Opened::Local(s) => s,
            Opened::Etcd(s) => s,
        }
    }
}
