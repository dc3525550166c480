//! Checks of Services and Endpoints (Kubernetes' `ValidateService`, `ValidateEndpoints`).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{EndpointPort, Endpoints, Service, ServicePort};

use super::Validate;
use super::field::{Error, ErrorList, Path};
use super::meta::{NameRule, validate_labels, validate_metadata};
use super::names;
use super::pod::{PROTOCOLS, invalid_each, one_of, port_number_or_name, unique_name};

/// The types a Service may have.
pub const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];

impl Validate for Service {
    fn validate(&self) -> ErrorList {
        let mut errors = validate_metadata(self, NameRule::Dns1035Label);
        let path = Path::new("spec");
        let Some(spec) = &self.spec else {
            errors.push(Error::required(&path.child("ports"), ""));
            return errors;
        };
        let service_type = spec.type_.as_deref().unwrap_or_default();
        one_of(
            service_type,
            &SERVICE_TYPES,
            &path.child("type"),
            &mut errors,
        );
        let cluster_ip = spec.cluster_ip.as_deref().unwrap_or_default();
        let headless = cluster_ip == "None";
        let ports = spec.ports.as_deref().unwrap_or_default();
        if ports.is_empty() && !headless && service_type != "ExternalName" {
            errors.push(Error::required(&path.child("ports"), ""));
        }
        if service_type == "ExternalName" {
            let external_name = spec.external_name.as_deref().unwrap_or_default();
            let name_path = path.child("externalName");
            if external_name.is_empty() {
                errors.push(Error::required(&name_path, ""));
            } else {
                invalid_each(
                    names::dns1123_subdomain(external_name.trim_end_matches('.')),
                    &name_path,
                    external_name,
                    &mut errors,
                );
            }
            if !cluster_ip.is_empty() {
                errors.push(Error::forbidden(
                    &path.child("clusterIP"),
                    "may not be set for ExternalName services",
                ));
            }
        } else if !cluster_ip.is_empty() && !headless {
            invalid_each(
                names::ip_address(cluster_ip),
                &path.child("clusterIP"),
                cluster_ip,
                &mut errors,
            );
        }
        let mut port_names = BTreeSet::new();
        let mut port_keys = BTreeSet::new();
        let mut node_ports = BTreeSet::new();
        for (i, port) in ports.iter().enumerate() {
            let port_path = path.child("ports").index(i);
            validate_service_port(
                port,
                ports.len() > 1,
                &port_path,
                &mut port_names,
                &mut errors,
            );
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            if !port_keys.insert((port.port, protocol.to_owned())) {
                errors.push(Error::duplicate(
                    &port_path,
                    format!("{}/{protocol}", port.port),
                ));
            }
            let node_port = port.node_port.unwrap_or_default();
            if node_port != 0 {
                let node_port_path = port_path.child("nodePort");
                if matches!(service_type, "ClusterIP" | "ExternalName") {
                    errors.push(Error::forbidden(
                        &node_port_path,
                        &format!("may not be used when `type` is '{service_type}'"),
                    ));
                }
                for message in names::port_number(i64::from(node_port)) {
                    errors.push(Error::invalid(&node_port_path, node_port, &message));
                }
                if !node_ports.insert((node_port, protocol.to_owned())) {
                    errors.push(Error::duplicate(&node_port_path, node_port));
                }
            }
        }
        if let Some(selector) = &spec.selector {
            errors.extend(validate_labels(selector, &path.child("selector")));
        }
        let affinity = spec.session_affinity.as_deref().unwrap_or_default();
        one_of(
            affinity,
            &["ClientIP", "None"],
            &path.child("sessionAffinity"),
            &mut errors,
        );
        if affinity == "ClientIP" {
            let timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            if let Some(timeout) = timeout
                && !(1..=86_400).contains(&timeout)
            {
                errors.push(Error::invalid(
                    &path
                        .child("sessionAffinityConfig")
                        .child("clientIP")
                        .child("timeoutSeconds"),
                    timeout,
                    "must be greater than 0 and less than 86400",
                ));
            }
        }
        if let Some(policy) = spec.external_traffic_policy.as_deref() {
            let policy_path = path.child("externalTrafficPolicy");
            if !matches!(service_type, "NodePort" | "LoadBalancer") {
                errors.push(Error::invalid(
                    &policy_path,
                    policy,
                    "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
                ));
            } else {
                one_of(policy, &["Cluster", "Local"], &policy_path, &mut errors);
            }
        }
        if let Some(policy) = spec.internal_traffic_policy.as_deref() {
            one_of(
                policy,
                &["Cluster", "Local"],
                &path.child("internalTrafficPolicy"),
                &mut errors,
            );
        }
        for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
            invalid_each(
                names::ip_address(ip),
                &path.child("externalIPs").index(i),
                ip,
                &mut errors,
            );
        }
        for (i, range) in spec
            .load_balancer_source_ranges
            .iter()
            .flatten()
            .enumerate()
        {
            let range_path = path.child("loadBalancerSourceRanges").index(i);
            if service_type != "LoadBalancer" {
                errors.push(Error::forbidden(
                    &range_path,
                    "may only be used when `type` is 'LoadBalancer'",
                ));
            } else {
                invalid_each(names::cidr(range.trim()), &range_path, range, &mut errors);
            }
        }
        errors
    }
}

/// What service and endpoint ports share: a DNS-label name, unique, required when there are
/// several ports; a port number; a protocol.
fn validate_named_port(
    name: Option<&str>,
    port: i32,
    protocol: Option<&str>,
    require_name: bool,
    path: &Path,
    names_seen: &mut BTreeSet<String>,
    errors: &mut ErrorList,
) {
    unique_name(
        name.unwrap_or_default(),
        require_name,
        names::dns1123_label,
        &path.child("name"),
        names_seen,
        errors,
    );
    for message in names::port_number(i64::from(port)) {
        errors.push(Error::invalid(&path.child("port"), port, &message));
    }
    one_of(
        protocol.unwrap_or_default(),
        &PROTOCOLS,
        &path.child("protocol"),
        errors,
    );
}

fn validate_service_port(
    port: &ServicePort,
    require_name: bool,
    path: &Path,
    names_seen: &mut BTreeSet<String>,
    errors: &mut ErrorList,
) {
    validate_named_port(
        port.name.as_deref(),
        port.port,
        port.protocol.as_deref(),
        require_name,
        path,
        names_seen,
        errors,
    );
    if let Some(target) = &port.target_port {
        port_number_or_name(target, &path.child("targetPort"), errors);
    }
    if let Some(app_protocol) = port.app_protocol.as_deref() {
        invalid_each(
            names::qualified_name(app_protocol),
            &path.child("appProtocol"),
            app_protocol,
            errors,
        );
    }
}

impl Validate for Endpoints {
    fn validate(&self) -> ErrorList {
        let mut errors = validate_metadata(self, NameRule::DnsSubdomain);
        for (i, subset) in self.subsets.iter().flatten().enumerate() {
            let subset_path = Path::new("subsets").index(i);
            let addresses = subset.addresses.as_deref().unwrap_or_default();
            let not_ready = subset.not_ready_addresses.as_deref().unwrap_or_default();
            if addresses.is_empty() && not_ready.is_empty() {
                errors.push(Error::required(
                    &subset_path,
                    "must specify `addresses` or `notReadyAddresses`",
                ));
            }
            for (field, list) in [("addresses", addresses), ("notReadyAddresses", not_ready)] {
                for (j, address) in list.iter().enumerate() {
                    let ip_path = subset_path.child(field).index(j).child("ip");
                    invalid_each(
                        names::ip_address(&address.ip),
                        &ip_path,
                        &address.ip,
                        &mut errors,
                    );
                    if let Some(hostname) = address.hostname.as_deref().filter(|h| !h.is_empty()) {
                        invalid_each(
                            names::dns1123_label(hostname),
                            &subset_path.child(field).index(j).child("hostname"),
                            hostname,
                            &mut errors,
                        );
                    }
                }
            }
            let ports = subset.ports.as_deref().unwrap_or_default();
            let mut names_seen = BTreeSet::new();
            for (j, port) in ports.iter().enumerate() {
                validate_endpoint_port(
                    port,
                    ports.len() > 1,
                    &subset_path.child("ports").index(j),
                    &mut names_seen,
                    &mut errors,
                );
            }
        }
        errors
    }
}

fn validate_endpoint_port(
    port: &EndpointPort,
    require_name: bool,
    path: &Path,
    names_seen: &mut BTreeSet<String>,
    errors: &mut ErrorList,
) {
    validate_named_port(
        port.name.as_deref(),
        port.port,
        port.protocol.as_deref(),
        require_name,
        path,
        names_seen,
        errors,
    );
}
