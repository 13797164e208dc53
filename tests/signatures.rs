//! The harness's own signers against the worked examples of PROTOCOL.md §4,
//! so a failing server test is never caused by a wrong test-side signature.

mod common;

use common::*;

const KEY: &str = "app-key";
const SECRET: &str = "app-secret";
const SID: &str = "1234.5678";

#[test]
fn private_channel_auth_matches_worked_example() {
    assert_eq!(
        channel_auth(KEY, SECRET, SID, "private-orders"),
        "app-key:2d1e5109f17c93a347d0a52f060df3a517761ce1ddcd7bce2998c4f1925a7cab"
    );
}

#[test]
fn presence_auth_matches_worked_example() {
    let cd = r#"{"user_id":"42","user_info":{"name":"Ada"}}"#;
    assert_eq!(
        presence_auth(KEY, SECRET, SID, "presence-room", cd),
        "app-key:7eae5778a7edfe839d7a03f042293004e8cc0798fcf98a63b02be7f19f8bef86"
    );
}

#[test]
fn encrypted_channel_auth_matches_worked_example() {
    assert_eq!(
        channel_auth(KEY, SECRET, SID, "private-encrypted-chat"),
        "app-key:6ee8ce3188a0b27e8bccca0ce3648235c61b391d951dcfbde41d441360035f8a"
    );
}

#[test]
fn signin_auth_matches_worked_example() {
    assert_eq!(
        signin_auth(KEY, SECRET, SID, r#"{"id":"42","name":"Ada"}"#),
        "app-key:301c617063a9befe3888bef787d0293388621da80385924cc3b7231582f595e3"
    );
}

#[test]
fn api_post_signature_matches_worked_example() {
    let body = r#"{"name":"order-shipped","channels":["orders"],"data":"{\"id\":7}"}"#;
    assert_eq!(md5_hex(body.as_bytes()), "8240c4f8c3620c8f8787db3801c800c2");
    let params = vec![
        ("auth_key".to_string(), "app-key".to_string()),
        ("auth_timestamp".to_string(), "1700000000".to_string()),
        ("auth_version".to_string(), "1.0".to_string()),
        ("body_md5".to_string(), md5_hex(body.as_bytes())),
    ];
    let (query, to_sign) = api_string_to_sign("POST", "/apps/app-id/events", &params);
    assert_eq!(
        to_sign,
        "POST\n/apps/app-id/events\nauth_key=app-key&auth_timestamp=1700000000&auth_version=1.0&body_md5=8240c4f8c3620c8f8787db3801c800c2"
    );
    assert_eq!(query, to_sign.rsplit('\n').next().unwrap());
    assert_eq!(
        hmac_hex(SECRET, &to_sign),
        "0600ad6713b1631c7ab034bf5c307587b7c24c437b74eb18eb9a2089047bbf5e"
    );
}

#[test]
fn api_get_signature_sorts_params_and_matches_worked_example() {
    // given out of order and with an upper-case key: must be lower-cased and sorted
    let params = vec![
        ("info".to_string(), "user_count".to_string()),
        ("AUTH_KEY".to_string(), "app-key".to_string()),
        ("filter_by_prefix".to_string(), "presence-".to_string()),
        ("auth_version".to_string(), "1.0".to_string()),
        ("auth_timestamp".to_string(), "1700000000".to_string()),
    ];
    let (_, to_sign) = api_string_to_sign("GET", "/apps/app-id/channels", &params);
    assert_eq!(
        to_sign,
        "GET\n/apps/app-id/channels\nauth_key=app-key&auth_timestamp=1700000000&auth_version=1.0&filter_by_prefix=presence-&info=user_count"
    );
    assert_eq!(
        hmac_hex(SECRET, &to_sign),
        "fd5a1b38d92aee2b7913a8cf43136cffab888ee5a097536910d6239f08eb68a2"
    );
}

#[test]
fn reference_md5s() {
    assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(md5_hex(b"{}"), "99914b932bd37a50b983c5e7c90ae93b");
}

#[test]
fn socket_id_shape() {
    assert!(is_socket_id("123.456"));
    assert!(!is_socket_id("123"));
    assert!(!is_socket_id("12a.3"));
    assert!(!is_socket_id("1.2.3"));
    assert!(!is_socket_id(".3"));
}
