//! Settings from the environment: `FOXROUTER_<SECTION>__<KEY>=<value>`.

/// The prefix of environment overrides: `FOXROUTER_<SECTION>__<KEY>` (see
/// [`Config::from_sources`]).
pub const ENV_PREFIX: &str = "FOXROUTER_";

/// The environment overrides among `vars`: names `FOXROUTER_...` with at least one `__`
/// (so `FOXROUTER_BIN` and such are not taken for settings), sorted by name.
pub fn env_overrides(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = vars
        .filter(|(name, _)| name.starts_with(ENV_PREFIX) && name.contains("__"))
        .collect();
    found.sort();
    found
}

/// A TOML value (number, boolean, array, inline table, quoted string) as written, else
/// the text itself as a string (`127.0.0.1:8080`, `off`, `realm1`).
fn env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut table| table.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

/// Sets each override's key in `table`: `FOXROUTER_LIMITS__SESSION_QUEUE_MAX=100` is
/// `[limits] session_queue_max = 100`, `FOXROUTER_AUTH__HTTP__URL=...` is `[auth.http] url`.
pub(super) fn apply_env(
    table: &mut toml::Table,
    overrides: &[(String, String)],
) -> Result<(), String> {
    for (name, raw) in overrides {
        let path: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        let Some((key, sections)) = path.split_last() else {
            continue;
        };
        if path.iter().any(String::is_empty) {
            return Err(format!("{name}: an empty section or key name"));
        }
        let mut at = &mut *table;
        for section in sections {
            let entry = at
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            at = match entry {
                toml::Value::Table(inner) => inner,
                _ => return Err(format!("{name}: '{section}' is not a section")),
            };
        }
        at.insert(key.clone(), env_value(raw));
    }
    Ok(())
}
