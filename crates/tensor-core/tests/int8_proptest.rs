//! Every integer kernel on every instruction set this CPU has equals the plain reference exactly.

use proptest::prelude::*;
use tensor_core::conv::ConvGeom;
use tensor_core::int8::add::{self, AddParams};
use tensor_core::int8::{depthwise, pointwise, reference, Isa, PackedWeights, QParams, Requant};
use tensor_core::Padding;

fn requant(n: usize, seed: &[f32], zp: i32, lo: u8, hi: u8) -> Requant {
    Requant {
        multiplier: (0..n).map(|c| seed[c % seed.len()]).collect(),
        zero_point: zp,
        lo: lo.min(hi),
        hi: hi.max(lo),
    }
}

fn isas() -> Vec<Isa> {
    let v = Isa::available().to_vec();
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        let all = [Isa::Portable, Isa::Avx2, Isa::Avx512Vnni, Isa::Amx];
        let absent: Vec<Isa> = all.into_iter().filter(|i| !v.contains(i)).collect();
        eprintln!("int8 kernels checked on {v:?}; not on this CPU: {absent:?}");
    });
    // The tiers this CPU claims must include the one in use.
    assert!(
        v.contains(&Isa::detect()),
        "{:?} not in {v:?}",
        Isa::detect()
    );
    v
}

/// One pointwise case on every instruction set against the reference.
fn pointwise_case(
    [rows, k, n]: [usize; 3],
    [zp_a, zp_o]: [i32; 2],
    lo: u8,
    hi: u8,
    mult: &[f32],
    seed: u64,
) -> Result<(), TestCaseError> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let a: Vec<u8> = (0..rows * k).map(|_| rng.gen()).collect();
    let w: Vec<i8> = (0..k * n).map(|_| rng.gen()).collect();
    let bias: Vec<i32> = (0..n).map(|_| rng.gen_range(-50_000..50_000)).collect();
    let rq = requant(n, mult, zp_o, lo, hi);
    let mut want = vec![0u8; rows * n];
    reference::pointwise(&a, rows, k, zp_a, &w, n, &bias, &rq, &mut want);
    let packed = PackedWeights::pack(&w, k, n).unwrap();
    for isa in isas() {
        let mut got = vec![7u8; rows * n];
        pointwise::forward(isa, &a, rows, zp_a, &packed, &bias, &rq, &mut got).unwrap();
        prop_assert_eq!(&got, &want, "{:?} rows {} k {} n {}", isa, rows, k, n);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The pooled means equal the reference's exactly (both sum integers, then round once).
    #[test]
    fn global_avg_pool_equals_reference(
        n in 0usize..4, pixels in 1usize..70, c in 1usize..150,
        scale in 1e-3f32..1.0, zero_point in 0i32..256, seed in any::<u64>(),
    ) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let x: Vec<u8> = (0..n * pixels * c).map(|_| rng.gen()).collect();
        let q = QParams { scale, zero_point };
        let mut want = vec![0f32; n * c];
        reference::global_avg_pool(&x, n, pixels, c, q, &mut want);
        let mut got = vec![f32::NAN; n * c];
        tensor_core::int8::pool::global_avg_pool(&x, n, pixels, c, q, &mut got).unwrap();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn pointwise_equals_reference(
        rows in 0usize..20, k in 1usize..41, n in 1usize..70,
        zp_a in 0i32..256, zp_o in 0i32..256, lo in any::<u8>(), hi in any::<u8>(),
        // Multipliers above 1 too: most outputs then saturate at the clamp.
        mult in prop::collection::vec(prop_oneof![3 => 1e-4f32..0.05, 1 => 0.5f32..3.0], 1..8),
        seed in any::<u64>(),
    ) {
        pointwise_case([rows, k, n], [zp_a, zp_o], lo, hi, &mult, seed)?;
    }

    /// Sizes past one AMX tile in every direction (32-row panels, 64-channel chunks, column
    /// pairs), so that every tail of the tiled kernels is crossed.
    #[test]
    fn pointwise_equals_reference_past_a_tile(
        rows in 1usize..120, k in 1usize..300, n in 1usize..100,
        zp_a in 0i32..256, zp_o in 0i32..256,
        mult in prop::collection::vec(1e-6f32..1e-3, 1..8),
        seed in any::<u64>(),
    ) {
        pointwise_case([rows, k, n], [zp_a, zp_o], 0, 255, &mult, seed)?;
    }

    #[test]
    fn depthwise_equals_reference(
        n in 1usize..3, h in 1usize..10, w in 1usize..10, c in 1usize..140,
        kh in 1usize..4, kw in 1usize..4, stride in 1usize..3, pad in 0usize..3,
        zp_x in 0i32..256, zp_o in 0i32..256, lo in any::<u8>(), hi in any::<u8>(),
        mult in prop::collection::vec(1e-3f32..0.2, 1..8), seed in any::<u64>(),
    ) {
        use rand::{Rng, SeedableRng};
        let padding = match pad {
            0 => Padding::Valid,
            1 => Padding::Same,
            _ => Padding::Explicit { top: 1, bottom: 0, left: 0, right: 1 },
        };
        let geom = ConvGeom::depthwise("test", &[n, h, w, c], &[kh, kw, c, 1], stride, padding);
        prop_assume!(geom.is_ok());
        let g = geom.unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let x: Vec<u8> = (0..n * h * w * c).map(|_| rng.gen()).collect();
        let wt: Vec<i8> = (0..kh * kw * c).map(|_| rng.gen()).collect();
        let bias: Vec<i32> = (0..c).map(|_| rng.gen_range(-5_000..5_000)).collect();
        let rq = requant(c, &mult, zp_o, lo, hi);
        let size = n * g.rows.out * g.cols.out * c;
        let mut want = vec![0u8; size];
        reference::depthwise(&g, &x, zp_x, &wt, &bias, &rq, &mut want);
        for isa in isas() {
            let mut got = vec![7u8; size];
            depthwise::forward(isa, &g, &x, zp_x, &wt, &bias, &rq, &mut got).unwrap();
            prop_assert_eq!(&got, &want, "{:?}", isa);
        }
    }

    #[test]
    fn conv_equals_reference(
        n in 1usize..3, h in 1usize..9, w in 1usize..9, cin in 1usize..6, cout in 1usize..40,
        kh in 1usize..4, kw in 1usize..4, stride in 1usize..3, same in any::<bool>(),
        zp_x in 0i32..256, zp_o in 0i32..256, lo in any::<u8>(), hi in any::<u8>(),
        mult in prop::collection::vec(1e-4f32..0.05, 1..8), seed in any::<u64>(),
    ) {
        use rand::{Rng, SeedableRng};
        let padding = if same { Padding::Same } else { Padding::Valid };
        let geom = ConvGeom::new("test", &[n, h, w, cin], &[kh, kw, cin, cout], stride, padding);
        prop_assume!(geom.is_ok());
        let g = geom.unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let x: Vec<u8> = (0..n * h * w * cin).map(|_| rng.gen()).collect();
        let wt: Vec<i8> = (0..kh * kw * cin * cout).map(|_| rng.gen()).collect();
        let bias: Vec<i32> = (0..cout).map(|_| rng.gen_range(-5_000..5_000)).collect();
        let rq = requant(cout, &mult, zp_o, lo, hi);
        let size = n * g.rows.out * g.cols.out * cout;
        let mut want = vec![0u8; size];
        reference::conv(&g, &x, zp_x, &wt, &bias, &rq, &mut want);
        let packed = PackedWeights::pack(&wt, kh * kw * cin, cout).unwrap();
        for isa in isas() {
            let mut got = vec![7u8; size];
            tensor_core::int8::conv::forward(isa, &g, &x, zp_x, &packed, &bias, &rq, &mut got).unwrap();
            prop_assert_eq!(&got, &want, "{:?}", isa);
        }
    }

    #[test]
    fn add_equals_reference(
        len in 0usize..70_000, sa in 1e-3f32..1.0, sb in 1e-3f32..1.0, so in 1e-3f32..1.0,
        za in 0i32..256, zb in 0i32..256, zo in 0i32..256, seed in any::<u64>(),
    ) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let a: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let b: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let q = |scale, zero_point| QParams { scale, zero_point };
        let p = AddParams::new(q(sa, za), q(sb, zb), q(so, zo));
        let mut want = vec![0u8; len];
        reference::add(&a, &b, &p, &mut want);
        for isa in isas() {
            let mut got = vec![0u8; len];
            add::forward(isa, &a, &b, &p, &mut got).unwrap();
            prop_assert_eq!(&got, &want, "{:?}", isa);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The vector encodings equal `QParams::quantize`, NaN and values far out of range included.
    #[test]
    fn quantize_equals_reference(
        x in prop::collection::vec(prop_oneof![-1e3f32..1e3, Just(f32::NAN), Just(f32::INFINITY), Just(-0.0)], 0..300),
        scale in 1e-3f32..1.0, zero_point in 0i32..256,
    ) {
        let q = QParams { scale, zero_point };
        let want: Vec<u8> = x.iter().map(|&v| q.quantize(v)).collect();
        for isa in isas() {
            let mut got = vec![0u8; x.len()];
            tensor_core::int8::quant::quantize_slice(isa, &x, q, &mut got).unwrap();
            prop_assert_eq!(&got, &want, "{:?}", isa);
        }
    }
}

/// The pooled mean is the mean of the dequantized codes, and the extents are checked.
#[test]
fn global_avg_pool_means_the_real_values() {
    use tensor_core::int8::pool::global_avg_pool;
    let q = QParams {
        scale: 0.5,
        zero_point: 10,
    };
    // One image, two pixels, two channels: codes (12, 10) and (16, 11).
    let mut out = [0f32; 2];
    global_avg_pool(&[12, 10, 16, 11], 1, 2, 2, q, &mut out).unwrap();
    assert_eq!(out, [2.0, 0.25]); // ((2 + 6) / 2) * 0.5, ((0 + 1) / 2) * 0.5
    let err = global_avg_pool(&[1, 2, 3], 1, 2, 2, q, &mut out).unwrap_err();
    assert!(err.to_string().contains("average pool"), "{err}");
}

/// Layers wider than one tile (several column blocks, a partial last one), with multipliers all
/// below 1 and with some above.
#[test]
fn pointwise_wide_layers_equal_reference() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for (rows, k, n) in [(13, 16, 96), (8, 144, 200), (7, 962, 70)] {
        for mult in [&[0.004f32, 0.0009][..], &[0.004, 1.7]] {
            let a: Vec<u8> = (0..rows * k).map(|_| rng.gen()).collect();
            let w: Vec<i8> = (0..k * n).map(|_| rng.gen()).collect();
            let bias: Vec<i32> = (0..n).map(|_| rng.gen_range(-50_000..50_000)).collect();
            let rq = requant(n, mult, 9, 2, 240);
            let mut want = vec![0u8; rows * n];
            reference::pointwise(&a, rows, k, 117, &w, n, &bias, &rq, &mut want);
            let packed = PackedWeights::pack(&w, k, n).unwrap();
            for isa in isas() {
                let mut got = vec![7u8; rows * n];
                pointwise::forward(isa, &a, rows, 117, &packed, &bias, &rq, &mut got).unwrap();
                assert_eq!(got, want, "{isa:?} rows {rows} k {k} n {n} mult {mult:?}");
            }
        }
    }
}

/// Sums as large as the widest layers reach (K = 960 at the extremes of both ranges) stay exact.
#[test]
fn pointwise_extreme_codes_are_exact() {
    let (rows, k, n) = (7, 962, 33);
    for (av, wv) in [(255u8, 127i8), (255, -128), (0, -128)] {
        let a = vec![av; rows * k];
        let w = vec![wv; k * n];
        let bias = vec![0; n];
        let rq = requant(n, &[1e-6], 128, 0, 255);
        let mut want = vec![0u8; rows * n];
        reference::pointwise(&a, rows, k, 0, &w, n, &bias, &rq, &mut want);
        let expected = rq.apply(av as i32 * wv as i32 * k as i32, 0);
        assert!(
            want.iter().all(|&v| v == expected),
            "reference {want:?} vs {expected}"
        );
        let packed = PackedWeights::pack(&w, k, n).unwrap();
        for isa in isas() {
            let mut got = vec![0u8; rows * n];
            pointwise::forward(isa, &a, rows, 0, &packed, &bias, &rq, &mut got).unwrap();
            assert_eq!(got, want, "{isa:?}");
        }
    }
}

/// The 3x3 kernels (the vector path) on MobileNetV2-like shapes: whole and partial channel
/// blocks (of 16 and of 64 channels), narrow layers (several pixels a vector), stride 1 and 2, Keras's asymmetric stride-2 padding, extreme codes.
#[test]
fn depthwise_3x3_equals_reference_on_network_shapes() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let keras_s2 = Padding::Explicit {
        top: 0,
        bottom: 1,
        left: 0,
        right: 1,
    };
    for (h, c, stride, padding) in [
        (14, 32, 1, Padding::Same),
        (15, 40, 2, keras_s2),
        (7, 96, 1, Padding::Same),
        (9, 24, 2, Padding::Same),
        (6, 64, 1, Padding::Valid),
        (10, 16, 1, Padding::Same),
        (
            6,
            8,
            1,
            Padding::Explicit {
                top: 1,
                bottom: 0,
                left: 2,
                right: 0,
            },
        ),
        (5, 1, 1, Padding::Same),
        (7, 144, 1, Padding::Same),
        (5, 200, 2, keras_s2),
    ] {
        let g =
            ConvGeom::depthwise("test", &[2, h, h + 1, c], &[3, 3, c, 1], stride, padding).unwrap();
        for (lo_x, hi_x) in [(0u8, 255u8), (250, 255), (0, 3)] {
            let x: Vec<u8> = (0..2 * h * (h + 1) * c)
                .map(|_| rng.gen_range(lo_x..=hi_x))
                .collect();
            let w: Vec<i8> = (0..9 * c).map(|_| rng.gen()).collect();
            let bias: Vec<i32> = (0..c).map(|_| rng.gen_range(-9_000..9_000)).collect();
            let rq = requant(c, &[0.003, 0.0007, 0.01], 121, 5, 250);
            let size = 2 * g.rows.out * g.cols.out * c;
            let mut want = vec![0u8; size];
            reference::depthwise(&g, &x, 128, &w, &bias, &rq, &mut want);
            for isa in isas() {
                let mut got = vec![0u8; size];
                depthwise::forward(isa, &g, &x, 128, &w, &bias, &rq, &mut got).unwrap();
                assert_eq!(got, want, "{isa:?} h {h} c {c} stride {stride}");
            }
        }
    }
}

/// Mismatched extents are errors, not reads past a slice.
#[test]
fn pointwise_checks_extents() {
    let packed = PackedWeights::pack(&[1, 2, 3, 4, 5, 6], 2, 3).unwrap();
    let rq = requant(3, &[0.1], 0, 0, 255);
    let mut out = vec![0u8; 6];
    for (a, bias) in [(vec![0u8; 3], vec![0; 3]), (vec![0u8; 4], vec![0; 2])] {
        let r = pointwise::forward(Isa::detect(), &a, 2, 0, &packed, &bias, &rq, &mut out);
        assert!(
            r.is_err(),
            "{} codes, {} biases accepted",
            a.len(),
            bias.len()
        );
    }
    let bad = Requant {
        zero_point: 300,
        ..rq
    };
    let r = pointwise::forward(
        Isa::detect(),
        &[0; 4],
        2,
        0,
        &packed,
        &[0; 3],
        &bad,
        &mut out,
    );
    assert!(r.is_err());
}
