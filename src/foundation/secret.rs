//! Secrets in what qpsbench shows: header and query-parameter names that look like they carry a
//! secret, and the masked forms of their values. Everything qpsbench writes or prints about a
//! request (metadata.json, messages) goes through here; the API key itself is never shown at all.

/// Whether a header or query parameter name looks like it carries a secret; such values are
/// masked wherever qpsbench writes or prints them.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "key",
        "token",
        "secret",
        "auth",
        "password",
        "cookie",
        "signature",
    ]
    .iter()
    .any(|s| n.contains(s))
}

/// `Name: value`, with the value masked when the name looks secret.
pub fn masked_header(name: &str, value: &str) -> String {
    if is_secret_name(name) {
        format!("{name}: ****")
    } else {
        format!("{name}: {value}")
    }
}

/// The URL with the values of secret-looking query parameters (`api-key=…`, `token=…`) masked,
/// for metadata and messages.
pub fn mask_url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_secret_name(k) => format!("{k}=****"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", masked.join("&"))
}

/// `text` with every occurrence of the key replaced by `***` (a server may echo the key it was
/// sent in its error message; nothing qpsbench prints may carry it).
pub fn scrub(text: &str, key: &str) -> String {
    if key.len() < 4 {
        return text.to_string();
    }
    text.replace(key, "***")
}
