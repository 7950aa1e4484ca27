//! `sinew config`: what a client of some services sees from the control
//! plane.

use crate::args::Config;
use crate::output;
use std::process::ExitCode;
use tokio::time::Instant;

pub(crate) async fn run(config: Config) -> Result<ExitCode, String> {
    let mesh = crate::mesh(&config.source, config.wait).await?;
    for service in &config.services {
        // A client subscribes to its service's configuration.
        let _ = mesh.http_client::<http_body_util::Empty<bytes::Bytes>>(service);
    }
    let deadline = Instant::now() + config.wait;
    let mut versions = mesh.versions();
    // Until every subscribed resource has an answer, or the wait is over.
    loop {
        let settled = mesh.xds_status().is_some_and(|s| {
            !s.resources.is_empty()
                && s.resources
                    .iter()
                    .all(|r| r.state != sinew::xds::ResourceState::Requested)
        });
        if settled {
            break;
        }
        let tick = (Instant::now() + std::time::Duration::from_millis(100)).min(deadline);
        if tokio::time::timeout_at(tick, versions.changed())
            .await
            .is_err()
            && Instant::now() >= deadline
        {
            break;
        }
    }
    let report = serde_json::json!({
        "status": mesh.xds_status(),
        "config": mesh.snapshot().to_config(),
    });
    output::print(&format!("{report:#}\n"))?;
    Ok(ExitCode::SUCCESS)
}
