//! Node identity keys and cluster admission.
//!
//! * **Identity.** Every node holds an ed25519 [`Keypair`]. Its
//!   [`NodeId`] is derived from the public key ([`PublicKey::node_id`]), so
//!   a cluster that checks keys cannot be joined under another node's id.
//! * **Admission.** A node with a policy ([`Admission`]: cluster secrets,
//!   an allow-list of public keys, or both) exchanges no state with a peer
//!   until the peer has proved, on that connection, that it holds the key
//!   its id derives from and that it passes the policy:
//!
//! ```text
//!   dialler                                   acceptor
//!   Hello, Identify{key, nonce_d}  ───────►
//!                                  ◄───────   Hello, Identify{key, nonce_a},
//!                                             Prove{sig(nonce_d), mac(nonce_d)}
//!   Prove{sig(nonce_a), mac(nonce_a)} ─────►
//!   (each side admits the other on a valid Prove for its own nonce)
//! ```
//!
//! A proof signs (and, with a cluster secret, MACs) a transcript of the
//! cluster id, the *verifier's* fresh nonce and the prover's key, so it
//! cannot be replayed on another connection or to another cluster. Every
//! node answers an `Identify` with its own proof, policy or not, so nodes
//! with and without a policy interoperate while admission is rolled out.
//!
//! Admission authenticates the peer that opened the handshake on a
//! connection; keeping an on-path attacker from taking over a connection
//! after it is the transport's job (QUIC, `wss://`).

use crate::id::NodeId;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256, Sha512};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Bytes of a challenge nonce.
pub const NONCE_LEN: usize = 16;
/// The shortest cluster secret accepted (128 bits).
pub const MIN_SECRET_LEN: usize = 16;

/// A node's ed25519 key pair.
#[derive(Clone)]
pub struct Keypair(SigningKey);

impl Keypair {
    /// The key pair of a 32-byte secret seed (what a key file holds). The
    /// runtime draws the seed from the operating system's randomness; the
    /// simulator from its seeded RNG.
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        Keypair(SigningKey::from_bytes(&seed))
    }

    /// The secret seed (to store in a key file).
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// The id this key pair's node has.
    pub fn node_id(&self) -> NodeId {
        self.public().node_id()
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.0.sign(msg).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret half.
        write!(f, "Keypair({})", self.public())
    }
}

impl PartialEq for Keypair {
    fn eq(&self, other: &Keypair) -> bool {
        self.public() == other.public()
    }
}

impl Eq for Keypair {}

/// An ed25519 public key: 32 bytes, written as 64 hex digits.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The node id of this key: the first 128 bits of
    /// SHA-512("mpreg/node-id/1" ‖ key).
    pub fn node_id(&self) -> NodeId {
        let h = Sha512::new()
            .chain_update(b"mpreg/node-id/1")
            .chain_update(self.0)
            .finalize();
        let mut id = [0; 16];
        id.copy_from_slice(&h[..16]);
        NodeId::from_u128(u128::from_be_bytes(id))
    }

    fn verify(&self, msg: &[u8], sig: &Signature) -> bool {
        VerifyingKey::from_bytes(&self.0).is_ok_and(|k| {
            k.verify(msg, &ed25519_dalek::Signature::from_bytes(&sig.0))
                .is_ok()
        })
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// A public key that does not parse.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("a public key is 64 hex digits (32 bytes)")]
pub struct BadPublicKey;

impl FromStr for PublicKey {
    type Err = BadPublicKey;
    fn from_str(s: &str) -> Result<PublicKey, BadPublicKey> {
        let s = s.trim();
        if s.len() != 64 || !s.is_ascii() {
            return Err(BadPublicKey);
        }
        let mut key = [0; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| BadPublicKey)?;
        }
        Ok(PublicKey(key))
    }
}

/// An ed25519 signature (64 bytes on the wire).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Signature(pub [u8; 64]);

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // serde derives arrays up to 32 bytes: two halves.
        let (mut a, mut b) = ([0; 32], [0; 32]);
        a.copy_from_slice(&self.0[..32]);
        b.copy_from_slice(&self.0[32..]);
        (a, b).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Signature, D::Error> {
        let (a, b) = <([u8; 32], [u8; 32])>::deserialize(d)?;
        let mut sig = [0; 64];
        sig[..32].copy_from_slice(&a);
        sig[32..].copy_from_slice(&b);
        Ok(Signature(sig))
    }
}

/// A shared cluster secret: at least [`MIN_SECRET_LEN`] bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret(Vec<u8>);

/// A cluster secret that is too short.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("a cluster secret needs at least {MIN_SECRET_LEN} bytes, this one has {0}")]
pub struct ShortSecret(pub usize);

impl ClusterSecret {
    /// A secret of these bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<ClusterSecret, ShortSecret> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET_LEN {
            return Err(ShortSecret(bytes.len()));
        }
        Ok(ClusterSecret(bytes))
    }

    /// A public name of the secret (to say which one a proof used, and to
    /// list them): the first 32 bits of SHA-256("mpreg/secret-id/1" ‖ secret).
    pub fn id(&self) -> u32 {
        let h = Sha256::new()
            .chain_update(b"mpreg/secret-id/1")
            .chain_update(&self.0)
            .finalize();
        u32::from_be_bytes([h[0], h[1], h[2], h[3]])
    }

    fn mac(&self, transcript: &[u8]) -> [u8; 32] {
        // HMAC takes keys of any length: this cannot fail.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        m.update(transcript);
        m.finalize().into_bytes().into()
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterSecret({:08x})", self.id())
    }
}

/// Who may join: the admission policy. Empty (the default) admits every
/// peer of the cluster id, as clusters without keys did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// Accepted cluster secrets; a peer must prove one. The first is the
    /// one this node proves (several are accepted at once while a secret
    /// is rotated).
    pub secrets: Vec<ClusterSecret>,
    /// Public keys allowed to join; `None` allows any key.
    pub allow_keys: Option<BTreeSet<PublicKey>>,
}

impl Admission {
    /// No policy: every peer is admitted without a handshake.
    pub fn is_open(&self) -> bool {
        self.secrets.is_empty() && self.allow_keys.is_none()
    }
}

/// Why a peer was refused admission (sent to it, and counted).
#[derive(Copy, Clone, PartialEq, Eq, Debug, Serialize, Deserialize, Error)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Refusal {
    /// The proof's signature does not verify for the key it names.
    #[error("the proof of key possession does not verify")]
    BadSignature,
    /// The node id in the peer's `Hello` is not its key's.
    #[error("the node id is not derived from the public key")]
    KeyMismatch,
    /// The cluster requires a secret and the proof has none that matches.
    #[error("wrong or missing cluster secret")]
    WrongSecret,
    /// The key is not on the cluster's allow-list.
    #[error("the public key is not on the cluster's allow-list")]
    NotAllowed,
    /// The handshake did not finish in time, or state was sent before it.
    #[error("the admission handshake did not complete")]
    Incomplete,
}

/// The sender's key and a fresh challenge (the first half of admission).
#[derive(Copy, Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Identify {
    /// The sender's public key.
    pub key: PublicKey,
    /// A nonce the receiver must sign.
    pub nonce: [u8; NONCE_LEN],
}

/// The answer to the receiver's challenge.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Proof {
    /// The sender's signature of the transcript.
    pub signature: Signature,
    /// The id of the secret used and the HMAC of the transcript under it,
    /// if the sender holds a cluster secret.
    pub secret: Option<(u32, [u8; 32])>,
}

/// What a proof covers: the cluster, the verifier's nonce, the prover's key.
fn transcript(cluster_id: &str, nonce: &[u8; NONCE_LEN], prover: &PublicKey) -> Vec<u8> {
    let mut t = Vec::with_capacity(32 + cluster_id.len() + NONCE_LEN + 32);
    t.extend_from_slice(b"mpreg/admit/1");
    t.extend_from_slice(&(cluster_id.len() as u32).to_be_bytes());
    t.extend_from_slice(cluster_id.as_bytes());
    t.extend_from_slice(nonce);
    t.extend_from_slice(&prover.0);
    t
}

/// This node's proof for a verifier that challenged it with `nonce`.
pub(crate) fn prove(
    key: &Keypair,
    secret: Option<&ClusterSecret>,
    cluster_id: &str,
    nonce: &[u8; NONCE_LEN],
) -> Proof {
    let t = transcript(cluster_id, nonce, &key.public());
    Proof {
        signature: key.sign(&t),
        secret: secret.map(|s| (s.id(), s.mac(&t))),
    }
}

/// Checks a peer's proof for this node's `nonce` against the policy.
pub(crate) fn check(
    policy: &Admission,
    cluster_id: &str,
    nonce: &[u8; NONCE_LEN],
    peer: &PublicKey,
    claimed: NodeId,
    proof: &Proof,
) -> Result<(), Refusal> {
    let t = transcript(cluster_id, nonce, peer);
    if !peer.verify(&t, &proof.signature) {
        return Err(Refusal::BadSignature);
    }
    if peer.node_id() != claimed {
        return Err(Refusal::KeyMismatch);
    }
    if !policy.secrets.is_empty() {
        let ok = proof.secret.is_some_and(|(id, mac)| {
            policy
                .secrets
                .iter()
                .any(|s| s.id() == id && constant_time_eq(&s.mac(&t), &mac))
        });
        if !ok {
            return Err(Refusal::WrongSecret);
        }
    }
    if let Some(allowed) = &policy.allow_keys
        && !allowed.contains(peer)
    {
        return Err(Refusal::NotAllowed);
    }
    Ok(())
}

/// Compares two MACs without an early exit.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> Keypair {
        Keypair::from_seed([i; 32])
    }

    fn secret(s: &str) -> ClusterSecret {
        ClusterSecret::new(s.as_bytes()).unwrap()
    }

    #[test]
    fn a_proof_verifies_for_its_nonce_cluster_and_key_only() {
        let (a, nonce) = (key(1), [7; NONCE_LEN]);
        let open = Admission::default();
        let p = prove(&a, None, "c", &nonce);
        let id = a.node_id();
        assert_eq!(check(&open, "c", &nonce, &a.public(), id, &p), Ok(()));
        let other_nonce = [8; NONCE_LEN];
        let bad = Err(Refusal::BadSignature);
        assert_eq!(check(&open, "c", &other_nonce, &a.public(), id, &p), bad);
        assert_eq!(check(&open, "d", &nonce, &a.public(), id, &p), bad);
        assert_eq!(check(&open, "c", &nonce, &key(2).public(), id, &p), bad);
        let wrong_id = key(2).node_id();
        assert_eq!(
            check(&open, "c", &nonce, &a.public(), wrong_id, &p),
            Err(Refusal::KeyMismatch)
        );
    }

    #[test]
    fn secrets_and_allow_lists_are_enforced() {
        let (a, nonce) = (key(1), [3; NONCE_LEN]);
        let (s1, s2) = (secret("0123456789abcdef"), secret("fedcba9876543210"));
        let policy = Admission {
            secrets: vec![s1.clone(), s2.clone()],
            allow_keys: None,
        };
        let (pk, id) = (a.public(), a.node_id());
        for s in [&s1, &s2] {
            let p = prove(&a, Some(s), "c", &nonce);
            assert_eq!(check(&policy, "c", &nonce, &pk, id, &p), Ok(()));
        }
        let other = secret("not-the-secret!!");
        for p in [
            prove(&a, Some(&other), "c", &nonce),
            prove(&a, None, "c", &nonce),
        ] {
            let r = check(&policy, "c", &nonce, &pk, id, &p);
            assert_eq!(r, Err(Refusal::WrongSecret));
        }
        let allow = Admission {
            secrets: vec![],
            allow_keys: Some([key(2).public()].into()),
        };
        let p = prove(&a, None, "c", &nonce);
        let r = check(&allow, "c", &nonce, &pk, id, &p);
        assert_eq!(r, Err(Refusal::NotAllowed));
        let b = key(2);
        let p = prove(&b, None, "c", &nonce);
        let r = check(&allow, "c", &nonce, &b.public(), b.node_id(), &p);
        assert_eq!(r, Ok(()));
    }

    #[test]
    fn keys_and_secrets_print_and_parse_without_secrets() {
        let k = key(9);
        let s = k.public().to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<PublicKey>(), Ok(k.public()));
        assert_eq!("zz".parse::<PublicKey>(), Err(BadPublicKey));
        assert_eq!(format!("{k:?}"), format!("Keypair({s})"));
        assert_eq!(Keypair::from_seed(k.seed()), k);
        assert_eq!(ClusterSecret::new(*b"short"), Err(ShortSecret(5)));
        let dbg = format!("{:?}", secret("0123456789abcdef"));
        assert!(!dbg.contains("0123"), "{dbg}");
    }

    #[test]
    fn signatures_round_trip_on_the_wire() {
        let p = prove(&key(4), Some(&secret("0123456789abcdef")), "c", &[1; 16]);
        let bytes = postcard::to_allocvec(&p).unwrap();
        assert_eq!(postcard::from_bytes::<Proof>(&bytes).unwrap(), p);
    }
}
