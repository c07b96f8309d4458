//! Which datastore calicoctl talks to, chosen as calicoctl chooses it: the config file (`-c FILE`, default
//! `/etc/calico/calicoctl.cfg`, a `CalicoAPIConfig` in YAML or JSON) when it exists, else the environment
//! (`DATASTORE_TYPE`, `ETCD_ENDPOINTS`, `ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`, `ETCD_KEY_FILE`, each also
//! read with a `CALICO_` prefix, which wins). Besides `etcdv3`, calico-rs has the `local` store of a single
//! node: `DATASTORE_TYPE=local` with `CALICO_LOCAL_STORE_DIR` (`spec.localStoreDir`), default the plugin's
//! `/var/lib/calico-rs/ipam`. With neither a type nor etcd endpoints the local store is used (Calico would
//! pick `kubernetes`, which calico-rs does not have).
use crate::error::{CtlError, Result};
use datastore::config::{self, FieldNames};
pub use datastore::config::{DatastoreConf, Opened, DEFAULT_LOCAL_DIR};
use serde::Deserialize;
use std::path::Path;

pub const DEFAULT_CONFIG: &str = "/etc/calico/calicoctl.cfg";

/// `CalicoAPIConfig`: the keys Calico's `apiconfig` has are all known (unknown ones are refused, as its strict
/// unmarshal does); those calico-rs cannot honour are refused when set.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiConfig {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    #[allow(dead_code)]
    metadata: serde_json::Value,
    #[serde(default)]
    spec: Spec,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    datastore_type: String,
    #[serde(default)]
    etcd_endpoints: String,
    #[serde(default)]
    etcd_key_file: String,
    #[serde(default)]
    etcd_cert_file: String,
    #[serde(rename = "etcdCACertFile", default)]
    etcd_ca_cert_file: String,
    /// calico-rs: the local store's directory.
    #[serde(default)]
    local_store_dir: String,
    /// calico-rs: seconds each etcd request may take (default 5).
    #[serde(default)]
    etcd_timeout: Option<f64>,
    // Calico's keys calico-rs does not implement: refused when set (`unsupported`).
    #[serde(default)]
    etcd_discovery_srv: String,
    #[serde(default)]
    etcd_username: String,
    #[serde(default)]
    etcd_password: String,
    #[serde(default)]
    etcd_key: String,
    #[serde(default)]
    etcd_cert: String,
    #[serde(rename = "etcdCACert", default)]
    etcd_ca_cert: String,
    #[serde(default)]
    kubeconfig: String,
    #[serde(rename = "k8sAPIEndpoint", default)]
    k8s_api_endpoint: String,
    #[serde(default)]
    k8s_key_file: String,
    #[serde(default)]
    k8s_cert_file: String,
    #[serde(rename = "k8sCAFile", default)]
    k8s_ca_file: String,
    #[serde(rename = "k8sAPIToken", default)]
    k8s_api_token: String,
    #[serde(default)]
    k8s_insecure_skip_tls_verify: bool,
    #[serde(default)]
    k8s_disable_node_poll: bool,
    #[serde(rename = "usePodCIDR", default)]
    use_pod_cidr: bool,
    #[serde(default)]
    kubeconfig_inline: String,
    #[serde(rename = "k8sClientQPS", default)]
    k8s_client_qps: f64,
    #[serde(default)]
    k8s_client_burst: i64,
    #[serde(default)]
    k8s_current_context: String,
    #[serde(rename = "calicoAPIGroup", default)]
    calico_api_group: String,
}

impl Spec {
    fn unsupported(&self) -> Option<&'static str> {
        let set = [
            ("etcdDiscoverySrv", !self.etcd_discovery_srv.is_empty()),
            ("etcdUsername", !self.etcd_username.is_empty()),
            ("etcdPassword", !self.etcd_password.is_empty()),
            ("etcdKey", !self.etcd_key.is_empty()),
            ("etcdCert", !self.etcd_cert.is_empty()),
            ("etcdCACert", !self.etcd_ca_cert.is_empty()),
            ("kubeconfig", !self.kubeconfig.is_empty()),
            ("k8sAPIEndpoint", !self.k8s_api_endpoint.is_empty()),
            ("k8sKeyFile", !self.k8s_key_file.is_empty()),
            ("k8sCertFile", !self.k8s_cert_file.is_empty()),
            ("k8sCAFile", !self.k8s_ca_file.is_empty()),
            ("k8sAPIToken", !self.k8s_api_token.is_empty()),
            ("k8sInsecureSkipTLSVerify", self.k8s_insecure_skip_tls_verify),
            ("k8sDisableNodePoll", self.k8s_disable_node_poll),
            ("usePodCIDR", self.use_pod_cidr),
            ("kubeconfigInline", !self.kubeconfig_inline.is_empty()),
            ("k8sClientQPS", self.k8s_client_qps != 0.0),
            ("k8sClientBurst", self.k8s_client_burst != 0),
            ("k8sCurrentContext", !self.k8s_current_context.is_empty()),
            ("calicoAPIGroup", !self.calico_api_group.is_empty()),
        ];
        set.iter().find(|(_, on)| *on).map(|(k, _)| *k)
    }
}

/// The datastore to use: `config` is `-c`'s value; `env` looks up environment variables.
pub fn load(config: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<DatastoreConf> {
    let path = config.unwrap_or(DEFAULT_CONFIG);
    if Path::new(path).exists() {
        return from_file(path);
    }
    if config.is_some() {
        // calicoctl: an explicit file that cannot be read is an error; only the default may be missing.
        return Err(CtlError::Config(format!("Error reading config file: {path}")));
    }
    from_env(env)
}

fn from_file(path: &str) -> Result<DatastoreConf> {
    let text = std::fs::read_to_string(path).map_err(|e| CtlError::Config(format!("Error reading config file: {path}: {e}")))?;
    let cfg: ApiConfig = crate::input::from_yaml(&text).map_err(|e| CtlError::Config(format!("syntax error in {path}: {e}")))?;
    if cfg.api_version != datastore::resources::API_VERSION {
        return Err(CtlError::Config(format!("invalid config file {path}: unknown APIVersion '{}'", cfg.api_version)));
    }
    if cfg.kind != "CalicoAPIConfig" {
        return Err(CtlError::Config(format!("invalid config file {path}: expected kind 'CalicoAPIConfig', got '{}'", cfg.kind)));
    }
    if let Some(key) = cfg.spec.unsupported() {
        return Err(CtlError::Config(format!("{path}: spec.{key} is not supported by calico-rs (etcd with certificate files, or the local store)")));
    }
    let s = cfg.spec;
    let names = FieldNames { datastore_type: format!("{path}: spec.datastoreType"), endpoints: format!("{path}: spec.etcdEndpoints") };
    config::settle(
        &names,
        &s.datastore_type,
        &s.etcd_endpoints,
        [&s.etcd_ca_cert_file, &s.etcd_cert_file, &s.etcd_key_file],
        &s.local_store_dir,
        s.etcd_timeout,
    )
    .map_err(CtlError::Config)
}

fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<DatastoreConf> {
    config::from_env(env).map_err(CtlError::Config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use testbed::env_of as env;

    #[test]
    fn the_environment_chooses_like_calicoctl() {
        let none = env(&[]);
        assert_eq!(from_env(&none).unwrap(), DatastoreConf::Local(DEFAULT_LOCAL_DIR.into()));
        let e = env(&[("ETCD_ENDPOINTS", "http://a:2379,http://b:2379"), ("ETCD_CA_CERT_FILE", "/ca")]);
        let DatastoreConf::Etcd(o) = from_env(&e).unwrap() else { panic!("etcd") };
        assert_eq!(o.endpoints, ["http://a:2379", "http://b:2379"]);
        assert_eq!(o.tls.ca.as_deref(), Some(Path::new("/ca")));
        let e = env(&[("DATASTORE_TYPE", "local"), ("CALICO_DATASTORE_TYPE", "etcdv3"), ("ETCD_ENDPOINTS", "http://x:1")]);
        assert!(matches!(from_env(&e).unwrap(), DatastoreConf::Etcd(_)), "the CALICO_ prefix wins");
        let e = env(&[("DATASTORE_TYPE", "local"), ("CALICO_LOCAL_STORE_DIR", "/tmp/s")]);
        assert_eq!(from_env(&e).unwrap(), DatastoreConf::Local("/tmp/s".into()));
        for (k, v, msg) in
            [("DATASTORE_TYPE", "kubernetes", "not supported"), ("DATASTORE_TYPE", "etcdv3", "ETCD_ENDPOINTS"), ("DATASTORE_TYPE", "mysql", "mysql")]
        {
            let err = from_env(&env(&[(k, v)])).unwrap_err().to_string();
            assert!(err.contains(msg), "{err}");
        }
    }

    #[test]
    fn a_config_file_is_calicos_calico_api_config() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("calicoctl.cfg");
        let write = |s: &str| std::fs::write(&f, s).unwrap();
        let path = f.to_str().unwrap();
        write("apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata:\nspec:\n  datastoreType: etcdv3\n  etcdEndpoints: http://e:2379\n  etcdCACertFile: /ca\n  etcdKeyFile: /k\n  etcdCertFile: /c\n");
        let DatastoreConf::Etcd(o) = load(Some(path), &env(&[])).unwrap() else { panic!("etcd") };
        assert_eq!(
            (o.tls.ca.as_deref(), o.tls.key.as_deref(), o.tls.cert.as_deref()),
            (Some(Path::new("/ca")), Some(Path::new("/k")), Some(Path::new("/c")))
        );
        write("apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n  datastoreType: local\n  localStoreDir: /srv/s\n");
        assert_eq!(load(Some(path), &env(&[])).unwrap(), DatastoreConf::Local("/srv/s".into()));
        for (text, msg) in [
            ("apiVersion: v1\nkind: CalicoAPIConfig\n", "unknown APIVersion"),
            ("apiVersion: projectcalico.org/v3\nkind: Config\n", "expected kind"),
            ("apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n  etcdEndpoint: x\n", "etcdEndpoint"),
            ("apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n  kubeconfig: /k\n", "spec.kubeconfig"),
        ] {
            write(text);
            let err = load(Some(path), &env(&[])).unwrap_err().to_string();
            assert!(err.contains(msg), "{text}: {err}");
        }
        let err = load(Some("/nonexistent/calicoctl.cfg"), &env(&[])).unwrap_err().to_string();
        assert_eq!(err, "Error reading config file: /nonexistent/calicoctl.cfg");
    }
}
