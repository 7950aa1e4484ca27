//! Which endpoints of a cluster take traffic: priority failover, local
//! zone preference and the panic threshold, with Envoy's meaning
//! simplified to whole levels and zones.
//!
//! 1. Priority: the first level (0, then 1, ...) whose available share
//!    (healthy and not ejected) reaches `failover_threshold_percent` takes
//!    the traffic. If none does, all available endpoints share it, lower
//!    levels first in the sense that they are all included.
//! 2. Local zone: within that set, when `prefer_local_zone` is on and the
//!    caller's zone has an available share at the threshold, only the
//!    caller's zone takes traffic.
//! 3. Panic: when fewer than `panic_threshold_percent` of the cluster's
//!    endpoints are available, health is ignored and every endpoint takes
//!    traffic, rather than overloading the few.

use crate::config::{Locality, LocalityLbConfig};

/// What selection needs to know of one endpoint.
#[derive(Clone, Debug)]
pub(super) struct Candidate<'a> {
    pub(super) priority: u32,
    pub(super) locality: &'a Locality,
    pub(super) available: bool,
}

fn reaches(available: usize, total: usize, percent: u32) -> bool {
    total > 0 && available * 100 >= total * percent as usize
}

/// Indices of the endpoints that take traffic.
pub(super) fn select(
    candidates: &[Candidate<'_>],
    settings: &LocalityLbConfig,
    local: Option<&Locality>,
) -> Vec<usize> {
    let total = candidates.len();
    let available = candidates.iter().filter(|c| c.available).count();
    if available == 0 || !reaches(available, total, settings.panic_threshold_percent) {
        return (0..total).collect();
    }
    // Per priority level, its endpoints and those available: one pass,
    // whatever the number of levels (a control plane may send one level
    // per endpoint).
    let mut levels: std::collections::BTreeMap<u32, (usize, usize)> = Default::default();
    for c in candidates {
        let (n, up) = levels.entry(c.priority).or_default();
        *n += 1;
        *up += usize::from(c.available);
    }
    let level = levels
        .iter()
        .find(|(_, (n, up))| reaches(*up, *n, settings.failover_threshold_percent))
        .map(|(&p, _)| p);
    let chosen: Vec<usize> = (0..total)
        .filter(|&i| candidates[i].available && level.is_none_or(|p| candidates[i].priority == p))
        .collect();
    let Some(local) = local.filter(|_| settings.prefer_local_zone) else {
        return chosen;
    };
    let in_zone = |i: &usize| candidates[*i].locality == local;
    let zone_total = (0..total)
        .filter(|i| in_zone(i) && level.is_none_or(|p| candidates[*i].priority == p))
        .count();
    let zone: Vec<usize> = chosen.iter().copied().filter(in_zone).collect();
    if !zone.is_empty() && reaches(zone.len(), zone_total, settings.failover_threshold_percent) {
        zone
    } else {
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(z: &str) -> Locality {
        Locality {
            region: "eu".into(),
            zone: z.into(),
        }
    }

    #[test]
    fn prefers_the_local_zone_then_fails_over() {
        let (a, b) = (zone("a"), zone("b"));
        let settings = LocalityLbConfig::default();
        let mut c = vec![
            Candidate {
                priority: 0,
                locality: &a,
                available: true,
            },
            Candidate {
                priority: 0,
                locality: &b,
                available: true,
            },
            Candidate {
                priority: 0,
                locality: &b,
                available: true,
            },
        ];
        assert_eq!(select(&c, &settings, Some(&a)), vec![0]);
        assert_eq!(select(&c, &settings, None), vec![0, 1, 2]);
        c[0].available = false;
        assert_eq!(
            select(&c, &settings, Some(&a)),
            vec![1, 2],
            "the local zone is down"
        );
    }

    #[test]
    fn priorities_fail_over_below_the_threshold() {
        let a = zone("a");
        let settings = LocalityLbConfig::default();
        let mut c: Vec<Candidate<'_>> = (0..6)
            .map(|i| Candidate {
                priority: u32::from(i >= 3),
                locality: &a,
                available: true,
            })
            .collect();
        assert_eq!(select(&c, &settings, None), vec![0, 1, 2]);
        c[0].available = false; // 2 of 3 = 66% < 70%
        assert_eq!(select(&c, &settings, None), vec![3, 4, 5]);
    }

    #[test]
    fn panics_when_too_few_are_available() {
        let a = zone("a");
        let settings = LocalityLbConfig::default();
        let c: Vec<Candidate<'_>> = (0..4)
            .map(|i| Candidate {
                priority: 0,
                locality: &a,
                available: i == 0,
            })
            .collect();
        assert_eq!(
            select(&c, &settings, None),
            vec![0, 1, 2, 3],
            "25% < 50%: use them all"
        );
    }

    #[test]
    fn a_level_per_endpoint_is_one_pass_not_a_pass_per_level() {
        // 100,000 endpoints each at its own priority, only the lowest
        // priority's one available (no panic routing): the last level is
        // the first to reach the failover threshold. A scan per level took
        // 5e9 steps.
        let a = zone("a");
        let n = 100_000;
        let candidates: Vec<Candidate<'_>> = (0..n)
            .map(|i| Candidate {
                priority: n as u32 - 1 - i as u32,
                locality: &a,
                available: i == 0,
            })
            .collect();
        let settings = LocalityLbConfig {
            panic_threshold_percent: 0,
            ..LocalityLbConfig::default()
        };
        assert_eq!(select(&candidates, &settings, None), vec![0]);
    }
}
