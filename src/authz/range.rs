//! An IP address range in CIDR form.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP address range: an address and how many of its leading bits a
/// caller's address must share (`10.0.0.0/8`, `fd00::/8`; a bare
/// address is the range of that one address).
///
/// ```
/// use sinew::authz::IpRange;
///
/// let range: IpRange = "10.1.0.0/16".parse().unwrap();
/// assert!(range.contains("10.1.2.3".parse().unwrap()));
/// assert!(!range.contains("10.2.0.1".parse().unwrap()));
/// // An IPv4-mapped IPv6 address is the IPv4 address it maps.
/// assert!(range.contains("::ffff:10.1.0.9".parse().unwrap()));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpRange {
    address: IpAddr,
    prefix_len: u8,
}

impl IpRange {
    /// The range of addresses sharing the first `prefix_len` bits of
    /// `address`; `None` when `prefix_len` is longer than the address.
    pub fn new(address: IpAddr, prefix_len: u8) -> Option<Self> {
        let max = if address.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return None;
        }
        match (address, address.to_canonical()) {
            // An IPv4-mapped range is the IPv4 range it maps: its length
            // counts from the 96 bits of the mapping prefix, and a shorter
            // one would cover more than mapped addresses.
            (IpAddr::V6(_), IpAddr::V4(v4)) => Some(Self {
                address: IpAddr::V4(v4),
                prefix_len: prefix_len.checked_sub(96)?,
            }),
            (address, _) => Some(Self {
                address,
                prefix_len,
            }),
        }
    }

    /// Whether `address` is in the range.
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.address, address.to_canonical()) {
            (IpAddr::V4(range), IpAddr::V4(ip)) => shares_prefix(
                u32::from(range).into(),
                u32::from(ip).into(),
                32,
                self.prefix_len,
            ),
            (IpAddr::V6(range), IpAddr::V6(ip)) => {
                shares_prefix(u128::from(range), u128::from(ip), 128, self.prefix_len)
            }
            _ => false,
        }
    }
}

fn shares_prefix(range: u128, ip: u128, width: u32, prefix_len: u8) -> bool {
    let prefix_len = u32::from(prefix_len);
    if prefix_len == 0 {
        return true;
    }
    let shift = width - prefix_len;
    (range >> shift) == (ip >> shift)
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (address, prefix_len) = match s.split_once('/') {
            Some((address, len)) => (
                address,
                Some(
                    len.parse::<u8>()
                        .map_err(|_| format!("`{s}`: the prefix length is not a number"))?,
                ),
            ),
            None => (s, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("`{s}`: not an IP address or a CIDR range"))?;
        let full = if address.is_ipv4() { 32 } else { 128 };
        let prefix_len = prefix_len.unwrap_or(full);
        Self::new(address, prefix_len).ok_or_else(|| match prefix_len > full {
            true => format!("`{s}`: the prefix length is longer than the address"),
            false => format!(
                "`{s}`: an IPv4-mapped range needs a prefix length of at least 96 (the mapping's)"
            ),
        })
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let all: IpRange = "0.0.0.0/0".parse().unwrap_or_else(|e| unreachable!("{e}"));
        assert!(all.contains("192.168.1.1".parse().unwrap_or_else(|_| unreachable!())));
        let one: IpRange = "fd00::1".parse().unwrap_or_else(|e| unreachable!("{e}"));
        assert!(one.contains("fd00::1".parse().unwrap_or_else(|_| unreachable!())));
        assert!(!one.contains("fd00::2".parse().unwrap_or_else(|_| unreachable!())));
        // IPv4-mapped ranges are the IPv4 ranges they map.
        let mapped: IpRange = "::ffff:10.0.0.0/104"
            .parse()
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        assert!(mapped.contains("10.9.9.9".parse().unwrap_or_else(|_| unreachable!())));
        assert!(!mapped.contains("11.0.0.1".parse().unwrap_or_else(|_| unreachable!())));
        let one: IpRange = "::ffff:10.1.2.3"
            .parse()
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(one.contains("10.1.2.3".parse().unwrap_or_else(|_| unreachable!())));
        assert!(!one.contains("10.1.2.4".parse().unwrap_or_else(|_| unreachable!())));
        assert!("::ffff:10.0.0.0/95".parse::<IpRange>().is_err());
        assert!("10.0.0.0/33".parse::<IpRange>().is_err());
        assert!("10.0.0/8".parse::<IpRange>().is_err());
        assert!("10.0.0.0/x".parse::<IpRange>().is_err());
    }
}
