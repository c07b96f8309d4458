//! The default IP pools calico-node creates at startup when the datastore holds no pool of a family, from
//! the environment Calico's manifests set (Calico's `configureIPPools`, node/pkg/lifecycle/startup/startup.go):
//! `CALICO_IPV4POOL_CIDR` (192.168.0.0/16; `none`: no IPv4 pool), `_BLOCK_SIZE` (26), `_IPIP`, `_VXLAN`
//! (Never, Always, CrossSubnet; also `off`, `cross-subnet`, any case), `_NAT_OUTGOING` (true),
//! `_NODE_SELECTOR` (all()), `_DISABLE_BGP_EXPORT` (false); `CALICO_IPV6POOL_*` likewise (block size 122,
//! natOutgoing false, no IPIP); `NO_DEFAULT_POOLS=true` creates none. One difference: Calico makes up a
//! random ULA /48 for IPv6 when `CALICO_IPV6POOL_CIDR` is unset; calico-rs creates an IPv6 pool only when it
//! is set. A bad value is a startup error naming its variable.
use crate::settings::SettingsError;
use datastore::resources::ippool::{Pool, PoolSpec};
use datastore::resources::kinds::IPPOOL;
use datastore::resources::metadata::{new_uid, rfc3339_now};
use datastore::resources::API_VERSION;
use datastore::store::{Datastore, Json, Key, Kind};
use ipnet::IpNet;
use serde_json::json;

pub const DEFAULT_V4_NAME: &str = "default-ipv4-ippool";
pub const DEFAULT_V6_NAME: &str = "default-ipv6-ippool";
const DEFAULT_V4_CIDR: &str = "192.168.0.0/16";

/// The pool to create for one family, checked as calicoctl checks an IPPool.
#[derive(Debug, Clone, PartialEq)]
pub struct DefaultPool {
    pub name: &'static str,
    pub spec: PoolSpec,
}

/// What startup creates (None: that family gets no default pool).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DefaultPools {
    pub v4: Option<DefaultPool>,
    pub v6: Option<DefaultPool>,
}

fn bad(var: &str, reason: impl Into<String>) -> SettingsError {
    SettingsError { var: var.into(), reason: reason.into() }
}

/// Go's `strconv.ParseBool`, which Calico's `evaluateENVBool` uses.
fn boolean(get: &dyn Fn(&str) -> Option<String>, var: &str, default: bool) -> Result<bool, SettingsError> {
    match get(var).as_deref() {
        None | Some("") => Ok(default),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(v) => Err(bad(var, format!("{v:?} is not true or false"))),
    }
}

/// Calico's mode names, any case.
fn mode(get: &dyn Fn(&str) -> Option<String>, var: &str) -> Result<Option<String>, SettingsError> {
    let Some(v) = get(var) else { return Ok(None) };
    let m = match v.to_ascii_lowercase().as_str() {
        "" | "off" | "never" => "Never",
        "crosssubnet" | "cross-subnet" => "CrossSubnet",
        "always" => "Always",
        _ => return Err(bad(var, format!("{v:?} must be Always, CrossSubnet or Never"))),
    };
    Ok(Some(m.to_string()))
}

fn family(get: &dyn Fn(&str) -> Option<String>, v6: bool) -> Result<Option<DefaultPool>, SettingsError> {
    let p = if v6 { "CALICO_IPV6POOL_" } else { "CALICO_IPV4POOL_" };
    let var = |suffix: &str| format!("{p}{suffix}");
    let cidr = match get(&var("CIDR")).filter(|c| !c.is_empty()) {
        Some(c) if c == "none" => return Ok(None),
        Some(c) => c,
        None if v6 => return Ok(None),
        None => DEFAULT_V4_CIDR.to_string(),
    };
    let net: IpNet = cidr.parse().map_err(|_| bad(&var("CIDR"), format!("{cidr:?} is not a CIDR")))?;
    if net.addr().is_ipv6() != v6 {
        return Err(bad(&var("CIDR"), format!("{cidr} is not an IPv{} CIDR", if v6 { 6 } else { 4 })));
    }
    let block_size = match get(&var("BLOCK_SIZE")).filter(|b| !b.is_empty()) {
        Some(b) => Some(b.parse::<u8>().map_err(|_| bad(&var("BLOCK_SIZE"), format!("{b:?} is not a block size")))?),
        None => Some(if v6 { 122 } else { 26 }),
    };
    let spec = PoolSpec {
        cidr: net.trunc().to_string(),
        block_size,
        ipip_mode: if v6 { Some("Never".into()) } else { mode(get, &var("IPIP"))?.or(Some("Never".into())) },
        vxlan_mode: mode(get, &var("VXLAN"))?.or(Some("Never".into())),
        nat_outgoing: boolean(get, &var("NAT_OUTGOING"), !v6)?,
        node_selector: Some(get(&var("NODE_SELECTOR")).filter(|s| !s.is_empty()).unwrap_or_else(|| "all()".into())),
        disable_bgp_export: boolean(get, &var("DISABLE_BGP_EXPORT"), false)?,
        ..PoolSpec::default()
    };
    let name = if v6 { DEFAULT_V6_NAME } else { DEFAULT_V4_NAME };
    // The spec's own checks, each blamed on the variable that set the field.
    Pool::from_spec(name, &spec).map_err(|e| {
        let suffix = match e.field.as_str() {
            "spec.blockSize" => "BLOCK_SIZE",
            "spec.ipipMode" => "IPIP",
            "spec.vxlanMode" => "VXLAN",
            "spec.nodeSelector" => "NODE_SELECTOR",
            _ => "CIDR",
        };
        bad(&var(suffix), e.reason)
    })?;
    Ok(Some(DefaultPool { name, spec }))
}

/// The default pools the environment asks for.
pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<DefaultPools, SettingsError> {
    if boolean(get, "NO_DEFAULT_POOLS", false)? {
        for var in ["CALICO_IPV4POOL_CIDR", "CALICO_IPV6POOL_CIDR"] {
            if get(var).is_some_and(|v| !v.is_empty()) {
                return Err(bad(var, "cannot be set with NO_DEFAULT_POOLS=true"));
            }
        }
        return Ok(DefaultPools::default());
    }
    Ok(DefaultPools { v4: family(get, false)?, v6: family(get, true)? })
}

/// Creates each default pool whose family has no pool in the datastore (with the pool index, as calicoctl's
/// writes do). Another node creating it first is not an error. Returns the names created.
pub fn ensure(store: &dyn Datastore, pools: &DefaultPools) -> Result<Vec<&'static str>, String> {
    let mut session = store.lock().map_err(|e| format!("datastore: {e}"))?;
    // Read leniently (a pool written around calicoctl, even one that fails its checks, still counts).
    let families: Vec<bool> = session
        .list(Kind::Resource(&IPPOOL))
        .map_err(|e| format!("datastore: {e}"))?
        .iter()
        .filter_map(|(_, r)| r.value.to_value()["spec"]["cidr"].as_str().and_then(|c| c.parse::<IpNet>().ok()))
        .map(|c| c.addr().is_ipv6())
        .collect();
    let mut created = Vec::new();
    for pool in [&pools.v4, &pools.v6].into_iter().flatten() {
        if families.contains(&pool.spec.cidr.contains(':')) {
            continue;
        }
        let uid = new_uid().unwrap_or_else(|_| format!("{}-{}", pool.name, std::process::id()));
        let doc = json!({"apiVersion": API_VERSION, "kind": "IPPool",
                         "metadata": {"name": pool.name, "uid": uid, "creationTimestamp": rfc3339_now()}, "spec": pool.spec});
        let value = Json::encode(&doc).map_err(|e| format!("{}: {e}", pool.name))?;
        let key = Key::resource(&IPPOOL, pool.name);
        let ops = cni_ipam::ipam::admin::resource_ops(&*session, &key, Some(value), None).map_err(|e| format!("{}: {e}", pool.name))?;
        match session.commit(&ops) {
            Ok(_) => created.push(pool.name),
            // Another node's agent made it first.
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(format!("{}: {e}", pool.name)),
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use testbed::env_of as env;

    #[test]
    fn calicos_defaults_and_variables() {
        let d = from_env(&env(&[])).unwrap();
        let v4 = d.v4.expect("an IPv4 default");
        assert_eq!((v4.name, v4.spec.cidr.as_str(), v4.spec.block_size), (DEFAULT_V4_NAME, "192.168.0.0/16", Some(26)));
        assert!(v4.spec.nat_outgoing);
        assert_eq!((v4.spec.ipip_mode.as_deref(), v4.spec.vxlan_mode.as_deref()), (Some("Never"), Some("Never")));
        assert_eq!(d.v6, None, "no IPv6 pool unless CALICO_IPV6POOL_CIDR is set");

        let d = from_env(&env(&[
            ("CALICO_IPV4POOL_CIDR", "10.77.0.0/16"),
            ("CALICO_IPV4POOL_IPIP", "always"),
            ("CALICO_IPV4POOL_BLOCK_SIZE", "28"),
            ("CALICO_IPV4POOL_NAT_OUTGOING", "false"),
            ("CALICO_IPV6POOL_CIDR", "fd00:77::/48"),
            ("CALICO_IPV6POOL_VXLAN", "cross-subnet"),
        ]))
        .unwrap();
        let (v4, v6) = (d.v4.unwrap(), d.v6.unwrap());
        assert_eq!(
            (v4.spec.cidr.as_str(), v4.spec.block_size, v4.spec.ipip_mode.as_deref(), v4.spec.nat_outgoing),
            ("10.77.0.0/16", Some(28), Some("Always"), false)
        );
        assert_eq!(
            (v6.name, v6.spec.block_size, v6.spec.vxlan_mode.as_deref(), v6.spec.nat_outgoing),
            (DEFAULT_V6_NAME, Some(122), Some("CrossSubnet"), false)
        );
        assert_eq!(from_env(&env(&[("CALICO_IPV4POOL_CIDR", "none")])).unwrap(), DefaultPools::default());
        assert_eq!(from_env(&env(&[("NO_DEFAULT_POOLS", "true")])).unwrap(), DefaultPools::default());
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (pairs, var) in [
            (vec![("CALICO_IPV4POOL_CIDR", "10.0.0.0/33")], "CALICO_IPV4POOL_CIDR"),
            (vec![("CALICO_IPV4POOL_CIDR", "fd00::/48")], "CALICO_IPV4POOL_CIDR"),
            (vec![("CALICO_IPV4POOL_BLOCK_SIZE", "33")], "CALICO_IPV4POOL_BLOCK_SIZE"),
            (vec![("CALICO_IPV4POOL_BLOCK_SIZE", "19")], "CALICO_IPV4POOL_BLOCK_SIZE"),
            (vec![("CALICO_IPV4POOL_IPIP", "sometimes")], "CALICO_IPV4POOL_IPIP"),
            (vec![("CALICO_IPV4POOL_IPIP", "Always"), ("CALICO_IPV4POOL_VXLAN", "Always")], "CALICO_IPV4POOL_VXLAN"),
            (vec![("CALICO_IPV4POOL_NAT_OUTGOING", "yes")], "CALICO_IPV4POOL_NAT_OUTGOING"),
            (vec![("CALICO_IPV4POOL_NODE_SELECTOR", "rack ==")], "CALICO_IPV4POOL_NODE_SELECTOR"),
            (vec![("CALICO_IPV6POOL_CIDR", "fd00::/48"), ("CALICO_IPV6POOL_BLOCK_SIZE", "100")], "CALICO_IPV6POOL_BLOCK_SIZE"),
            (vec![("NO_DEFAULT_POOLS", "true"), ("CALICO_IPV4POOL_CIDR", "10.0.0.0/16")], "CALICO_IPV4POOL_CIDR"),
        ] {
            let e = from_env(&env(&pairs)).unwrap_err();
            assert_eq!(e.var, var, "{pairs:?}: {e}");
        }
    }
}
