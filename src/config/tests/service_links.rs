//! Service links against our own settings spelled under the prefix.

use super::is_service_link;

#[test]
fn recognises_every_link_and_none_of_our_settings() {
    for (name, value) in [
        ("DBSERVICE_SERVICE_HOST", "10.0.0.1"),
        ("DBSERVICE_SERVICE_PORT", "80"),
        ("DBSERVICE_SERVICE_PORT_HTTP", "80"),
        ("DBSERVICE_SERVICE_PORT_METRICS_PORT", "9090"),
        ("DBSERVICE_PORT", "tcp://10.0.0.1:80"),
        ("DBSERVICE_MANAGEMENT_PORT", "tcp://[fd00::1]:9090"),
        ("DBSERVICE_PORT_80_TCP", "tcp://10.0.0.1:80"),
        ("DBSERVICE_PORT_80_TCP_PROTO", "tcp"),
        ("DBSERVICE_PORT_80_TCP_PORT", "80"),
        ("DBSERVICE_PORT_80_TCP_ADDR", "10.0.0.1"),
        ("DBSERVICE_PORT_53_UDP_ADDR", "10.0.0.1"),
    ] {
        assert!(is_service_link(name, value), "{name}={value}");
    }
    for (name, value) in [
        ("DBSERVICE_PORT", "8080"),
        ("DBSERVICE_MANAGEMENT_PORT", "9090"),
        ("DBSERVICE_PORT", "http://10.0.0.1:80"),
        ("DBSERVICE_CONNECTION_LIMIT", "5"),
        ("DBSERVICE_PORT_80_HTTP", "x"),
        ("DBSERVICE_PORT_X_TCP", "x"),
    ] {
        assert!(!is_service_link(name, value), "{name}={value}");
    }
}
