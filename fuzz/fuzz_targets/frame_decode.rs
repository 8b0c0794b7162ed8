//! Frame decoding: any bytes decode to a message or a typed error, never a
//! panic; whatever decodes re-encodes to a frame that decodes to the same
//! message; any message round-trips. Clients decode with the same code.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use mpreg_proto::ClientConn;
use mpreg_proto::wire::{self, DecodeError, Message};

const MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    // The bytes as a frame.
    match wire::decode(data, MAX, None) {
        Ok((h, msg)) => {
            let again = wire::encode(&msg, h.version, h.cluster);
            assert!(again.len() <= data.len(), "re-encoding grew the frame");
            let (h2, msg2) =
                wire::decode(&again, MAX, Some(h.cluster)).expect("re-encoded frame decodes");
            assert_eq!(h, h2);
            assert_eq!(msg, msg2);
            // A frame over the limit is refused before its body is read.
            if data.len() > wire::HEADER_LEN + 1 {
                let small = data.len() - 1;
                assert!(matches!(
                    wire::decode(data, small, None),
                    Err(DecodeError::TooLarge { .. })
                ));
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = ClientConn::new(None, MAX).handle_frame(data);
    let _ = ClientConn::new(Some("fuzz"), 64).handle_frame(data);
    // The bytes as a structured message.
    let mut u = Unstructured::new(data);
    if let Ok(msg) = Message::arbitrary(&mut u) {
        let cluster = u.arbitrary::<u16>().unwrap_or(1);
        let frame = wire::encode(&msg, wire::PROTOCOL_VERSION, cluster);
        let (h, back) = wire::decode(&frame, usize::MAX, Some(cluster)).expect("own frames decode");
        assert_eq!(h.version, wire::PROTOCOL_VERSION);
        assert_eq!(back, msg);
        // Appended bytes (a newer peer's fields) are ignored.
        let mut longer = frame.clone();
        longer.extend_from_slice(&[0xff, 0, 1]);
        if let Ok((_, m)) = wire::decode(&longer, usize::MAX, None) {
            assert_eq!(m, msg);
        }
    }
});
