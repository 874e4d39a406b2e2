//! Is a JPEG file whole? The decoder fills a cut-off scan with grey and says nothing, so the marker
//! structure is walked instead: segments by their lengths (an EXIF thumbnail's own end marker inside
//! APP1 is skipped with its segment), entropy-coded data up to the next real marker, until the
//! end-of-image marker (`FF D9`). Running out of bytes before it means the file was truncated.
//! Bytes after the end marker (phones append trailers and videos there) are allowed.

/// Where the walk stopped, when the file is not a complete JPEG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JpegEnd {
    /// The end-of-image marker was reached.
    Complete,
    /// The bytes ran out at this offset, before the end-of-image marker.
    Truncated { at: usize },
    /// Not a JPEG marker structure at this offset.
    Malformed { at: usize },
}

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;

/// Walks the markers of `bytes` (which start with `FF D8`).
pub fn jpeg_end(bytes: &[u8]) -> JpegEnd {
    if bytes.len() < 2 || bytes[0] != 0xFF || bytes[1] != SOI {
        return JpegEnd::Malformed { at: 0 };
    }
    let mut i = 2;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while i < bytes.len() && bytes[i] == 0xFF && bytes.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        let (Some(&ff), Some(&marker)) = (bytes.get(i), bytes.get(i + 1)) else {
            return JpegEnd::Truncated { at: bytes.len() };
        };
        if ff != 0xFF {
            return JpegEnd::Malformed { at: i };
        }
        i += 2;
        match marker {
            EOI => return JpegEnd::Complete,
            // Standalone markers: restart markers, TEM.
            0xD0..=0xD7 | 0x01 => continue,
            _ => {}
        }
        let Some(len) = bytes
            .get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        else {
            return JpegEnd::Truncated { at: bytes.len() };
        };
        if len < 2 {
            return JpegEnd::Malformed { at: i };
        }
        i += len;
        if i > bytes.len() {
            return JpegEnd::Truncated { at: bytes.len() };
        }
        if marker == SOS {
            i = match skip_entropy_coded(bytes, i) {
                Some(next) => next,
                None => return JpegEnd::Truncated { at: bytes.len() },
            };
        }
    }
}

/// The offset of the first marker after entropy-coded data starting at `i`: `FF 00` is a stuffed
/// data byte and `FF D0..D7` a restart marker inside the scan; any other `FF xx` ends it.
fn skip_entropy_coded(bytes: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let at = i + bytes.get(i..)?.iter().position(|&b| b == 0xFF)?;
        match bytes.get(at + 1) {
            None => return None,
            Some(0x00) | Some(0xD0..=0xD7) | Some(0xFF) => i = at + 1,
            Some(_) => return Some(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 5) as u8, (x ^ y) as u8])
        });
        let mut buf = std::io::Cursor::new(Vec::new());
        img.write_to(&mut buf, image::ImageFormat::Jpeg).unwrap();
        buf.into_inner()
    }

    #[test]
    fn a_whole_file_is_complete_and_every_cut_is_not() {
        let b = jpeg(40, 30);
        assert_eq!(jpeg_end(&b), JpegEnd::Complete);
        for cut in 2..b.len() - 1 {
            let r = jpeg_end(&b[..cut]);
            assert!(
                matches!(r, JpegEnd::Truncated { .. }),
                "cut at {cut} of {}: {r:?}",
                b.len()
            );
        }
    }

    #[test]
    fn trailing_bytes_after_the_end_marker_are_allowed() {
        let mut b = jpeg(16, 16);
        b.extend_from_slice(b"appended video or maker trailer \xFF\xD8\x00");
        assert_eq!(jpeg_end(&b), JpegEnd::Complete);
    }

    #[test]
    fn an_end_marker_inside_a_segment_does_not_count() {
        // An APP1 segment holding a complete thumbnail (with its own FF D9), then the cut main image.
        let main = jpeg(32, 32);
        let thumb = jpeg(8, 8);
        let mut b = vec![0xFF, 0xD8, 0xFF, 0xE1];
        b.extend_from_slice(&((thumb.len() + 2) as u16).to_be_bytes());
        b.extend_from_slice(&thumb);
        b.extend_from_slice(&main[2..]);
        assert_eq!(jpeg_end(&b), JpegEnd::Complete);
        let cut = &b[..b.len() - 40];
        assert!(matches!(jpeg_end(cut), JpegEnd::Truncated { .. }));
    }

    #[test]
    fn not_a_jpeg_is_malformed() {
        assert_eq!(jpeg_end(b"\x89PNG"), JpegEnd::Malformed { at: 0 });
        assert_eq!(jpeg_end(b"\xFF\xD8garbage"), JpegEnd::Malformed { at: 2 });
    }
}
