//! Identities: who a node is ([`NodeId`], incarnation) is separate from where
//! it can be reached ([`Addr`], opaque data the runtime interprets).

use compact_str::CompactString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A node's stable identity: 128 random bits (later derived from its public
/// key). Unlike upstream MPREG it is never a URL, so a node keeps its identity
/// across address changes and behind NAT.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct NodeId(u128);

impl NodeId {
    /// The id with the given 128-bit value.
    pub const fn from_u128(v: u128) -> NodeId {
        NodeId(v)
    }

    /// The 128-bit value.
    pub const fn as_u128(self) -> u128 {
        self.0
    }

    /// The top `bits` bits (≤ 32) of the id: its bucket in a range digest.
    pub(crate) fn prefix(self, bits: u32) -> usize {
        if bits == 0 {
            0
        } else {
            (self.0 >> (128 - bits)) as usize
        }
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", (self.0 >> 96) as u32)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl std::str::FromStr for NodeId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u128::from_str_radix(s, 16).map(NodeId)
    }
}

// Fixed 16 bytes on the wire (a varint would take 19 for random ids).
impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.to_be_bytes().serialize(s)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <[u8; 16]>::deserialize(d).map(|b| NodeId(u128::from_be_bytes(b)))
    }
}

/// A transport address, opaque to the core (`ws://10.0.0.5:7000`,
/// `quic://…`, `sim://17`). Short addresses are stored inline.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Addr(CompactString);

impl Addr {
    /// An address from any string.
    pub fn new(s: impl AsRef<str>) -> Addr {
        Addr(CompactString::new(s.as_ref()))
    }

    /// The address as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The parts of a transport URL, `scheme://host:port[/path]` (IPv6 hosts
/// in brackets): the one parser every runtime and the configuration use.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct Url<'a> {
    /// `ws`, `quic`, … (lowercase).
    pub scheme: &'a str,
    /// `host:port` as written.
    pub authority: &'a str,
    /// The host, without IPv6 brackets.
    pub host: &'a str,
    /// The port (0 only from [`Url::parse`]: "any free port").
    pub port: u16,
    /// What follows the authority's `/` (empty if nothing).
    pub path: &'a str,
}

impl Addr {
    /// The address as a URL a peer can dial, if it is one (`None` for
    /// `sim://3`-style addresses without a port, port 0, and anything
    /// malformed).
    pub fn url(&self) -> Option<Url<'_>> {
        Url::parse(&self.0).filter(|u| u.port != 0)
    }
}

impl<'a> Url<'a> {
    /// Parses `scheme://host:port[/path]`; port 0 is allowed here (a
    /// listen address: any free port).
    pub fn parse(s: &'a str) -> Option<Url<'a>> {
        let (scheme, rest) = s.trim().split_once("://")?;
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_lowercase())
            && scheme
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = authority.rsplit_once(':')?;
        let host = match host.strip_prefix('[') {
            Some(h) => h.strip_suffix(']')?,
            None if host.contains(':') => return None,
            None => host,
        };
        let port: u16 = port.parse().ok()?;
        (scheme_ok && !host.is_empty()).then_some(Url {
            scheme,
            authority,
            host,
            port,
            path,
        })
    }
}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Addr {
    fn from(s: &str) -> Addr {
        Addr::new(s)
    }
}

impl From<String> for Addr {
    fn from(s: String) -> Addr {
        Addr(CompactString::from(s))
    }
}

#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for Addr {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        // A small address space so fuzzed peers collide with known ones.
        Ok(Addr::new(format!("sim://{}", u.int_in_range(0..=7u8)?)))
    }
}

/// A node's incarnation: raised by the node itself to refute suspicion and
/// on every restart; members are ordered by it first.
pub type Incarnation = u64;

/// A call's identity, unique cluster-wide: the caller, the caller's
/// incarnation and a per-incarnation sequence number. Executors deduplicate
/// on it, so a resent request never runs a handler twice.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct CallId {
    /// The node that issued the call.
    pub origin: NodeId,
    /// The origin's incarnation when it issued the call.
    pub incarnation: Incarnation,
    /// Sequence number within that incarnation.
    pub seq: u64,
}

impl fmt::Debug for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}/{}/{}", self.origin, self.incarnation, self.seq)
    }
}

/// Identifies one invocation of a handler on this node: the runtime receives
/// it in [`Order::Invoke`](crate::Order::Invoke) and hands it back in
/// [`Node::complete_invocation`](crate::Node::complete_invocation).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct InvocationId(pub u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_sixteen_bytes_on_the_wire() {
        let id = NodeId::from_u128(u128::MAX - 7);
        let bytes = postcard::to_stdvec(&id).unwrap();
        assert_eq!(bytes.len(), 16);
        assert_eq!(postcard::from_bytes::<NodeId>(&bytes).unwrap(), id);
        assert_eq!(id.to_string().parse::<NodeId>().unwrap(), id);
        assert_eq!(id.prefix(4), 15);
        assert_eq!(NodeId::from_u128(1).prefix(8), 0);
    }

    #[test]
    fn urls_parse_in_one_place() {
        let a = Addr::new("quic://127.0.0.1:7000/sha256=ab");
        let u = a.url().unwrap();
        assert_eq!(
            (u.scheme, u.authority, u.host, u.port, u.path),
            ("quic", "127.0.0.1:7000", "127.0.0.1", 7000, "sha256=ab")
        );
        let b = Addr::new("ws://[::1]:9");
        let u = b.url().unwrap();
        assert_eq!(
            (u.host, u.port, u.path, u.authority),
            ("::1", 9, "", "[::1]:9")
        );
        for bad in [
            "ws://a",
            "ws://:1",
            "ws://a:0",
            "ws://a:x/",
            "Ws://a:1",
            "a:1",
            "ws://::1:9",
            "sim://3",
            "",
            "conn:7",
        ] {
            assert_eq!(Addr::new(bad).url(), None, "{bad}");
        }
    }

    #[test]
    fn short_addresses_are_inline() {
        assert_eq!(std::mem::size_of::<Addr>(), 24);
        let a = Addr::from("ws://127.0.0.1:65535");
        assert!(!a.0.is_heap_allocated());
    }
}
