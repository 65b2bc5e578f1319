//! The console's script and stylesheet, built into the binary: the page works offline and loads
//! nothing from elsewhere (the Content-Security-Policy allows only the console's own origin).

/// Label mode's keyboard handling.
pub const SCRIPT: &str = include_str!("assets/console.js");

/// The one stylesheet.
pub const STYLE: &str = include_str!("assets/console.css");

/// The asset served at `/assets/<name>`, with its content type.
pub fn get(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "console.js" => Some(("text/javascript; charset=utf-8", SCRIPT)),
        "console.css" => Some(("text/css; charset=utf-8", STYLE)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_assets_are_served_and_nothing_else() {
        assert!(super::get("console.js").unwrap().1.contains("/api/labels"));
        assert!(super::get("console.css").unwrap().0.starts_with("text/css"));
        assert!(super::get("../mod.rs").is_none());
    }
}
