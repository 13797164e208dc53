//! Log output through env_logger: human text (optionally coloured) or one
//! JSON object per line for log shippers (`LOG_OUTPUT_FORMAT=json`).
//!
//! `RUST_LOG` filters as usual; the default is `info`.

use std::io::Write;

/// Install the global logger. Call once, before anything logs.
pub fn init(json: bool, colors: bool, include_target: bool) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if json {
        builder.format(move |buf, record| {
            let mut line = serde_json::Map::new();
            line.insert(
                "timestamp".into(),
                buf.timestamp_millis().to_string().into(),
            );
            line.insert("level".into(), record.level().as_str().into());
            line.insert("message".into(), record.args().to_string().into());
            if include_target {
                line.insert("target".into(), record.target().into());
            }
            // Structured fields (`warn!(app_id = …; "…")`) become top-level keys.
            let mut fields = Fields(&mut line);
            let _ = record.key_values().visit(&mut fields);
            writeln!(buf, "{}", serde_json::Value::Object(line))
        });
    } else {
        builder
            .format_target(include_target)
            .write_style(if colors {
                env_logger::WriteStyle::Auto
            } else {
                env_logger::WriteStyle::Never
            });
    }
    // A second init (tests) keeps the first logger.
    let _ = builder.try_init();
}

/// Copies a record's key-values into the JSON line; numbers and booleans
/// stay typed, everything else is its display text.
struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let json = if let Some(n) = value.to_u64() {
            n.into()
        } else if let Some(n) = value.to_i64() {
            n.into()
        } else if let Some(b) = value.to_bool() {
            b.into()
        } else {
            value.to_string().into()
        };
        self.0.insert(key.as_str().to_string(), json);
        Ok(())
    }
}
