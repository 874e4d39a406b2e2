//! Integer inference kernels: activations are `u8` with a zero point (asymmetric, per tensor),
//! weights are `i8` (symmetric, per output channel), sums are exact `i32`, and each output is
//! requantized once, with its bias and ReLU6 folded into the clamp ([`Requant`]).
//!
//! Every kernel has a plain twin in [`reference`]; the fast versions (AMX `tdpbusd` tiles for the
//! 1x1 convolutions, AVX-512 VNNI `vpdpbusd`, AVX2 `vpmaddwd` on widened bytes, a portable loop
//! over the packed layout) must equal it exactly
//! (tests/int8_proptest.rs). Which one runs is detected once ([`Isa::detect`]).

pub mod add;
#[cfg(target_arch = "x86_64")]
mod amx;
pub mod conv;
pub mod depthwise;
#[cfg(target_arch = "x86_64")]
mod depthwise_vnni;
pub mod pack;
pub mod pointwise;
pub mod pool;
pub mod quant;
pub mod reference;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use pack::PackedWeights;
pub use quant::{QParams, Requant};

use std::sync::OnceLock;

/// The integer instruction sets the kernels come in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust over the packed layout.
    Portable,
    /// AVX2: bytes widened to `i16`, multiplied and pair-summed by `vpmaddwd` (exact).
    Avx2,
    /// AVX-512 with VNNI: `vpdpbusd` multiplies four `u8 x i8` pairs and adds them to an `i32`.
    Avx512Vnni,
    /// AVX-512 VNNI, with the 1x1 convolutions on AMX tiles (`tdpbusd`: 16 x 16 sums of 64
    /// products an instruction).
    Amx,
}

impl Isa {
    /// The best set this CPU has (all of its features detected), or `Portable` under
    /// `TENSOR_CORE_SIMD=generic`.
    pub fn detect() -> Isa {
        static I: OnceLock<Isa> = OnceLock::new();
        *I.get_or_init(|| {
            if crate::simd::level() == crate::simd::Level::Generic {
                return Isa::Portable;
            }
            Isa::available().last().copied().unwrap_or(Isa::Portable)
        })
    }

    /// Every set this CPU can run, slowest first (tests run each of them); detected once.
    pub fn available() -> &'static [Isa] {
        static A: OnceLock<Vec<Isa>> = OnceLock::new();
        A.get_or_init(Isa::probe)
    }

    /// Whether this CPU can run `self`.
    pub fn supported(self) -> bool {
        Isa::available().contains(&self)
    }

    /// Whether `self` includes AVX-512 VNNI and this CPU has it (the kernels other than the 1x1
    /// convolution run the same code on `Avx512Vnni` and `Amx`).
    pub fn runs_vnni(self) -> bool {
        matches!(self, Isa::Avx512Vnni | Isa::Amx) && Isa::Avx512Vnni.supported()
    }

    fn probe() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut v = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                v.push(Isa::Avx2);
            }
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni")
            {
                v.push(Isa::Avx512Vnni);
                if amx::enable() {
                    v.push(Isa::Amx);
                }
            }
        }
        v
    }
}
