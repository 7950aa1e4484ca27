//! SPIFFE names: a trust domain, and the workload IDs that belong to it
//! (`spiffe://<trust-domain>/ns/<namespace>/sa/<service>` by default).

/// The longest SPIFFE ID accepted, in bytes (the SPIFFE standard's bound
/// for URIs in X.509-SVIDs).
const MAX_ID_BYTES: usize = 2048;

/// A validated trust domain name, such as `cluster.local`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustDomain(String);

/// The trust domain used when none is given.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

impl TrustDomain {
    /// `name` if it is a valid trust domain: 1 to 255 characters of
    /// lowercase letters, digits, `.`, `-` and `_` (the SPIFFE standard).
    pub fn new(name: &str) -> Result<Self, String> {
        if name.is_empty() || name.len() > 255 {
            return Err(format!(
                "`{name}`: a trust domain is 1 to 255 characters long"
            ));
        }
        match name
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
        {
            Some(c) => Err(format!(
                "`{name}`: `{c}` is not allowed (lowercase letters, digits, `.`, `-`, `_`)"
            )),
            None => Ok(Self(name.to_owned())),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain's own SPIFFE ID, `spiffe://<name>`: a root's URI SAN.
    pub fn id(&self) -> String {
        format!("spiffe://{}", self.0)
    }

    /// The ID of service `service` in namespace `namespace`; the error
    /// names the field at fault.
    pub fn workload(
        &self,
        namespace: &str,
        service: &str,
    ) -> Result<String, (&'static str, String)> {
        check_segment(namespace).map_err(|e| ("namespace", e))?;
        check_segment(service).map_err(|e| ("service", e))?;
        Ok(format!("spiffe://{}/ns/{namespace}/sa/{service}", self.0))
    }

    /// Whether `id` is a workload ID in this trust domain: the spiffe
    /// scheme, this trust domain, and a non-empty path of valid segments.
    pub fn check_member(&self, id: &str) -> Result<(), String> {
        if id.len() > MAX_ID_BYTES {
            return Err(format!("over {MAX_ID_BYTES} bytes"));
        }
        let Some(rest) = id.strip_prefix("spiffe://") else {
            return Err(format!("`{id}` is not a spiffe:// URI"));
        };
        let (domain, path) = rest.split_once('/').unwrap_or((rest, ""));
        if domain != self.0 {
            return Err(format!("`{id}` is not in trust domain `{}`", self.0));
        }
        if path.is_empty() {
            return Err(format!("`{id}` names the trust domain, not a workload"));
        }
        for segment in path.split('/') {
            check_segment(segment).map_err(|e| format!("`{id}`: {e}"))?;
        }
        Ok(())
    }
}

impl std::fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A path segment: 1 to 255 of letters, digits, `.`, `-`, `_`, and not
/// `.` or `..`.
fn check_segment(segment: &str) -> Result<(), String> {
    if segment.is_empty() || segment.len() > 255 {
        return Err("a path segment is 1 to 255 characters long".to_owned());
    }
    if segment == "." || segment == ".." {
        return Err(format!("`{segment}` is not a path segment"));
    }
    match segment
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        Some(c) => Err(format!(
            "`{segment}`: `{c}` is not allowed (letters, digits, `.`, `-`, `_`)"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::TrustDomain;

    #[test]
    fn names_are_checked() {
        assert!(TrustDomain::new("cluster.local").is_ok());
        assert!(TrustDomain::new("").is_err());
        assert!(TrustDomain::new("Cluster.local").is_err());
        assert!(TrustDomain::new("a/b").is_err());
        let td = TrustDomain::new("example.org").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            td.workload("default", "reviews").as_deref(),
            Ok("spiffe://example.org/ns/default/sa/reviews")
        );
        assert_eq!(td.workload("a/b", "x").map_err(|e| e.0), Err("namespace"));
        assert!(td.check_member("spiffe://example.org/ns/a/sa/b").is_ok());
        assert!(td.check_member("spiffe://other.org/ns/a/sa/b").is_err());
        assert!(td.check_member("spiffe://example.org").is_err());
        assert!(td.check_member("spiffe://example.org/a//b").is_err());
        assert!(td.check_member("spiffe://example.org/a/../b").is_err());
        assert!(td.check_member("https://example.org/a").is_err());
    }
}
