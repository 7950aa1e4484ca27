//! OTLP's `MetricsService/Export`, served on the xDS listener: the same
//! port, the same mutual TLS and connection caps as ADS. Over mutual TLS,
//! a process may report only as the service of its certificate, and only
//! edges it was on: its own calls out (`outbound`, source = itself) and
//! the calls it received (`inbound`, destination = itself). Other edges of
//! the export are left out and said so in OTLP's partial success.

use super::Telemetry;
use super::window::Key;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    metrics_service_server::MetricsService,
};
use sinew::telemetry::edges::Direction;
use tonic::{Request, Response, Status};

/// The OTLP metrics service.
#[derive(Debug)]
pub(crate) struct Intake {
    pub(crate) telemetry: Telemetry,
    /// Whether clients present certificates (xDS over mutual TLS).
    pub(crate) mtls: bool,
}

impl Intake {
    fn export(
        &self,
        request: &Request<ExportMetricsServiceRequest>,
    ) -> Result<ExportMetricsServiceResponse, Status> {
        let spiffe_id = request
            .extensions()
            .get::<crate::PeerInfo>()
            .and_then(|p| p.spiffe_id.clone());
        if self.mtls && spiffe_id.is_none() {
            return Err(Status::unauthenticated(
                "a client certificate of the mesh is required",
            ));
        }
        let max_points = self.telemetry.options.max_data_points;
        let reports = super::parse::parse(request.get_ref(), max_points)?;
        let mut rejected = 0u64;
        let mut outside = None;
        let mut kept = Vec::with_capacity(reports.len());
        for mut report in reports {
            if let Some(id) = &spiffe_id {
                let service = crate::node_identity::service_of(id);
                if report.service != service {
                    return Err(Status::permission_denied(format!(
                        "{}: `{}` is not `{service}`, the service of the client certificate ({id})",
                        report.service_field, report.service
                    )));
                }
                report.edges.retain(|key, _| {
                    let ours = on_edge(key, service);
                    if !ours {
                        rejected += 1;
                        outside.get_or_insert_with(|| {
                            format!(
                                "edge {} -> {} ({}): `{service}` was on neither side of it",
                                key.source,
                                key.destination,
                                key.direction.as_str()
                            )
                        });
                    }
                    ours
                });
            }
            kept.push(report);
        }
        let reports = kept.len() as u64;
        for (i, report) in kept.into_iter().enumerate() {
            // The rejected edges counted once per export.
            self.telemetry
                .apply(report, if i == 0 { rejected } else { 0 });
        }
        if reports == 0 {
            self.telemetry.lock().counts.exports += 1;
        }
        Ok(ExportMetricsServiceResponse {
            partial_success: outside.map(|error_message| ExportMetricsPartialSuccess {
                // Two data points per edge: its histogram and its failures.
                rejected_data_points: (rejected * 2) as i64,
                error_message,
            }),
        })
    }
}

/// Whether `service` was on `key`'s side it reports.
fn on_edge(key: &Key, service: &str) -> bool {
    match key.direction {
        Direction::Outbound => key.source == service,
        Direction::Inbound => key.destination == service,
    }
}

#[tonic::async_trait]
impl MetricsService for Intake {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        match Intake::export(self, &request) {
            Ok(response) => Ok(Response::new(response)),
            Err(status) => {
                tracing::debug!(%status, "telemetry export refused");
                self.telemetry.rejected();
                Err(status)
            }
        }
    }
}
