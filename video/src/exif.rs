//! The customer's position written into a call screenshot's EXIF (docs/video.md, "Screenshots
//! and files"), without I/O: a JPEG in, a JPEG out.
//!
//! Screenshots are JPEG only: the call pages encode them with `canvas.toBlob(..., "image/jpeg")`.
//! A PNG is refused (its metadata would be an `eXIf` chunk few viewers read, and converting it
//! would mean decoding and re-encoding images in the hub); anything that is not a well-formed
//! JPEG is refused too, each with its own error.
//!
//! [`stamp`] drops any EXIF segment the sender put in (so a position cannot be forged by the
//! page) and, given a position, writes one APP1 `Exif` segment with a big-endian TIFF structure:
//! IFD0 holding only the GPS IFD pointer (tag 0x8825), and the GPS IFD with `GPSVersionID`
//! 2.3.0.0, `GPSLatitudeRef`/`GPSLatitude`, `GPSLongitudeRef`/`GPSLongitude` (degrees, minutes,
//! seconds as rationals, the seconds in thousandths: 3·10⁻⁷° of precision), `GPSTimeStamp` and
//! `GPSDateStamp` (UTC, when the position was shared) and `GPSMapDatum` `WGS-84`. [`read_gps`]
//! reads such a position back (either byte order), for the tests and for checks.

use chrono::{DateTime, Datelike, Timelike, Utc};

/// A position to write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpsStamp {
    pub lat: f64,
    pub lon: f64,
    /// When the position was taken (UTC).
    pub at: DateTime<Utc>,
}

/// Why an image cannot be a screenshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExifError {
    #[error("a PNG screenshot is refused: send a JPEG (canvas.toBlob(callback, \"image/jpeg\"))")]
    Png,
    #[error("not a JPEG image: it does not start with the JPEG start-of-image marker (FF D8)")]
    NotJpeg,
    #[error("a broken JPEG image: {0}")]
    Broken(String),
    #[error("the position {0}, {1} is not a latitude from -90 to 90 and a longitude from -180 to 180")]
    BadPosition(String, String),
}

const SOI: [u8; 2] = [0xFF, 0xD8];
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
const EXIF_HEADER: &[u8; 6] = b"Exif\0\0";

/// Checks the JPEG, drops its EXIF segments and, with `gps`, writes the position's.
pub fn stamp(jpeg: &[u8], gps: Option<&GpsStamp>) -> Result<Vec<u8>, ExifError> {
    let segments = segments(jpeg)?;
    let exif = gps.map(exif_segment).transpose()?;
    let mut out = Vec::with_capacity(jpeg.len() + exif.as_ref().map_or(0, Vec::len));
    out.extend_from_slice(&SOI);
    let mut written = exif.is_none();
    for segment in &segments {
        let marker = segment.bytes[1];
        let is_exif = marker == 0xE1 && segment.bytes.get(4..10) == Some(EXIF_HEADER.as_slice());
        if is_exif {
            continue;
        }
        // EXIF goes first, after a JFIF APP0 when there is one (both specs then agree)
        if !written && marker != 0xE0 {
            out.extend_from_slice(exif.as_deref().unwrap_or_default());
            written = true;
        }
        out.extend_from_slice(segment.bytes);
    }
    Ok(out)
}

struct Segment<'a> {
    /// The marker, its length and its data; for SOS, everything to the end of the file.
    bytes: &'a [u8],
}

/// The JPEG's segments after SOI, the last one being SOS with the entropy-coded data and EOI.
fn segments(jpeg: &[u8]) -> Result<Vec<Segment<'_>>, ExifError> {
    if jpeg.starts_with(&PNG_SIGNATURE) {
        return Err(ExifError::Png);
    }
    if !jpeg.starts_with(&SOI) {
        return Err(ExifError::NotJpeg);
    }
    if !jpeg.ends_with(&[0xFF, 0xD9]) {
        return Err(ExifError::Broken("it does not end with the end-of-image marker (FF D9): cut short?".into()));
    }
    let mut out = Vec::new();
    let mut at = 2;
    loop {
        let Some(&[ff, marker]) = jpeg.get(at..at + 2).map(|b| <&[u8; 2]>::try_from(b).expect("two bytes")) else {
            return Err(ExifError::Broken(format!("it ends at byte {at} before its image data (SOS)")));
        };
        if ff != 0xFF || marker == 0x00 || marker == 0xFF {
            return Err(ExifError::Broken(format!("no segment marker at byte {at}")));
        }
        if marker == 0xD9 || (0xD0..=0xD7).contains(&marker) || marker == 0xD8 {
            return Err(ExifError::Broken(format!("marker FF {marker:02X} at byte {at} before the image data")));
        }
        let Some(len) = jpeg.get(at + 2..at + 4).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) else {
            return Err(ExifError::Broken(format!("segment FF {marker:02X} at byte {at} is cut short")));
        };
        if len < 2 || at + 2 + len > jpeg.len() {
            return Err(ExifError::Broken(format!("segment FF {marker:02X} at byte {at} has a bad length {len}")));
        }
        if marker == 0xDA {
            out.push(Segment { bytes: &jpeg[at..] });
            return Ok(out);
        }
        out.push(Segment { bytes: &jpeg[at..at + 2 + len] });
        at += 2 + len;
    }
}

/// The APP1 segment: marker, length, `Exif\0\0`, the TIFF structure.
fn exif_segment(gps: &GpsStamp) -> Result<Vec<u8>, ExifError> {
    if !(gps.lat.is_finite()
        && (-90.0..=90.0).contains(&gps.lat)
        && gps.lon.is_finite()
        && (-180.0..=180.0).contains(&gps.lon))
    {
        return Err(ExifError::BadPosition(gps.lat.to_string(), gps.lon.to_string()));
    }
    let tiff = tiff(gps);
    let len = u16::try_from(2 + EXIF_HEADER.len() + tiff.len()).expect("the GPS EXIF is small");
    let mut out = vec![0xFF, 0xE1];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(EXIF_HEADER);
    out.extend_from_slice(&tiff);
    Ok(out)
}

/// Degrees as (degrees, minutes, thousandths of seconds), each over its denominator.
fn dms(value: f64) -> [(u32, u32); 3] {
    let millis = (value.abs() * 3_600_000.0).round() as u64;
    let degrees = millis / 3_600_000;
    let minutes = (millis % 3_600_000) / 60_000;
    let seconds = millis % 60_000;
    [(degrees as u32, 1), (minutes as u32, 1), (seconds as u32, 1000)]
}

const BYTE: u16 = 1;
const ASCII: u16 = 2;
const LONG: u16 = 4;
const RATIONAL: u16 = 5;

/// The big-endian TIFF structure: header, IFD0 (the GPS pointer), the GPS IFD, its values.
fn tiff(gps: &GpsStamp) -> Vec<u8> {
    let date = format!("{:04}:{:02}:{:02}\0", gps.at.year(), gps.at.month(), gps.at.day());
    let time = [(gps.at.hour(), 1), (gps.at.minute(), 1), (gps.at.second(), 1)];
    let rationals = |values: [(u32, u32); 3]| {
        values.iter().flat_map(|(n, d)| [n.to_be_bytes(), d.to_be_bytes()]).flatten().collect::<Vec<u8>>()
    };
    // (tag, type, count, inline value or data kept after the IFD)
    enum Value {
        Inline([u8; 4]),
        Data(Vec<u8>),
    }
    let entries: Vec<(u16, u16, u32, Value)> = vec![
        (0x0000, BYTE, 4, Value::Inline([2, 3, 0, 0])),
        (0x0001, ASCII, 2, Value::Inline([if gps.lat < 0.0 { b'S' } else { b'N' }, 0, 0, 0])),
        (0x0002, RATIONAL, 3, Value::Data(rationals(dms(gps.lat)))),
        (0x0003, ASCII, 2, Value::Inline([if gps.lon < 0.0 { b'W' } else { b'E' }, 0, 0, 0])),
        (0x0004, RATIONAL, 3, Value::Data(rationals(dms(gps.lon)))),
        (0x0007, RATIONAL, 3, Value::Data(rationals(time))),
        (0x0012, ASCII, 7, Value::Data(b"WGS-84\0".to_vec())),
        (0x001D, ASCII, 11, Value::Data(date.into_bytes())),
    ];
    let ifd0_at = 8u32;
    let ifd0_len = 2 + 12 + 4;
    let gps_at = ifd0_at + ifd0_len;
    let gps_len = 2 + 12 * entries.len() as u32 + 4;
    let mut data_at = gps_at + gps_len;

    let mut out = Vec::new();
    out.extend_from_slice(b"MM");
    out.extend_from_slice(&42u16.to_be_bytes());
    out.extend_from_slice(&ifd0_at.to_be_bytes());
    // IFD0: the GPS IFD's pointer alone
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&0x8825u16.to_be_bytes());
    out.extend_from_slice(&LONG.to_be_bytes());
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&gps_at.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    // the GPS IFD
    let mut data = Vec::new();
    out.extend_from_slice(&(entries.len() as u16).to_be_bytes());
    for (tag, kind, count, value) in &entries {
        out.extend_from_slice(&tag.to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        match value {
            Value::Inline(bytes) => out.extend_from_slice(bytes),
            Value::Data(bytes) => {
                out.extend_from_slice(&data_at.to_be_bytes());
                data.extend_from_slice(bytes);
                if bytes.len() % 2 == 1 {
                    data.push(0); // values start on word boundaries
                }
                data_at = gps_at + gps_len + data.len() as u32;
            }
        }
    }
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&data);
    out
}

/// The GPS position in a JPEG's EXIF (latitude, longitude in signed degrees), if it has one.
pub fn read_gps(jpeg: &[u8]) -> Option<(f64, f64)> {
    let segments = segments(jpeg).ok()?;
    let app1 = segments.iter().find(|s| s.bytes[1] == 0xE1 && s.bytes.get(4..10) == Some(EXIF_HEADER.as_slice()))?;
    let tiff = app1.bytes.get(10..)?;
    let big = match tiff.get(0..2)? {
        b"MM" => true,
        b"II" => false,
        _ => return None,
    };
    let u16_at = |at: usize| {
        tiff.get(at..at + 2)
            .map(|b| if big { u16::from_be_bytes([b[0], b[1]]) } else { u16::from_le_bytes([b[0], b[1]]) })
    };
    let u32_at = |at: usize| {
        tiff.get(at..at + 4).map(|b| {
            let b = [b[0], b[1], b[2], b[3]];
            if big { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
        })
    };
    let entry = |ifd: usize, tag: u16| -> Option<usize> {
        let count = usize::from(u16_at(ifd)?);
        (0..count).map(|i| ifd + 2 + 12 * i).find(|&e| u16_at(e) == Some(tag))
    };
    let ifd0 = u32_at(4)? as usize;
    let gps = u32_at(entry(ifd0, 0x8825)? + 8)? as usize;
    let degrees = |tag: u16| -> Option<f64> {
        let at = u32_at(entry(gps, tag)? + 8)? as usize;
        let part = |i: usize| -> Option<f64> {
            let (n, d) = (u32_at(at + 8 * i)?, u32_at(at + 8 * i + 4)?);
            (d != 0).then(|| f64::from(n) / f64::from(d))
        };
        Some(part(0)? + part(1)? / 60.0 + part(2)? / 3600.0)
    };
    let reference = |tag: u16| -> Option<u8> { tiff.get(entry(gps, tag)? + 8).copied() };
    let lat = degrees(0x0002)? * if reference(0x0001)? == b'S' { -1.0 } else { 1.0 };
    let lon = degrees(0x0004)? * if reference(0x0003)? == b'W' { -1.0 } else { 1.0 };
    Some((lat, lon))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny JPEG's structure (no real image data needed for the segment walk): SOI, APP0
    /// JFIF, DQT, SOS with two bytes of data, EOI.
    fn jpeg() -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        j.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]);
        j.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x04, 0x00, 0x01]);
        j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x03, 0x01, 0x12, 0x34, 0xFF, 0xD9]);
        j
    }

    fn at() -> DateTime<Utc> {
        "2026-12-07T13:05:09Z".parse().unwrap()
    }

    #[test]
    fn a_position_is_written_and_read_back() {
        for (lat, lon) in
            [(55.751244, 37.618423), (-33.868820, 151.209290), (40.712776, -74.005974), (-0.00001, -179.99999)]
        {
            let out = stamp(&jpeg(), Some(&GpsStamp { lat, lon, at: at() })).unwrap();
            let (rlat, rlon) = read_gps(&out).unwrap();
            assert!((rlat - lat).abs() < 1e-6 && (rlon - lon).abs() < 1e-6, "{lat},{lon} read as {rlat},{rlon}");
            // after SOI and the JFIF APP0, and the rest kept as it was
            assert_eq!(&out[..2], &[0xFF, 0xD8]);
            assert_eq!(&out[2..4], &[0xFF, 0xE0]);
            assert_eq!(&out[20..22], &[0xFF, 0xE1]);
            assert_eq!(&out[24..30], b"Exif\0\0");
            assert!(out.ends_with(&jpeg()[20..]));
        }
    }

    #[test]
    fn the_tags_are_what_exif_says() {
        let out = stamp(&jpeg(), Some(&GpsStamp { lat: -12.5, lon: 30.25, at: at() })).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("2026:12:07\0"), "the date stamp");
        assert!(text.contains("WGS-84\0"), "the datum");
        // latitude 12° 30' 0" S: its rationals
        let lat = [0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 30, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 232];
        assert!(out.windows(lat.len()).any(|w| w == lat));
        let time = [0, 0, 0, 13, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 1];
        assert!(out.windows(time.len()).any(|w| w == time));
        assert_eq!(read_gps(&out), Some((-12.5, 30.25)));
    }

    #[test]
    fn the_senders_exif_is_dropped() {
        let mut forged = vec![0xFF, 0xD8];
        let fake = stamp(&jpeg(), Some(&GpsStamp { lat: 1.0, lon: 2.0, at: at() })).unwrap();
        forged.extend_from_slice(&fake[2..]);
        assert_eq!(read_gps(&forged), Some((1.0, 2.0)));
        let clean = stamp(&forged, None).unwrap();
        assert_eq!(read_gps(&clean), None);
        assert_eq!(clean, jpeg());
        let restamped = stamp(&forged, Some(&GpsStamp { lat: 55.0, lon: 37.0, at: at() })).unwrap();
        assert_eq!(read_gps(&restamped), Some((55.0, 37.0)));
        assert_eq!(restamped.windows(6).filter(|w| w == b"Exif\0\0").count(), 1);
    }

    #[test]
    fn without_app0_the_exif_follows_soi() {
        let mut j = vec![0xFF, 0xD8];
        j.extend_from_slice(&jpeg()[20..]);
        let out = stamp(&j, Some(&GpsStamp { lat: 10.0, lon: 20.0, at: at() })).unwrap();
        assert_eq!(&out[2..4], &[0xFF, 0xE1]);
        assert_eq!(read_gps(&out), Some((10.0, 20.0)));
    }

    #[test]
    fn bad_images_are_refused_each_with_its_reason() {
        let png = [&PNG_SIGNATURE[..], b"\0\0\0\rIHDR"].concat();
        assert_eq!(stamp(&png, None), Err(ExifError::Png));
        assert_eq!(stamp(b"hello, this is text", None), Err(ExifError::NotJpeg));
        assert_eq!(stamp(b"", None), Err(ExifError::NotJpeg));
        let cut = &jpeg()[..jpeg().len() - 4];
        assert!(matches!(stamp(cut, None), Err(ExifError::Broken(m)) if m.contains("end-of-image")));
        let mut bad_len = jpeg();
        bad_len[4..6].copy_from_slice(&[0x7F, 0xFF]);
        assert!(matches!(stamp(&bad_len, None), Err(ExifError::Broken(m)) if m.contains("bad length")));
        let no_sos = [0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x04, 0x00, 0x01, 0xFF, 0xD9];
        assert!(matches!(stamp(&no_sos, None), Err(ExifError::Broken(m)) if m.contains("FF D9")));
        let garbage = [0xFF, 0xD8, 0x12, 0x34, 0xFF, 0xD9];
        assert!(matches!(stamp(&garbage, None), Err(ExifError::Broken(m)) if m.contains("no segment marker")));
        let position = GpsStamp { lat: 91.0, lon: 0.0, at: at() };
        assert!(matches!(stamp(&jpeg(), Some(&position)), Err(ExifError::BadPosition(..))));
        let position = GpsStamp { lat: f64::NAN, lon: 0.0, at: at() };
        assert!(matches!(stamp(&jpeg(), Some(&position)), Err(ExifError::BadPosition(..))));
    }
}
