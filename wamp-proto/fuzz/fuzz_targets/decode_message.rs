//! Every serializer must reject or accept arbitrary bytes without panicking, and
//! whatever it accepts must round-trip.
#![no_main]

use fox_wamp_proto::Serializer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for serializer in [Serializer::Json, Serializer::MsgPack, Serializer::Cbor] {
        if let Ok(message) = serializer.decode(data, 1 << 20) {
            let bytes = serializer.encode(&message);
            if serializer == Serializer::Json {
                // JSON float text may differ; structure must survive.
                assert_eq!(serializer.decode(&bytes, usize::MAX).map(|m| m.code()), Ok(message.code()));
            } else {
                assert!(serializer.decode(&bytes, usize::MAX).is_ok());
            }
        }
    }
});
