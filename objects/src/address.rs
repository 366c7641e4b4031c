//! Which IP addresses a material fetch may connect to. Everything outside the public
//! internet has a class (loopback, private, link-local, …); a class is refused unless the
//! operator allowed it (`KYC_MATERIAL_ALLOW_PRIVATE_ADDRESSES=loopback`). IPv6 forms that
//! carry an IPv4 address (mapped, NAT64, 6to4) are judged by the IPv4 address they carry,
//! so `::ffff:169.254.169.254` is as link-local as `169.254.169.254`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A range of addresses that is not the public internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918 (10/8, 172.16/12, 192.168/16), fc00::/7, fec0::/10, 64:ff9b:1::/48.
    Private,
    /// 169.254.0.0/16 (cloud metadata services live here), fe80::/10.
    LinkLocal,
    /// 100.64.0.0/10, carrier-grade NAT.
    Shared,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// Everything else that is not routable on the internet: 240/4, 192.0.0/24, 198.18/15,
    /// IPv4-compatible IPv6, 100::/64, 2001::/23 (Teredo, ORCHID, …).
    Reserved,
}

impl AddressClass {
    /// The classes an operator may allow; the others never make sense for a download.
    pub const ALLOWABLE: [AddressClass; 4] = [
        AddressClass::Loopback,
        AddressClass::Private,
        AddressClass::LinkLocal,
        AddressClass::Shared,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Shared => "shared",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Documentation => "documentation",
            AddressClass::Reserved => "reserved",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of `ip`, or `None` for a public address.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => AddressClass::Unspecified,
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => AddressClass::Private,
        (100, 64..=127, _) => AddressClass::Shared,
        (127, _, _) => AddressClass::Loopback,
        (169, 254, _) => AddressClass::LinkLocal,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => AddressClass::Documentation,
        (192, 0, 0) | (192, 88, 99) | (198, 18..=19, _) => AddressClass::Reserved,
        (224..=239, _, _) => AddressClass::Multicast,
        _ if ip == Ipv4Addr::BROADCAST => AddressClass::Broadcast,
        (240..=255, _, _) => AddressClass::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    if ip.is_unspecified() {
        return Some(AddressClass::Unspecified);
    }
    if ip.is_loopback() {
        return Some(AddressClass::Loopback);
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    Some(match s {
        // ::a.b.c.d, the deprecated IPv4-compatible form.
        [0, 0, 0, 0, 0, 0, _, _] => AddressClass::Reserved,
        // NAT64 well-known prefix: the IPv4 address it translates to decides.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return classify_v4(embedded(hi, lo)),
        [0x64, 0xff9b, 1, ..] => AddressClass::Private,
        [0x100, 0, 0, 0, ..] => AddressClass::Reserved,
        [0x2001, 0..=0x1ff, ..] => AddressClass::Reserved,
        [0x2001, 0xdb8, ..] => AddressClass::Documentation,
        // 6to4: the IPv4 relay address decides.
        [0x2002, hi, lo, ..] => return classify_v4(embedded(hi, lo)),
        [0x3fff, 0..=0x0fff, ..] => AddressClass::Documentation,
        [x, ..] if x & 0xfe00 == 0xfc00 => AddressClass::Private,
        [x, ..] if x & 0xffc0 == 0xfe80 => AddressClass::LinkLocal,
        [x, ..] if x & 0xffc0 == 0xfec0 => AddressClass::Private,
        [x, ..] if x & 0xff00 == 0xff00 => AddressClass::Multicast,
        _ => return None,
    })
}

/// The non-public address classes a deployment allows material fetches to reach.
/// Empty by default: materials come from the internet (or S3, which is not fetched this way).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allowed: Vec<AddressClass>,
}

/// An entry of `KYC_MATERIAL_ALLOW_PRIVATE_ADDRESSES` that is not an allowable class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("address class {0:?} cannot be allowed; use loopback, private, link-local or shared (comma-separated), or nothing")]
pub struct AddressPolicyError(pub String);

impl AddressPolicy {
    /// Parses a comma-separated list of class names (`loopback,private`); empty or `none`
    /// allows nothing.
    pub fn parse(list: &str) -> Result<Self, AddressPolicyError> {
        let mut allowed = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if name.eq_ignore_ascii_case("none") {
                continue;
            }
            let class = AddressClass::ALLOWABLE
                .into_iter()
                .find(|c| c.as_str().eq_ignore_ascii_case(name))
                .ok_or_else(|| AddressPolicyError(name.to_string()))?;
            if !allowed.contains(&class) {
                allowed.push(class);
            }
        }
        Ok(Self { allowed })
    }

    /// A policy allowing exactly these classes.
    pub fn allowing(classes: &[AddressClass]) -> Self {
        Self {
            allowed: classes.to_vec(),
        }
    }

    /// `Err(class)` when `ip` is in a class this policy does not allow.
    pub fn check(&self, ip: IpAddr) -> Result<(), AddressClass> {
        match classify(ip) {
            Some(class) if !self.allowed.contains(&class) => Err(class),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Option<AddressClass> {
        classify(s.parse().unwrap())
    }

    #[test]
    fn special_ipv4_ranges_have_a_class_and_public_ones_none() {
        use AddressClass::*;
        for (ip, want) in [
            ("127.0.0.1", Some(Loopback)),
            ("127.255.0.9", Some(Loopback)),
            ("10.0.0.1", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("192.168.1.1", Some(Private)),
            ("169.254.169.254", Some(LinkLocal)),
            ("100.64.0.1", Some(Shared)),
            ("100.127.255.254", Some(Shared)),
            ("0.0.0.0", Some(Unspecified)),
            ("224.0.0.1", Some(Multicast)),
            ("255.255.255.255", Some(Broadcast)),
            ("192.0.2.7", Some(Documentation)),
            ("198.51.100.7", Some(Documentation)),
            ("203.0.113.7", Some(Documentation)),
            ("198.18.0.1", Some(Reserved)),
            ("240.0.0.1", Some(Reserved)),
            ("192.0.0.8", Some(Reserved)),
            ("8.8.8.8", None),
            ("172.32.0.1", None),
            ("100.128.0.1", None),
            ("11.0.0.1", None),
        ] {
            assert_eq!(class(ip), want, "{ip}");
        }
    }

    #[test]
    fn ipv6_forms_that_carry_ipv4_are_judged_by_the_ipv4_address() {
        use AddressClass::*;
        for (ip, want) in [
            ("::1", Some(Loopback)),
            ("::", Some(Unspecified)),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:169.254.169.254", Some(LinkLocal)),
            ("::ffff:10.0.0.1", Some(Private)),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::a9fe:a9fe", Some(LinkLocal)),
            ("64:ff9b::808:808", None),
            ("2002:a9fe:a9fe::1", Some(LinkLocal)),
            ("2002:0808:0808::1", None),
            ("::127.0.0.1", Some(Reserved)),
            ("fc00::1", Some(Private)),
            ("fd12:3456::1", Some(Private)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            ("fec0::1", Some(Private)),
            ("ff02::1", Some(Multicast)),
            ("2001:db8::1", Some(Documentation)),
            ("2001::1", Some(Reserved)),
            ("100::1", Some(Reserved)),
            ("2606:4700::1111", None),
            ("2a00:1450::1", None),
        ] {
            assert_eq!(class(ip), want, "{ip}");
        }
    }

    #[test]
    fn a_policy_allows_only_the_classes_it_names() {
        let p = AddressPolicy::parse(" loopback , Private").unwrap();
        assert!(p.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check("10.1.2.3".parse().unwrap()).is_ok());
        assert!(p.check("8.8.8.8".parse().unwrap()).is_ok());
        assert_eq!(
            p.check("169.254.169.254".parse().unwrap()),
            Err(AddressClass::LinkLocal)
        );
        let none = AddressPolicy::parse("none").unwrap();
        assert_eq!(
            none.check("::ffff:127.0.0.1".parse().unwrap()),
            Err(AddressClass::Loopback)
        );
        assert_eq!(AddressPolicy::parse(""), Ok(AddressPolicy::default()));
        assert!(AddressPolicy::parse("multicast")
            .unwrap_err()
            .to_string()
            .contains("\"multicast\""));
        assert!(AddressPolicy::parse("everything").is_err());
    }
}
