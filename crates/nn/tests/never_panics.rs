//! Weight and checkpoint files never make the loaders panic: random bytes, and real `.npy` and
//! `.npz` files cut short or with bytes overwritten, are either read or refused with an error
//! naming the file.

use nn::vars::{read_npy, read_npz, VarStore};
use nn::Tensor;
use proptest::prelude::*;

/// A valid `.npz` checkpoint and a valid `.npy` array, as bytes.
fn samples() -> (Vec<u8>, Vec<u8>) {
    let d = tempfile::tempdir().unwrap();
    let t = |shape: &[usize], seed: f32| {
        let n: usize = shape.iter().product();
        Tensor::from_shape_vec(shape.to_vec(), (0..n).map(|i| seed + i as f32).collect()).unwrap()
    };
    let npz = d.path().join("c.npz");
    nn::checkpoint::save_npz(
        &npz,
        &[
            ("dense/kernel".into(), t(&[4, 3], 0.5)),
            ("dense/bias".into(), t(&[3], 1.0)),
            ("optimizer/iterations".into(), t(&[2], 0.0)),
        ],
    )
    .unwrap();
    let npy = d.path().join("a.npy");
    ndarray_npy::write_npy(&npy, &t(&[2, 5], 2.0)).unwrap();
    (std::fs::read(npz).unwrap(), std::fs::read(npy).unwrap())
}

fn damage(bytes: &[u8], cut: f64, flips: &[(f64, u8)]) -> Vec<u8> {
    let mut b = bytes[..((bytes.len() as f64 * cut) as usize).max(1)].to_vec();
    for &(pos, v) in flips {
        let i = ((b.len() - 1) as f64 * pos) as usize;
        b[i] = v;
    }
    b
}

/// Every loader on `bytes`, each either Ok or an error naming the file.
fn load_all(bytes: &[u8]) {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("case.npz");
    std::fs::write(&file, bytes).unwrap();
    let named = |e: String| assert!(e.contains("case.npz"), "{e}");
    if let Err(e) = read_npz(&file) {
        named(e.to_string());
    }
    if let Err(e) = nn::checkpoint::load_npz(&file) {
        named(e.to_string());
    }
    if let Err(e) = VarStore::open(&file) {
        named(e.to_string());
    }
    let npy = d.path().join("layer/kernel.npy");
    std::fs::create_dir_all(npy.parent().unwrap()).unwrap();
    std::fs::write(&npy, bytes).unwrap();
    if let Err(e) = read_npy(&npy) {
        assert!(e.to_string().contains("kernel.npy"), "{e}");
    }
    let _ = VarStore::open(d.path());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        load_all(&bytes);
    }

    #[test]
    fn damaged_real_files(
        npz in any::<bool>(),
        cut in 0.0f64..=1.0,
        flips in prop::collection::vec((0.0f64..1.0, any::<u8>()), 0..6),
    ) {
        let (z, y) = samples();
        load_all(&damage(if npz { &z } else { &y }, cut, &flips));
    }
}

#[test]
fn the_undamaged_samples_load() {
    let (z, y) = samples();
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("c.npz"), &z).unwrap();
    std::fs::write(d.path().join("a.npy"), &y).unwrap();
    assert_eq!(read_npz(&d.path().join("c.npz")).unwrap().len(), 3);
    assert_eq!(read_npy(&d.path().join("a.npy")).unwrap().shape(), [2, 5]);
}
