//! Runtime choice of the instruction set for the auto-vectorised loops (tract's `linalg` idea in
//! small): a kernel body is written once as an `#[inline(always)]` function, compiled again inside
//! `#[target_feature]` wrappers, and the best version the CPU supports is picked once.
//! `TENSOR_CORE_SIMD=generic` forces the portable build (for CI and comparisons).

use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Generic,
    Avx2,
    Avx512,
}

/// The level in use, detected once.
pub fn level() -> Level {
    static L: OnceLock<Level> = OnceLock::new();
    *L.get_or_init(|| {
        if std::env::var("TENSOR_CORE_SIMD").is_ok_and(|v| v == "generic") {
            return Level::Generic;
        }
        #[cfg(target_arch = "x86_64")]
        {
            // Every tier enables all of these in its `#[target_feature]` wrappers.
            let avx2_fma = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            if is_x86_feature_detected!("avx512f") && avx2_fma {
                return Level::Avx512;
            }
            if avx2_fma {
                return Level::Avx2;
            }
        }
        Level::Generic
    })
}

/// Defines `$name` calling `$body` (an `#[inline(always)]` fn with the same arguments) compiled
/// for the best available instruction set.
#[macro_export]
macro_rules! multiversion {
    ($vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) => $body:path) => {
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) { $body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) { $body($($arg),*) }
                match $crate::simd::level() {
                    // SAFETY: `level()` reported these features present on this CPU.
                    $crate::simd::Level::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::simd::Level::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::simd::Level::Generic => {}
                }
            }
            $body($($arg),*)
        }
    };
}

/// Runs `f` compiled for the best available instruction set: the closure, and every
/// `#[inline(always)]` function it calls, is compiled again inside `#[target_feature]` wrappers
/// (a closure called once is inlined into its caller). For the element-wise loops of batch-norm and
/// activations, which the baseline x86-64 target would leave at two f64 or four f32 lanes.
/// Put the whole loop inside `f`: a rayon task per chunk calls this once per chunk.
#[inline(always)]
pub fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        match level() {
            // SAFETY: `level()` reported these features present on this CPU.
            Level::Avx512 => return unsafe { avx512(f) },
            // SAFETY: as above.
            Level::Avx2 => return unsafe { avx2(f) },
            Level::Generic => {}
        }
    }
    f()
}
