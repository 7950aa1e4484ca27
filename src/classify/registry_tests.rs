//! The registry of named classifiers, and a registered classifier at work
//! in the retry and breaker layers.

use super::{Classifiers, Classify, DEFAULT_CLASSIFIER, Outcome, StatusClassifier};
use crate::breaker::{BreakerConfig, BreakerLayer, BreakerOpen, State};
use crate::config::MeshConfig;
use crate::error::BoxError;
use crate::retry::{ReplayBody, RetryConfig, RetryLayer};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Empty;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tower::{Layer, ServiceExt};

/// Takes a 404 for a retryable failure (a resource still replicating,
/// say); defers to the default otherwise.
struct NotFoundFails;

impl Classify for NotFoundFails {
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Option<Outcome> {
        if status == StatusCode::NOT_FOUND {
            return Some(Outcome::Failure { retryable: true });
        }
        StatusClassifier::default().classify_response(status, headers)
    }

    fn classify_trailers(&self, trailers: Option<&HeaderMap>) -> Outcome {
        StatusClassifier::default().classify_trailers(trailers)
    }

    fn classify_error(&self, error: &(dyn std::error::Error + 'static)) -> Outcome {
        StatusClassifier::default().classify_error(error)
    }
}

fn registered() -> Classifiers {
    let mut classifiers = Classifiers::default();
    classifiers
        .insert("not-found.fails_v1", NotFoundFails)
        .unwrap_or_else(|e| unreachable!("{e}"));
    classifiers
}

#[test]
fn the_default_is_there_from_the_start_and_names_are_checked() {
    let classifiers = Classifiers::default();
    assert_eq!(
        classifiers.names().collect::<Vec<_>>(),
        [DEFAULT_CLASSIFIER]
    );
    let default = classifiers.select(None);
    assert_eq!(
        default.map(|c| c.classify_response(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new())),
        Some(Some(Outcome::Failure { retryable: true }))
    );
    assert!(classifiers.get("nope").is_none());
    assert!(classifiers.select(Some("nope")).is_none());

    let mut classifiers = registered();
    assert_eq!(
        classifiers
            .get("not-found.fails_v1")
            .map(|c| c.classify_response(StatusCode::NOT_FOUND, &HeaderMap::new())),
        Some(Some(Outcome::Failure { retryable: true }))
    );
    for bad in ["", "two words", "a/b", &"x".repeat(129)] {
        let err = classifiers.insert(bad, NotFoundFails).err();
        assert_eq!(
            err.as_ref().map(|e| e.field()),
            Some("classifier"),
            "{bad:?}"
        );
        assert!(
            err.is_some_and(|e| e
                .message()
                .starts_with(&format!("{bad:?} is not a valid name"))),
            "{bad:?}"
        );
    }
    assert!(classifiers.insert("x".repeat(128), NotFoundFails).is_ok());

    // Replacing the default replaces what an unset field selects; a
    // clone taken before keeps what it had.
    let before = classifiers.clone();
    classifiers
        .insert(DEFAULT_CLASSIFIER, NotFoundFails)
        .unwrap_or_else(|e| unreachable!("{e}"));
    let not_found = |c: &Classifiers| {
        c.select(None)
            .and_then(|c| c.classify_response(StatusCode::NOT_FOUND, &HeaderMap::new()))
    };
    assert_eq!(
        not_found(&classifiers),
        Some(Outcome::Failure { retryable: true })
    );
    assert_eq!(not_found(&before), Some(Outcome::Success));
}

#[test]
fn check_names_each_field_that_selects_an_unregistered_classifier() {
    let classifiers = registered();
    let check = |yaml: &str| {
        let config = MeshConfig::from_yaml(yaml).unwrap_or_else(|e| unreachable!("{e}"));
        classifiers.check(&config).err().map(|e| e.to_string())
    };
    let mesh = |route: &str, cluster: &str| {
        format!(
            "services:\n  reviews:\n    routes:\n      - split: [{{ cluster: pool }}]\n      - split: [{{ cluster: pool }}]\n        classifier: {route}\nclusters:\n  pool:\n    classifier: {cluster}\n    endpoints: []\n"
        )
    };
    assert_eq!(check(&mesh("not-found.fails_v1", "default")), None);
    assert_eq!(
        check(&mesh("retry-5xx", "default")).as_deref(),
        Some(
            r#"services.reviews.routes[1].classifier: no classifier named "retry-5xx" is registered"#
        )
    );
    assert_eq!(
        check(&mesh("default", "strict")).as_deref(),
        Some(r#"clusters.pool.classifier: no classifier named "strict" is registered"#)
    );
    assert_eq!(check("clusters:\n  pool: { endpoints: [] }\n"), None);
}

type Reply = Result<Response<Empty<Bytes>>, BoxError>;

fn replying(status: StatusCode) -> Reply {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    Ok(response)
}

#[tokio::test(start_paused = true)]
async fn a_registered_classifier_decides_in_the_retry_layer() {
    let classifier = registered().get("not-found.fails_v1");
    let Some(classifier) = classifier else {
        unreachable!("registered")
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    // 404 first, then 200.
    let server = tower::service_fn(move |_: Request<ReplayBody<Empty<Bytes>>>| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            replying(if n == 0 {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            })
        }
    });
    let config = RetryConfig {
        backoff: crate::retry::BackoffConfig {
            jitter: 0.0,
            ..Default::default()
        },
        ..RetryConfig::default()
    };
    let retry = RetryLayer::with_classifier(config.clone(), classifier)
        .unwrap_or_else(|e| unreachable!("{e}"));
    let response = retry
        .layer(server.clone())
        .oneshot(
            Request::get("/")
                .body(Empty::<Bytes>::new())
                .unwrap_or_default(),
        )
        .await
        .map(|r| r.status());
    assert_eq!(response.ok(), Some(StatusCode::OK));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the 404 was retried");

    // The default classifier takes the 404 as an answer.
    calls.store(0, Ordering::SeqCst);
    let default = RetryLayer::new(config).unwrap_or_else(|e| unreachable!("{e}"));
    let response = default
        .layer(server)
        .oneshot(
            Request::get("/")
                .body(Empty::<Bytes>::new())
                .unwrap_or_default(),
        )
        .await
        .map(|r| r.status());
    assert_eq!(response.ok(), Some(StatusCode::NOT_FOUND));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_registered_classifier_decides_in_the_breaker_layer() {
    let classifiers = registered();
    let config = BreakerConfig {
        consecutive_failures: Some(2),
        failure_rate: None,
        open_for: Duration::from_secs(1),
        half_open_probes: 1,
    };
    let server = tower::service_fn(|_: Request<()>| async { replying(StatusCode::NOT_FOUND) });
    for (name, trips) in [("not-found.fails_v1", true), (DEFAULT_CLASSIFIER, false)] {
        let Some(classifier) = classifiers.get(name) else {
            unreachable!("registered")
        };
        let breaker = BreakerLayer::with_classifier(config, classifier)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let svc = breaker.layer(server);
        for _ in 0..2 {
            let status = svc
                .clone()
                .oneshot(Request::new(()))
                .await
                .map(|r| r.status());
            assert_eq!(status.ok(), Some(StatusCode::NOT_FOUND), "{name}");
        }
        let third = svc.clone().oneshot(Request::new(())).await;
        assert_eq!(
            third.as_ref().err().is_some_and(|e| e.is::<BreakerOpen>()),
            trips,
            "{name}"
        );
        let expected = if trips { State::Open } else { State::Closed };
        assert_eq!(breaker.state(), expected, "{name}");
    }
}
