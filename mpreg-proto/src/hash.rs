//! Hashes that nodes compare with each other — anti-entropy digests,
//! member leaves, catalog entries, rendezvous scores — computed over a
//! canonical byte encoding: xxh3-64 of the value's postcard encoding (a
//! stable, documented format), never `std::hash::Hash`, whose output Rust
//! does not promise across releases or platforms. Nodes of different builds
//! must agree; `tests` pins the bytes with golden vectors.

use postcard::ser_flavors::Flavor;
use serde::Serialize;
use xxhash_rust::xxh3::Xxh3Default;

/// Collects postcard's output; the common small value is hashed in one
/// call (xxh3's one-shot form), a larger one streamed. Both give the same
/// hash of the same bytes.
struct Hashing {
    buf: [u8; 256],
    len: usize,
    long: Option<Box<Xxh3Default>>,
}

impl Hashing {
    fn take(&mut self, data: &[u8]) {
        if self.len + data.len() > self.buf.len() {
            let h = self.long.get_or_insert_with(Box::default);
            h.update(&self.buf[..self.len]);
            self.len = 0;
            if data.len() > self.buf.len() {
                h.update(data);
                return;
            }
        }
        self.buf[self.len..self.len + data.len()].copy_from_slice(data);
        self.len += data.len();
    }

    fn digest(&mut self) -> u64 {
        match &mut self.long {
            None => xxhash_rust::xxh3::xxh3_64(&self.buf[..self.len]),
            Some(h) => {
                h.update(&self.buf[..self.len]);
                h.digest()
            }
        }
    }
}

/// The flavor postcard moves around by value: a reference, so the buffer
/// stays put.
struct Feed<'a>(&'a mut Hashing);

impl Flavor for Feed<'_> {
    type Output = ();

    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        // Ids serialize byte by byte: no slice copy for each.
        let h = &mut *self.0;
        if h.len == h.buf.len() {
            h.take(&[b]);
        } else {
            h.buf[h.len] = b;
            h.len += 1;
        }
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.take(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// The canonical 64-bit hash of `v`.
pub(crate) fn canonical<T: Serialize + ?Sized>(v: &T) -> u64 {
    let mut h = Hashing {
        buf: [0; 256],
        len: 0,
        long: None,
    };
    // Serializing into a hasher cannot fail: every type hashed here
    // serializes (they all travel on the wire), and the flavor never refuses.
    let _ = postcard::serialize_with_flavor(v, Feed(&mut h));
    h.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes are postcard's, so the hash of a value equals xxh3 of its
    /// encoding, whatever the buffering.
    #[test]
    fn the_hash_is_xxh3_of_the_postcard_bytes() {
        let long = "x".repeat(1000);
        let values: Vec<(&str, u64, Vec<u8>)> = vec![
            ("", 0, vec![]),
            ("member", u64::MAX, vec![1, 2, 3]),
            (&long, 7, vec![9; 300]),
        ];
        for v in &values {
            let bytes = postcard::to_stdvec(v).unwrap();
            assert_eq!(canonical(v), xxhash_rust::xxh3::xxh3_64(&bytes));
        }
    }

    /// Golden vectors, computed independently (postcard's byte layout by
    /// hand, xxh3 by another implementation): these numbers must never
    /// change, or nodes of different builds stop agreeing. `tests/golden.rs`
    /// pins the digests of whole node states.
    #[test]
    fn golden_vectors() {
        use crate::id::{CallId, NodeId};
        use crate::records::MemberState;
        let a = NodeId::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        let b = NodeId::from_u128(7);
        // A suspected member's leaf: id (16 bytes, big-endian), address,
        // incarnation and state as varints, the accusers, the name.
        let leaf = (
            a,
            "ws://10.0.0.1:7000",
            4u64,
            MemberState::Suspect,
            &[b][..],
            "n1",
        );
        assert_eq!(
            postcard::to_stdvec(&leaf).unwrap(),
            [
                &a.as_u128().to_be_bytes()[..],
                b"\x12ws://10.0.0.1:7000\x04\x01\x01",
                &7u128.to_be_bytes(),
                b"\x02n1",
            ]
            .concat()
        );
        assert_eq!(canonical(&leaf), 0xccfd_f79a_dc87_48ae);
        // A rendezvous score: the call id, then the candidate.
        let call = CallId {
            origin: a,
            incarnation: 1,
            seq: 42,
        };
        assert_eq!(canonical(&(call, b)), 0x9414_7202_6488_0b33);
    }
}
