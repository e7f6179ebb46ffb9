//! Strict JSON for every body the service accepts: the whole input is one value
//! (trailing data is an error, as in Prometheus and Alertmanager), and errors name the
//! path of the failing field.

use serde::de::DeserializeOwned;

/// Deserializes the whole of `bytes`: data after the JSON value is an error, as in
/// Prometheus and Alertmanager. The message names the failing field's path.
pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(json_error_message)?;
    de.end().map_err(|e| format!("invalid JSON: {e}"))?;
    Ok(value)
}

/// What is wrong with a JSON body, naming the path of the offending field when known
/// (`invalid JSON at `[3].labels`: …`); syntax errors give line and column instead.
pub fn json_error_message(e: serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if inner.is_syntax() || inner.is_eof() || path.is_empty() || path == "." || path == "?" {
        format!("invalid JSON: {inner}")
    } else {
        format!("invalid JSON at `{path}`: {inner}")
    }
}
