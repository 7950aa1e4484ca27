use super::{Classify, Outcome, StatusClassifier};
use crate::error::ConfigError;
use http::{HeaderMap, StatusCode};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The name of the classifier every registry starts with.
pub const DEFAULT_CLASSIFIER: &str = "default";

/// The longest classifier name.
pub const MAX_NAME_LEN: usize = 128;

/// Outcome classifiers by name: the application registers them in code,
/// and the configuration selects one by name for a route (its retry or
/// hedging policy) or a cluster (its breaker and outlier detection).
///
/// Starts with one, [`DEFAULT_CLASSIFIER`] (`"default"`), the default
/// [`StatusClassifier`]; registering another under that name replaces it.
/// Cheap to clone: clones share the classifiers (a change to one copies
/// the map, never a classifier).
///
/// ```
/// use sinew::classify::{Classifiers, StatusClassifier};
/// use sinew::config::MeshConfig;
///
/// let mut classifiers = Classifiers::default();
/// classifiers.insert(
///     "retry-500",
///     StatusClassifier::default().retry_on_status(http::StatusCode::INTERNAL_SERVER_ERROR),
/// )?;
/// assert!(classifiers.get("retry-500").is_some());
///
/// let config = MeshConfig::from_yaml(
///     "clusters:\n  pool:\n    classifier: retry-5xx\n    endpoints: []\n",
/// )?;
/// let err = classifiers.check(&config).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     r#"clusters.pool.classifier: no classifier named "retry-5xx" is registered"#
/// );
/// # Ok::<(), sinew::error::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Classifiers {
    by_name: Arc<BTreeMap<String, Arc<dyn Classify>>>,
}

impl Default for Classifiers {
    fn default() -> Self {
        let mut by_name: BTreeMap<String, Arc<dyn Classify>> = BTreeMap::new();
        by_name.insert(
            DEFAULT_CLASSIFIER.to_owned(),
            Arc::new(StatusClassifier::default()),
        );
        Self {
            by_name: Arc::new(by_name),
        }
    }
}

impl std::fmt::Debug for Classifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_name.keys()).finish()
    }
}

impl Classifiers {
    /// Registers `classifier` as `name`, replacing any classifier of that
    /// name. A name is 1 to 128 characters of letters, digits, `.`, `_`
    /// and `-`; another is refused, naming it.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        classifier: impl Classify,
    ) -> Result<(), ConfigError> {
        let name = name.into();
        check_name(&name).map_err(|message| {
            ConfigError::new(
                "classifier",
                format!("{name:?} is not a valid name: {message}"),
            )
        })?;
        Arc::make_mut(&mut self.by_name).insert(name, Arc::new(classifier));
        Ok(())
    }

    /// The classifier registered as `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Classify>> {
        self.by_name.get(name).cloned()
    }

    /// The classifier a configuration's `classifier` field selects: the
    /// one registered as `name`, or the [`DEFAULT_CLASSIFIER`] when the
    /// field is unset. `None` only for a name not registered, which
    /// [`Classifiers::check`] refuses before a configuration is in force.
    pub fn select(&self, name: Option<&str>) -> Option<Arc<dyn Classify>> {
        match name {
            Some(name) => self.get(name),
            None => Some(
                self.get(DEFAULT_CLASSIFIER)
                    .unwrap_or_else(|| Arc::new(StatusClassifier::default())),
            ),
        }
    }

    /// The registered names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.by_name.keys().map(String::as_str)
    }

    /// Checks that every classifier `config` names is registered; the
    /// error names the first field that names one that is not
    /// (`clusters.pool.classifier`, `services.reviews.routes[1].classifier`).
    #[cfg(feature = "config")]
    pub fn check(&self, config: &crate::config::MeshConfig) -> Result<(), ConfigError> {
        let unknown = |field: String, name: &str| {
            ConfigError::new(field, format!("no classifier named {name:?} is registered"))
        };
        for (name, cluster) in &config.clusters {
            if let Some(classifier) = &cluster.classifier
                && !self.by_name.contains_key(classifier)
            {
                return Err(unknown(format!("clusters.{name}.classifier"), classifier));
            }
        }
        for (name, service) in &config.services {
            for (i, route) in service.routes.iter().enumerate() {
                if let Some(classifier) = &route.classifier
                    && !self.by_name.contains_key(classifier)
                {
                    return Err(unknown(
                        format!("services.{name}.routes[{i}].classifier"),
                        classifier,
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether `name` can name a classifier: 1 to [`MAX_NAME_LEN`] bytes of
/// `[A-Za-z0-9_.-]`. The error says what a name must be.
pub(crate) fn check_name(name: &str) -> Result<(), &'static str> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err("classifier names are 1 to 128 characters of letters, digits, '.', '_' and '-'")
    }
}

/// A shared classifier classifies as the one it shares, so that a
/// registered `Arc<dyn Classify>` goes straight into
/// [`RetryLayer::with_classifier`](crate::retry::RetryLayer::with_classifier)
/// or [`BreakerLayer::with_classifier`](crate::breaker::BreakerLayer::with_classifier).
impl<C: Classify + ?Sized> Classify for Arc<C> {
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Option<Outcome> {
        (**self).classify_response(status, headers)
    }

    fn classify_trailers(&self, trailers: Option<&HeaderMap>) -> Outcome {
        (**self).classify_trailers(trailers)
    }

    fn classify_error(&self, error: &(dyn std::error::Error + 'static)) -> Outcome {
        (**self).classify_error(error)
    }
}
