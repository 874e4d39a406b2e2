//! The quantized model file: `MNV2INT8`, a format version (u32 LE), the length of a JSON header
//! (u64 LE), the header (steps, encodings, the model card), then the tensors' bytes (little
//! endian), each referenced from the header by offset and length. Reading checks every length,
//! offset and value before anything runs; arbitrary bytes give an error, never a panic.

use super::{Calibration, QOp, QStep, QuantizedPlan};
use crate::folded::Op;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tensor_core::int8::add::AddParams;
use tensor_core::int8::{PackedWeights, QParams, Requant};
use tensor_core::{Activation, Padding};

const MAGIC: &[u8; 8] = b"MNV2INT8";
const VERSION: u32 = 1;

/// What a user of the file needs besides the network: class names and how to feed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizedInfo {
    pub labels: Vec<String>,
    /// Pixel scaling (`mobilenet`, `unit`, ...), as the app names it.
    pub preprocess: String,
    /// Resize interpolation (`bilinear`, `nearest`).
    pub interpolation: String,
    /// Where the f32 model came from.
    pub source: String,
}

#[derive(Serialize, Deserialize)]
struct Header {
    height: usize,
    width: usize,
    classes: usize,
    out: usize,
    calibration: Calibration,
    info: QuantizedInfo,
    steps: Vec<Stored>,
}

/// Bytes `offset..offset + len` of the data section.
#[derive(Serialize, Deserialize, Clone, Copy)]
struct Blob {
    offset: usize,
    len: usize,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    name: String,
    /// Graph nodes read; `null` is the image.
    inputs: Vec<Option<usize>>,
    out: usize,
    /// `(scale, zero point)` of the output codes.
    out_q: Option<(f32, i32)>,
    op: StoredOp,
}

#[derive(Serialize, Deserialize)]
struct StoredRequant {
    multiplier: Blob,
    zero_point: i32,
    lo: u8,
    hi: u8,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum StoredOp {
    Conv {
        shape: [usize; 4],
        w: Blob,
        bias: Blob,
        stride: usize,
        padding: [usize; 4],
        same: bool,
        act: String,
        depthwise: bool,
    },
    Scale {
        scale: Blob,
        shift: Blob,
        act: String,
    },
    Act {
        act: String,
    },
    Pad {
        pads: [usize; 4],
    },
    Add,
    Gap,
    Identity,
    Dense {
        shape: [usize; 2],
        w: Blob,
        b: Blob,
        act: String,
    },
    Quantize,
    ConvCodes {
        kh: usize,
        kw: usize,
        cin: usize,
        cout: usize,
        stride: usize,
        padding: [usize; 4],
        same: bool,
        w: Blob,
        bias: Blob,
        rq: StoredRequant,
    },
    Pointwise {
        k: usize,
        n: usize,
        w: Blob,
        bias: Blob,
        rq: StoredRequant,
    },
    Depthwise {
        kh: usize,
        kw: usize,
        channels: usize,
        stride: usize,
        padding: [usize; 4],
        same: bool,
        w: Blob,
        bias: Blob,
        rq: StoredRequant,
    },
    AddCodes {
        a_mult: f32,
        a_zp: i32,
        b_mult: f32,
        b_zp: i32,
        out_zp: i32,
    },
}

fn act_name(a: Activation) -> String {
    match a {
        Activation::Linear => "linear",
        Activation::Relu => "relu",
        Activation::Relu6 => "relu6",
    }
    .into()
}

fn act_of(s: &str) -> Result<Activation> {
    match s {
        "linear" => Ok(Activation::Linear),
        "relu" => Ok(Activation::Relu),
        "relu6" => Ok(Activation::Relu6),
        other => Err(Error::Config(format!("unknown activation {other:?}"))),
    }
}

/// `(pads, same)`: `valid` is all zeros and not same.
fn pads_of(p: Padding) -> ([usize; 4], bool) {
    match p {
        Padding::Valid => ([0; 4], false),
        Padding::Same => ([0; 4], true),
        Padding::Explicit {
            top,
            bottom,
            left,
            right,
        } => ([top, bottom, left, right], false),
    }
}

fn padding_of(pads: [usize; 4], same: bool) -> Padding {
    match (same, pads) {
        (true, _) => Padding::Same,
        (false, [0, 0, 0, 0]) => Padding::Valid,
        (false, [top, bottom, left, right]) => Padding::Explicit {
            top,
            bottom,
            left,
            right,
        },
    }
}

/// The data section being written.
#[derive(Default)]
struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    fn put<T: Copy, const B: usize>(&mut self, v: &[T], le: impl Fn(T) -> [u8; B]) -> Blob {
        let offset = self.bytes.len();
        for &x in v {
            self.bytes.extend_from_slice(&le(x));
        }
        Blob {
            offset,
            len: self.bytes.len() - offset,
        }
    }
    fn f32s(&mut self, v: &[f32]) -> Blob {
        self.put(v, f32::to_le_bytes)
    }
    fn i32s(&mut self, v: &[i32]) -> Blob {
        self.put(v, i32::to_le_bytes)
    }
    fn i8s(&mut self, v: &[i8]) -> Blob {
        self.put(v, i8::to_le_bytes)
    }
    fn requant(&mut self, rq: &Requant) -> StoredRequant {
        StoredRequant {
            multiplier: self.f32s(&rq.multiplier),
            zero_point: rq.zero_point,
            lo: rq.lo,
            hi: rq.hi,
        }
    }
}

/// The data section being read; every access is checked.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn get<T, const B: usize>(
        &self,
        b: Blob,
        what: &str,
        from: impl Fn([u8; B]) -> T,
    ) -> Result<Vec<T>> {
        let end = b
            .offset
            .checked_add(b.len)
            .filter(|&e| e <= self.bytes.len());
        let Some(end) = end.filter(|_| b.len.is_multiple_of(B)) else {
            return Err(Error::Config(format!(
                "{what}: bytes {}+{} are outside the data section ({} bytes) or not whole values",
                b.offset,
                b.len,
                self.bytes.len()
            )));
        };
        Ok(self.bytes[b.offset..end]
            .chunks_exact(B)
            .map(|c| from(c.try_into().expect("chunks of B bytes")))
            .collect())
    }
    fn f32s(&self, b: Blob, what: &str, len: usize) -> Result<Vec<f32>> {
        let v = self.get(b, what, f32::from_le_bytes)?;
        check_len(what, v.len(), len)?;
        if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
            return Err(Error::Config(format!("{what}: non-finite value {bad}")));
        }
        Ok(v)
    }
    fn i32s(&self, b: Blob, what: &str, len: usize) -> Result<Vec<i32>> {
        let v = self.get(b, what, i32::from_le_bytes)?;
        check_len(what, v.len(), len)?;
        Ok(v)
    }
    fn i8s(&self, b: Blob, what: &str, len: usize) -> Result<Vec<i8>> {
        let v = self.get(b, what, i8::from_le_bytes)?;
        check_len(what, v.len(), len)?;
        Ok(v)
    }
    fn requant(&self, r: &StoredRequant, what: &str, channels: usize) -> Result<Requant> {
        let rq = Requant {
            multiplier: self.f32s(r.multiplier, what, channels)?,
            zero_point: r.zero_point,
            lo: r.lo,
            hi: r.hi,
        };
        rq.check("int8 model")
            .map_err(|e| Error::Config(format!("{what}: {e}")))?;
        Ok(rq)
    }
}

fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    match got == want {
        true => Ok(()),
        false => Err(Error::Config(format!(
            "{what}: {got} values, its shape needs {want}"
        ))),
    }
}

/// An f32 op and its weights.
fn store_float(f: &Op, w: &mut Writer) -> Result<StoredOp> {
    Ok(match f {
        Op::Conv {
            w: k,
            bias,
            stride,
            padding,
            act,
            depthwise,
        } => {
            let (pads, same) = pads_of(*padding);
            let d = k.dim();
            StoredOp::Conv {
                shape: [d.0, d.1, d.2, d.3],
                w: w.f32s(&k.iter().copied().collect::<Vec<_>>()),
                bias: w.f32s(bias),
                stride: *stride,
                padding: pads,
                same,
                act: act_name(*act),
                depthwise: *depthwise,
            }
        }
        Op::Scale { scale, shift, act } => StoredOp::Scale {
            scale: w.f32s(scale),
            shift: w.f32s(shift),
            act: act_name(*act),
        },
        Op::Act(a) => StoredOp::Act { act: act_name(*a) },
        Op::Pad(((t, b), (l, r))) => StoredOp::Pad {
            pads: [*t, *b, *l, *r],
        },
        Op::Add => StoredOp::Add,
        Op::Gap => StoredOp::Gap,
        Op::Identity => StoredOp::Identity,
        Op::Dense { w: k, b, act } => StoredOp::Dense {
            shape: [k.nrows(), k.ncols()],
            w: w.f32s(&k.iter().copied().collect::<Vec<_>>()),
            b: w.f32s(&b.to_vec()),
            act: act_name(*act),
        },
        Op::Block(_) | Op::Packed(_) => {
            return Err(Error::Config(
                "a fused block or packed product cannot be stored".into(),
            ))
        }
    })
}

fn store_op(op: &QOp, w: &mut Writer) -> Result<StoredOp> {
    Ok(match op {
        QOp::Float(f) => store_float(f, w)?,
        QOp::Quantize => StoredOp::Quantize,
        QOp::Conv {
            w: p,
            kh,
            kw,
            stride,
            padding,
            bias,
            rq,
        } => {
            let (pads, same) = pads_of(*padding);
            StoredOp::ConvCodes {
                kh: *kh,
                kw: *kw,
                cin: p.k / (kh * kw).max(1),
                cout: p.n,
                stride: *stride,
                padding: pads,
                same,
                w: w.i8s(&p.unpack()),
                bias: w.i32s(bias),
                rq: w.requant(rq),
            }
        }
        QOp::Pointwise { w: p, bias, rq } => StoredOp::Pointwise {
            k: p.k,
            n: p.n,
            w: w.i8s(&p.unpack()),
            bias: w.i32s(bias),
            rq: w.requant(rq),
        },
        QOp::Depthwise {
            w: k,
            kh,
            kw,
            stride,
            padding,
            bias,
            rq,
        } => {
            let (pads, same) = pads_of(*padding);
            StoredOp::Depthwise {
                kh: *kh,
                kw: *kw,
                channels: bias.len(),
                stride: *stride,
                padding: pads,
                same,
                w: w.i8s(k),
                bias: w.i32s(bias),
                rq: w.requant(rq),
            }
        }
        QOp::Add(p) => StoredOp::AddCodes {
            a_mult: p.a_mult,
            a_zp: p.a_zp,
            b_mult: p.b_mult,
            b_zp: p.b_zp,
            out_zp: p.out_zp,
        },
    })
}

fn positive(what: &str, v: &[usize]) -> Result<()> {
    match v.iter().all(|&d| d > 0 && d < 1 << 24) {
        true => Ok(()),
        false => Err(Error::Config(format!("{what}: extents {v:?} out of range"))),
    }
}

/// The number of values of a tensor with these extents, refused past 2^31 (no tensor of a model
/// is near that; a damaged header could ask for an overflow).
fn volume(what: &str, v: &[usize]) -> Result<usize> {
    v.iter()
        .try_fold(1usize, |acc, &d| {
            acc.checked_mul(d).filter(|&p| p <= 1 << 31)
        })
        .ok_or_else(|| Error::Config(format!("{what}: a tensor of {v:?} is too large")))
}

fn load_op(s: &StoredOp, r: &Reader, what: &str) -> Result<QOp> {
    match s {
        StoredOp::Quantize
        | StoredOp::ConvCodes { .. }
        | StoredOp::Pointwise { .. }
        | StoredOp::Depthwise { .. }
        | StoredOp::AddCodes { .. } => load_integer(s, r, what),
        _ => load_float(s, r, what),
    }
}

/// An op that runs in f32 (its weights as they were folded).
fn load_float(s: &StoredOp, r: &Reader, what: &str) -> Result<QOp> {
    Ok(match s {
        StoredOp::Conv {
            shape,
            w,
            bias,
            stride,
            padding,
            same,
            act,
            depthwise,
        } => {
            positive(what, &[shape[0], shape[1], shape[2], shape[3], *stride])?;
            let len = volume(what, shape)?;
            let k = r.f32s(*w, what, len)?;
            let channels = if *depthwise {
                shape[2] * shape[3]
            } else {
                shape[3]
            };
            let w = ndarray::Array4::from_shape_vec((shape[0], shape[1], shape[2], shape[3]), k)
                .map_err(|e| Error::Config(format!("{what}: {e}")))?;
            QOp::Float(Op::Conv {
                w,
                bias: r.f32s(*bias, what, channels)?,
                stride: *stride,
                padding: padding_of(*padding, *same),
                act: act_of(act)?,
                depthwise: *depthwise,
            })
        }
        StoredOp::Scale { scale, shift, act } => {
            let n = scale.len / 4;
            QOp::Float(Op::Scale {
                scale: r.f32s(*scale, what, n)?,
                shift: r.f32s(*shift, what, n)?,
                act: act_of(act)?,
            })
        }
        StoredOp::Act { act } => QOp::Float(Op::Act(act_of(act)?)),
        StoredOp::Pad {
            pads: [t, b, l, rr],
        } => {
            if [t, b, l, rr].iter().any(|&&p| p > 1 << 12) {
                return Err(Error::Config(format!("{what}: padding out of range")));
            }
            QOp::Float(Op::Pad(((*t, *b), (*l, *rr))))
        }
        StoredOp::Add => QOp::Float(Op::Add),
        StoredOp::Gap => QOp::Float(Op::Gap),
        StoredOp::Identity => QOp::Float(Op::Identity),
        StoredOp::Dense { shape, w, b, act } => {
            positive(what, shape)?;
            let k = r.f32s(*w, what, volume(what, shape)?)?;
            QOp::Float(Op::Dense {
                w: ndarray::Array2::from_shape_vec((shape[0], shape[1]), k)
                    .map_err(|e| Error::Config(format!("{what}: {e}")))?,
                b: ndarray::Array1::from(r.f32s(*b, what, shape[1])?),
                act: act_of(act)?,
            })
        }
        _ => return Err(Error::Config(format!("{what}: not an f32 op"))),
    })
}

/// An op on codes (its weights and encodings as the quantizer wrote them).
fn load_integer(s: &StoredOp, r: &Reader, what: &str) -> Result<QOp> {
    Ok(match s {
        StoredOp::Quantize => QOp::Quantize,
        StoredOp::ConvCodes {
            kh,
            kw,
            cin,
            cout,
            stride,
            padding,
            same,
            w,
            bias,
            rq,
        } => {
            positive(what, &[*kh, *kw, *cin, *cout, *stride])?;
            let k = volume(what, &[*kh, *kw, *cin])?;
            let codes = r.i8s(*w, what, volume(what, &[k, *cout])?)?;
            QOp::Conv {
                w: PackedWeights::pack(&codes, k, *cout)?,
                kh: *kh,
                kw: *kw,
                stride: *stride,
                padding: padding_of(*padding, *same),
                bias: r.i32s(*bias, what, *cout)?,
                rq: r.requant(rq, what, *cout)?,
            }
        }
        StoredOp::Pointwise { k, n, w, bias, rq } => {
            positive(what, &[*k, *n])?;
            let codes = r.i8s(*w, what, volume(what, &[*k, *n])?)?;
            QOp::Pointwise {
                w: PackedWeights::pack(&codes, *k, *n)?,
                bias: r.i32s(*bias, what, *n)?,
                rq: r.requant(rq, what, *n)?,
            }
        }
        StoredOp::Depthwise {
            kh,
            kw,
            channels,
            stride,
            padding,
            same,
            w,
            bias,
            rq,
        } => {
            positive(what, &[*kh, *kw, *channels, *stride])?;
            QOp::Depthwise {
                w: r.i8s(*w, what, volume(what, &[*kh, *kw, *channels])?)?,
                kh: *kh,
                kw: *kw,
                stride: *stride,
                padding: padding_of(*padding, *same),
                bias: r.i32s(*bias, what, *channels)?,
                rq: r.requant(rq, what, *channels)?,
            }
        }
        StoredOp::AddCodes {
            a_mult,
            a_zp,
            b_mult,
            b_zp,
            out_zp,
        } => {
            let zps_ok = [a_zp, b_zp, out_zp].iter().all(|z| (0..=255).contains(*z));
            let mults_ok = [a_mult, b_mult].iter().all(|m| m.is_finite() && **m > 0.0);
            if !zps_ok || !mults_ok {
                return Err(Error::Config(format!(
                    "{what}: add parameters out of range"
                )));
            }
            QOp::Add(AddParams {
                a_mult: *a_mult,
                a_zp: *a_zp,
                b_mult: *b_mult,
                b_zp: *b_zp,
                out_zp: *out_zp,
            })
        }
        _ => return Err(Error::Config(format!("{what}: not an integer op"))),
    })
}

impl QuantizedPlan {
    /// The file's bytes.
    pub fn to_bytes(&self, info: &QuantizedInfo) -> Result<Vec<u8>> {
        let mut data = Writer::default();
        let steps = self
            .steps
            .iter()
            .map(|s| {
                Ok(Stored {
                    name: s.name.clone(),
                    inputs: s
                        .inputs
                        .iter()
                        .map(|&j| (j != nn::graph::INPUT).then_some(j))
                        .collect(),
                    out: s.out,
                    out_q: s.out_q.map(|q| (q.scale, q.zero_point)),
                    op: store_op(&s.op, &mut data)?,
                })
            })
            .collect::<Result<_>>()?;
        let header = Header {
            height: self.height,
            width: self.width,
            classes: self.classes,
            out: self.out,
            calibration: self.calibration.clone(),
            info: info.clone(),
            steps,
        };
        let json = serde_json::to_vec(&header).map_err(|e| Error::Config(e.to_string()))?;
        let mut out = Vec::with_capacity(20 + json.len() + data.bytes.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&data.bytes);
        Ok(out)
    }

    /// Parses a file's bytes; `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<(QuantizedPlan, QuantizedInfo)> {
        let bad = |msg: String| Error::File {
            path: path.to_path_buf(),
            msg,
        };
        if bytes.len() < 20 || &bytes[..8] != MAGIC {
            return Err(bad(
                "not a quantized model (no MNV2INT8 header); write one with `app quantize`".into(),
            ));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(bad(format!(
                "format version {version}; this build reads version {VERSION}"
            )));
        }
        let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(20))
            .filter(|&e| e <= bytes.len());
        let Some(end) = end else {
            return Err(bad(format!(
                "header of {len} bytes runs past the end of the file ({} bytes): truncated?",
                bytes.len()
            )));
        };
        let h: Header =
            serde_json::from_slice(&bytes[20..end]).map_err(|e| bad(format!("header: {e}")))?;
        let reader = Reader {
            bytes: &bytes[end..],
        };
        let steps = h
            .steps
            .iter()
            .map(|s| {
                let what = format!("step {}", s.name);
                let out_q = match s.out_q {
                    Some((scale, zero_point))
                        if scale.is_finite() && scale > 0.0 && (0..=255).contains(&zero_point) =>
                    {
                        Some(QParams { scale, zero_point })
                    }
                    Some(q) => {
                        return Err(Error::Config(format!(
                            "{what}: output encoding {q:?} out of range"
                        )))
                    }
                    None => None,
                };
                Ok(QStep {
                    name: s.name.clone(),
                    op: load_op(&s.op, &reader, &what)?,
                    inputs: s
                        .inputs
                        .iter()
                        .map(|j| j.unwrap_or(nn::graph::INPUT))
                        .collect(),
                    out: s.out,
                    out_q,
                })
            })
            .collect::<Result<Vec<_>>>()
            .map_err(|e| bad(e.to_string()))?;
        check_model(&h).map_err(bad)?;
        let plan = QuantizedPlan {
            steps,
            out: h.out,
            height: h.height,
            width: h.width,
            classes: h.classes,
            calibration: h.calibration,
        };
        Ok((plan, h.info))
    }

    pub fn load(path: &Path) -> Result<(QuantizedPlan, QuantizedInfo)> {
        let bytes = std::fs::read(path).map_err(|e| Error::File {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        Self::from_bytes(&bytes, path)
    }
}

/// The header's model description is consistent: sizes in range, one label a class, the logits
/// produced by some step.
fn check_model(h: &Header) -> std::result::Result<(), String> {
    if !(1..=1 << 14).contains(&h.height) || !(1..=1 << 14).contains(&h.width) {
        return Err(format!("input size {}x{} out of range", h.height, h.width));
    }
    if h.classes == 0 || h.info.labels.len() != h.classes {
        return Err(format!(
            "{} labels for {} classes",
            h.info.labels.len(),
            h.classes
        ));
    }
    if !h.steps.iter().any(|s| s.out == h.out) {
        return Err(format!("no step computes the output node {}", h.out));
    }
    Ok(())
}
