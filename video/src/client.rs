//! What a participant's browser is, from its `User-Agent` (for the call records): the browser
//! and its major version, the operating system, and whether it is a phone, a tablet or a
//! computer. A rough reading, as user agents are: unknown parts are `None`.

/// What a user agent says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub browser: Option<String>,
    pub os: Option<String>,
    /// `mobile`, `tablet` or `desktop`.
    pub device: Option<&'static str>,
}

fn version_after<'a>(ua: &'a str, marker: &str) -> Option<&'a str> {
    let at = ua.find(marker)? + marker.len();
    let rest = &ua[at..];
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// Reads a `User-Agent` header.
pub fn parse_user_agent(ua: &str) -> ClientInfo {
    let named = |name: &str, marker: &str| version_after(ua, marker).map(|v| format!("{name} {v}"));
    let browser = if ua.contains("Edg/") {
        named("Edge", "Edg/")
    } else if ua.contains("OPR/") {
        named("Opera", "OPR/")
    } else if ua.contains("YaBrowser/") {
        named("Yandex Browser", "YaBrowser/")
    } else if ua.contains("SamsungBrowser/") {
        named("Samsung Internet", "SamsungBrowser/")
    } else if ua.contains("Firefox/") {
        named("Firefox", "Firefox/")
    } else if ua.contains("FxiOS/") {
        named("Firefox", "FxiOS/")
    } else if ua.contains("CriOS/") {
        named("Chrome", "CriOS/")
    } else if ua.contains("Chrome/") {
        named(if ua.contains("HeadlessChrome") { "Headless Chrome" } else { "Chrome" }, "Chrome/")
    } else if ua.contains("Safari/") && ua.contains("Version/") {
        named("Safari", "Version/")
    } else {
        None
    };
    let os = if ua.contains("Windows") {
        Some("Windows")
    } else if ua.contains("Android") {
        Some("Android")
    } else if ua.contains("iPhone") || ua.contains("iPad") || ua.contains("iPod") {
        Some("iOS")
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        Some("macOS")
    } else if ua.contains("CrOS") {
        Some("ChromeOS")
    } else if ua.contains("Linux") {
        Some("Linux")
    } else {
        None
    };
    let device = if ua.contains("iPad") || (ua.contains("Android") && !ua.contains("Mobile")) || ua.contains("Tablet") {
        Some("tablet")
    } else if ua.contains("Mobi") || ua.contains("iPhone") {
        Some("mobile")
    } else if os.is_some() {
        Some("desktop")
    } else {
        None
    };
    ClientInfo { browser, os: os.map(str::to_owned), device }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_browsers_and_devices() {
        let read = |ua: &str| {
            let c = parse_user_agent(ua);
            (c.browser.unwrap_or_default(), c.os.unwrap_or_default(), c.device.unwrap_or_default())
        };
        assert_eq!(
            read(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
            ),
            ("Chrome 131".into(), "Windows".into(), "desktop")
        );
        assert_eq!(
            read(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
            ),
            ("Safari 17".into(), "iOS".into(), "mobile")
        );
        assert_eq!(
            read(
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36"
            ),
            ("Chrome 131".into(), "Android".into(), "mobile")
        );
        assert_eq!(
            read("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
            ("Firefox 128".into(), "Linux".into(), "desktop")
        );
        assert_eq!(
            read(
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"
            ),
            ("Edge 131".into(), "macOS".into(), "desktop")
        );
        assert_eq!(
            read(
                "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/604.1"
            ),
            ("Safari 17".into(), "iOS".into(), "tablet")
        );
        assert_eq!(parse_user_agent("curl/8.0"), ClientInfo::default());
    }
}
