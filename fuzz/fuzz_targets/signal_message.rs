//! Any text a client may send as a signaling frame: parsing never panics,
//! and whatever parses serialises back to something that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_protocol::{parse, ClientMessage};

fuzz_target!(|text: &str| {
    if let Ok(message) = parse(text) {
        let again = serde_json::to_string(&message).expect("a parsed message serialises");
        let back: ClientMessage = parse(&again).expect("what we serialise parses");
        assert_eq!(back, message);
    }
});
