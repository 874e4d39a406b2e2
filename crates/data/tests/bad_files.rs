//! Bad input on disk: each is a clear message naming the file, never a panic.

use data::{decode_rgb, DataError, Dataset, DecodeLimits, ImageFolder, LoaderConfig};
use std::path::Path;

fn write_png(path: &Path, img: image::DynamicImage) {
    img.save_with_format(path, image::ImageFormat::Png).unwrap();
}

fn good_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([(x * 8) as u8, (y * 8) as u8, 128])
    });
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Jpeg).unwrap();
    buf.into_inner()
}

#[test]
fn colour_types_all_become_rgb() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_png(
        &d.join("rgba.png"),
        image::DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            4,
            3,
            image::Rgba([10, 20, 30, 0]),
        )),
    );
    write_png(
        &d.join("grey16.png"),
        image::DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(
            4,
            3,
            image::Luma([65535u16]),
        )),
    );
    write_png(
        &d.join("la.png"),
        image::DynamicImage::ImageLumaA8(image::ImageBuffer::from_pixel(
            4,
            3,
            image::LumaA([77u8, 5]),
        )),
    );
    let mut cmyk = Vec::new();
    let enc = jpeg_encoder::Encoder::new(&mut cmyk, 95);
    // Pure cyan-free, magenta-free, yellow-free, no black: white.
    enc.encode(&[0u8; 8 * 8 * 4], 8, 8, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    std::fs::write(d.join("cmyk.jpg"), &cmyk).unwrap();
    let lim = DecodeLimits::default();
    assert_eq!(
        decode_rgb(&d.join("rgba.png"), lim)
            .unwrap()
            .get_pixel(0, 0)
            .0,
        [10, 20, 30]
    );
    assert_eq!(
        decode_rgb(&d.join("grey16.png"), lim)
            .unwrap()
            .get_pixel(3, 2)
            .0,
        [255, 255, 255]
    );
    assert_eq!(
        decode_rgb(&d.join("la.png"), lim)
            .unwrap()
            .get_pixel(1, 1)
            .0,
        [77, 77, 77]
    );
    let c = decode_rgb(&d.join("cmyk.jpg"), lim).unwrap();
    assert_eq!((c.width(), c.height()), (8, 8));
    let p = c.get_pixel(4, 4).0;
    assert!(
        p.iter().all(|&v| v > 240) || p.iter().all(|&v| v < 15),
        "CMYK decoded to a uniform grey level, got {p:?}"
    );
}

#[test]
fn broken_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let jpeg = good_jpeg();
    std::fs::write(d.join("truncated.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    std::fs::write(d.join("empty.jpg"), b"").unwrap();
    std::fs::write(d.join("text.jpg"), b"this is not an image at all\n").unwrap();
    write_png(
        &d.join("huge.png"),
        image::DynamicImage::ImageLuma8(image::GrayImage::new(13_000, 1)),
    );
    let lim = DecodeLimits::default();
    for (name, want) in [
        ("truncated.jpg", "truncated JPEG"),
        ("empty.jpg", "not an image"),
        ("text.jpg", "not an image"),
        ("huge.png", "too large"),
    ] {
        let e = decode_rgb(&d.join(name), lim).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with(&d.join(name).display().to_string()), "{s}");
        assert!(s.contains(want), "{name}: {s}");
    }
}

fn tree(d: &Path) {
    for (split, classes) in [("train", ["cats", "dogs"]), ("valid", ["cats", "dogs"])] {
        for c in classes {
            std::fs::create_dir_all(d.join(split).join(c)).unwrap();
            std::fs::write(d.join(split).join(c).join("a.jpg"), good_jpeg()).unwrap();
        }
    }
}

#[test]
fn bad_images_are_skipped_and_counted_or_fatal_when_strict() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tree(d);
    std::fs::write(d.join("train/cats/broken.jpg"), b"garbage").unwrap();
    // A real photo cut to its first 3,000 bytes: the decoder alone would fill the rest with grey.
    let photo = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/sports15/test/golf/1.jpg"),
    )
    .unwrap();
    std::fs::write(d.join("train/dogs/cut.jpg"), &photo[..3000]).unwrap();
    std::fs::write(d.join("train/cats/notes.txt"), b"x").unwrap();
    std::fs::write(d.join("train/cats/.DS_Store"), b"x").unwrap();
    let ds = Dataset::load(
        &d.join("train"),
        None,
        LoaderConfig {
            height: 16,
            width: 16,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ds.len(), 2);
    let reasons: Vec<String> = ds
        .skipped
        .iter()
        .map(|s| {
            format!(
                "{}: {}",
                s.path.file_name().unwrap().to_string_lossy(),
                s.reason
            )
        })
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("cut.jpg:") && r.contains("truncated JPEG")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("broken.jpg:") && r.contains("not an image")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r == "notes.txt: not an image file"),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r == ".DS_Store: hidden file"),
        "{reasons:?}"
    );
    let strict = LoaderConfig {
        strict: true,
        height: 16,
        width: 16,
        ..Default::default()
    };
    let e = Dataset::load(&d.join("train"), None, strict).err().unwrap();
    assert!(e.to_string().contains("broken.jpg"), "{e}");
}

#[test]
fn folder_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tree(d);
    let e = ImageFolder::open(&d.join("test"), None).unwrap_err();
    assert!(
        matches!(e, DataError::MissingFolder { .. })
            && e.to_string().ends_with("test: no such folder"),
        "{e}"
    );
    std::fs::create_dir_all(d.join("valid/birds")).unwrap();
    let train = ImageFolder::open(&d.join("train"), None).unwrap();
    let e = ImageFolder::open(&d.join("valid"), Some(&train.classes))
        .unwrap_err()
        .to_string();
    assert!(e.contains("extra [\"birds\"]"), "{e}");
    std::fs::create_dir_all(d.join("train/birds")).unwrap();
    let e = ImageFolder::open(&d.join("train"), None)
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("birds: class folder holds no images"), "{e}");
}
