//! Defaults of Services and Endpoints (Kubernetes' `SetDefaults_Service`, `SetDefaults_Endpoints`).

use k8s_openapi::api::core::v1::{ClientIPConfig, Endpoints, Service, SessionAffinityConfig};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::SetDefaults;

/// How long a `ClientIP` session affinity lasts by default (three hours).
pub const DEFAULT_CLIENT_IP_SESSION_TIMEOUT_SECONDS: i32 = 10_800;

impl SetDefaults for Service {
    fn set_defaults(&mut self) {
        let Some(spec) = &mut self.spec else {
            return;
        };
        let affinity = spec
            .session_affinity
            .get_or_insert_with(|| "None".to_owned());
        if affinity == "ClientIP" {
            let config = spec
                .session_affinity_config
                .get_or_insert_with(SessionAffinityConfig::default);
            let client_ip = config.client_ip.get_or_insert_with(ClientIPConfig::default);
            client_ip
                .timeout_seconds
                .get_or_insert(DEFAULT_CLIENT_IP_SESSION_TIMEOUT_SECONDS);
        }
        let service_type = spec
            .type_
            .get_or_insert_with(|| "ClusterIP".to_owned())
            .clone();
        for port in spec.ports.iter_mut().flatten() {
            port.protocol.get_or_insert_with(|| "TCP".to_owned());
            let unset = match &port.target_port {
                None => true,
                Some(IntOrString::Int(0)) => true,
                Some(IntOrString::String(name)) => name.is_empty(),
                Some(IntOrString::Int(_)) => false,
            };
            if unset {
                port.target_port = Some(IntOrString::Int(port.port));
            }
        }
        if matches!(service_type.as_str(), "NodePort" | "LoadBalancer") {
            spec.external_traffic_policy
                .get_or_insert_with(|| "Cluster".to_owned());
        }
        if service_type != "ExternalName" {
            spec.internal_traffic_policy
                .get_or_insert_with(|| "Cluster".to_owned());
        }
        if service_type == "LoadBalancer" {
            spec.allocate_load_balancer_node_ports.get_or_insert(true);
        }
    }
}

impl SetDefaults for Endpoints {
    fn set_defaults(&mut self) {
        for subset in self.subsets.iter_mut().flatten() {
            for port in subset.ports.iter_mut().flatten() {
                port.protocol.get_or_insert_with(|| "TCP".to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

    #[test]
    fn service_defaults_follow_kubernetes() {
        let mut service = Service {
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    port: 80,
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        service.set_defaults();
        let spec = service.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.session_affinity.as_deref(), Some("None"));
        assert_eq!(spec.internal_traffic_policy.as_deref(), Some("Cluster"));
        assert!(spec.external_traffic_policy.is_none());
        let port = &spec.ports.unwrap()[0];
        assert_eq!(port.protocol.as_deref(), Some("TCP"));
        assert_eq!(port.target_port, Some(IntOrString::Int(80)));
    }
}
