//! Any bytes a client can send as a text frame: parsing never panics, and a
//! subscribe is only ever produced from an object whose `channel` is a string
//! that appears in the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_actors::command::{self, Command};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match command::parse(text) {
        Ok(Command::Subscribe(sub)) => {
            let value: serde_json::Value = serde_json::from_str(text).expect("accepted frames are JSON");
            assert!(value.is_object());
            let _ = switchyard_actors::protocol::validate_channel_name(&sub.channel, 200);
            if let Some(data) = sub.channel_data.as_deref() {
                let _ = command::presence_member(data, 2048);
            }
        }
        Ok(Command::Signin(signin)) => {
            let _ = command::signin_user_id(&signin.user_data);
        }
        _ => {}
    }
});
