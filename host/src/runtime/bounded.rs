//! Bounds on the strings a plugin controls: whatever a plugin writes into an
//! error, a log line, stderr or an alert reaches people and the cloud, so it
//! is cut to a known size (with a marker saying so) before it leaves the
//! runtime.

/// Longest error text a plugin's `err(...)` keeps: it becomes part of a
/// `plugin-degraded` alert, the status and the log.
pub const MAX_ERROR_BYTES: usize = 1024;
/// Longest stderr line kept from a trapping plugin (its panic message).
pub const MAX_STDERR_LINE_BYTES: usize = 1024;
/// Longest log line of a plugin.
pub const MAX_LOG_LINE_BYTES: usize = 4096;
/// Longest sensor id of an output.
pub const MAX_SENSOR_BYTES: usize = 256;
/// Longest alert code or metric name.
pub const MAX_CODE_BYTES: usize = 128;
/// Longest alert message.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// `text` cut to at most `max` bytes on a char boundary, marker included,
/// when it is longer: `…[truncated, N bytes]` names the original size.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let marker = format!("…[truncated, {} bytes]", text.len());
    let mut cut = max.saturating_sub(marker.len());
    while cut > 0 && !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&marker);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_long_text_is_cut_with_a_marker() {
        assert_eq!(truncate("short".into(), 100), "short");
        let cut = truncate("x".repeat(2 << 20), MAX_ERROR_BYTES);
        assert!(cut.len() <= MAX_ERROR_BYTES, "{}", cut.len());
        assert!(cut.starts_with("xxxx"));
        assert!(cut.ends_with("…[truncated, 2097152 bytes]"), "{cut}");
    }

    #[test]
    fn the_cut_falls_on_a_char_boundary() {
        // Multi-byte characters everywhere: any cut must step back to a boundary.
        for max in 30..60 {
            let cut = truncate("é".repeat(100), max);
            assert!(cut.len() <= max, "{max}: {}", cut.len());
            assert!(cut.contains("[truncated, 200 bytes]"));
        }
        // A limit below the marker's own size keeps only the marker.
        assert_eq!(truncate("abcdef".repeat(10), 3), "…[truncated, 60 bytes]");
    }
}
