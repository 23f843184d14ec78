//! The decoder as an ONNX graph with Optimum's decoder-with-past interface:
//!
//! * inputs `input_ids` int64 `[batch, seq]`, `attention_mask` int64 `[batch, past + seq]`,
//!   `position_ids` int64 `[batch, seq]`, `past_key_values.{i}.key` / `.value` float
//!   `[batch, kv_heads, past, head_dim]` (a past of length 0 is a first step);
//! * outputs `logits` `[batch, seq, vocab]`, `present.{i}.key` / `.value`
//!   `[batch, kv_heads, past + seq, head_dim]`, keys after RoPE, KV heads unrepeated.
//!
//! Standard operators of opset 17 only, except `com.microsoft.MatMulNBits` for Q4_0 /
//! Q8_0 matrices. RoPE is the rotate-half form for every family: llama's Q/K rows,
//! permuted by the GGUF converter for adjacent-pair rotation, are put back in Hugging
//! Face order on export (a row permutation, so quantized blocks stay as they are).

use mote_model::spec::{Activation, AttnScale, RopeStyle};
use mote_tensor::DType;

use super::graph::Builder;
use super::proto::{value_info, Attr, Dim, ElemType};
use super::weights::{nbits, Part, WeightSource};
use crate::error::{ConvertError, Result};
use crate::export::model::ExportModel;
use crate::export::{ExportOptions, FloatType};

pub struct Graph {
    pub b: Builder,
    pub inputs: Vec<Vec<u8>>,
    pub outputs: Vec<Vec<u8>>,
}

struct Ctx<'m, 'f> {
    model: &'m ExportModel<'f>,
    opts: &'m ExportOptions,
    b: Builder,
}

const BATCH: Dim = Dim::Named("batch_size");
const SEQ: Dim = Dim::Named("sequence_length");
const PAST: Dim = Dim::Named("past_sequence_length");
const TOTAL: Dim = Dim::Named("total_sequence_length");

impl Ctx<'_, '_> {
    fn source(tensor: &str, part: Part, unpermute: Option<usize>) -> WeightSource {
        WeightSource {
            tensor: tensor.to_string(),
            part,
            unpermute,
        }
    }

    /// The float type a float or dequantized matrix is stored in.
    fn float_elem(&self, dtype: DType) -> Result<ElemType> {
        match (self.opts.dtype, dtype) {
            (Some(FloatType::F32), _) => Ok(ElemType::Float),
            (Some(FloatType::F16), _) | (None, DType::F16) => Ok(ElemType::Float16),
            (Some(FloatType::Bf16), _) => Err(ConvertError::Invalid(
                "--dtype bf16 is not offered for ONNX (f32, f16)".into(),
            )),
            (None, _) => Ok(ElemType::Float),
        }
    }

    /// A 1-D tensor (norm weight, bias) as an f32 initializer.
    fn vector(&mut self, tensor: &str, unpermute: Option<usize>) -> Result<String> {
        let info = self.model.tensor(tensor)?;
        let n = info.elements() as i64;
        Ok(self.b.weight(
            tensor.to_string(),
            ElemType::Float,
            vec![n],
            Self::source(tensor, Part::Rows, unpermute),
        ))
    }

    /// `x · Wᵀ (+ bias)` for GGUF matrix `tensor`.
    fn linear(&mut self, x: &str, tensor: &str, unpermute: Option<usize>) -> Result<String> {
        let info = self.model.tensor(tensor)?;
        let (n, k) = info.rows_cols();
        let hint = tensor.trim_end_matches(".weight");
        let out = match nbits(info.dtype) {
            Some(bits) if k % 32 == 0 => {
                let blocks = (k / 32) as i64;
                let data = self.b.weight(
                    format!("{hint}.qweight"),
                    ElemType::Uint8,
                    vec![n as i64, blocks, 32 * bits / 8],
                    Self::source(tensor, Part::NBitsData, unpermute),
                );
                let scales = self.b.weight(
                    format!("{hint}.scales"),
                    ElemType::Float,
                    vec![n as i64 * blocks],
                    Self::source(tensor, Part::NBitsScales, unpermute),
                );
                let mut inputs = vec![x.to_string(), data, scales];
                if bits == 8 {
                    inputs.push(self.b.weight(
                        format!("{hint}.zero_points"),
                        ElemType::Uint8,
                        vec![n as i64 * blocks],
                        Self::source(tensor, Part::NBitsZeros, None),
                    ));
                }
                let out = format!("{hint}/MatMulNBits");
                let ins: Vec<&str> = inputs.iter().map(|s| s.as_str()).collect();
                self.b.push(
                    "MatMulNBits",
                    "com.microsoft",
                    &ins,
                    &[&out],
                    vec![
                        ("K", Attr::Int(k as i64)),
                        ("N", Attr::Int(n as i64)),
                        ("bits", Attr::Int(bits)),
                        ("block_size", Attr::Int(32)),
                        ("accuracy_level", Attr::Int(self.opts.accuracy_level)),
                    ],
                );
                out
            }
            _ => {
                let float = matches!(info.dtype, DType::F32 | DType::F16 | DType::BF16);
                if !float && !self.opts.dequantize {
                    return Err(ConvertError::Invalid(format!(
                        "tensor {tensor:?} is {}, which ONNX cannot hold exactly (Q4_0 and Q8_0 \
                         map to MatMulNBits; F32/F16/BF16 to MatMul); pass --dequantize to \
                         store it as floats",
                        info.dtype
                    )));
                }
                let elem = self.float_elem(info.dtype)?;
                let mut w = self.b.weight(
                    tensor.to_string(),
                    elem,
                    vec![k as i64, n as i64],
                    Self::source(tensor, Part::Transposed, unpermute),
                );
                if elem == ElemType::Float16 {
                    w = self.b.cast(hint, &w, ElemType::Float);
                }
                self.b.op("MatMul", hint, &[x, &w])
            }
        };
        let bias = format!("{}.bias", hint);
        if self.model.file.tensor(&bias).is_some() {
            let bv = self.vector(&bias, unpermute)?;
            return Ok(self.b.add(hint, &out, &bv));
        }
        Ok(out)
    }

    /// RMS norm over the last axis with GGUF weight `tensor`.
    fn rms_norm(&mut self, x: &str, tensor: &str) -> Result<String> {
        let hint = tensor.trim_end_matches(".weight");
        let w = self.vector(tensor, None)?;
        let eps = self.b.float_scalar(self.model.cfg.rms_eps);
        let sq = self.b.mul(hint, x, x);
        let mean = self.b.op_attrs(
            "ReduceMean",
            hint,
            &[&sq],
            vec![("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))],
        );
        let var = self.b.add(hint, &mean, &eps);
        let root = self.b.op("Sqrt", hint, &[&var]);
        let normed = self.b.op("Div", hint, &[x, &root]);
        Ok(self.b.mul(hint, &normed, &w))
    }

    /// `x · cos + rotate_half(x) · sin` on `[batch, heads, seq, head_dim]`.
    fn rope(&mut self, hint: &str, x: &str, cos: &str, sin: &str) -> String {
        let hd = self.model.cfg.head_dim_k as i64;
        let x1 = self.b.slice_last(hint, x, 0, hd / 2);
        let x2 = self.b.slice_last(hint, x, hd / 2, hd);
        let neg = self.b.op("Neg", hint, &[&x2]);
        let rot = self.b.concat(hint, &[&neg, &x1], -1);
        let a = self.b.mul(hint, x, cos);
        let r = self.b.mul(hint, &rot, sin);
        self.b.add(hint, &a, &r)
    }

    /// cos and sin `[batch, 1, seq, head_dim]` for one RoPE setting.
    fn rope_tables(&mut self, base: f32, scale: f32, factors: Option<&[f32]>) -> (String, String) {
        let hd = self.model.cfg.head_dim_k;
        let inv: Vec<f32> = (0..hd / 2)
            .map(|i| {
                let f = (base as f64).powf(-2.0 * i as f64 / hd as f64);
                let d = factors.and_then(|fs| fs.get(i)).copied().unwrap_or(1.0);
                (f * scale as f64 / if d != 0.0 { d as f64 } else { 1.0 }) as f32
            })
            .collect();
        let hint = "rope";
        let pos = self.b.cast(hint, "position_ids", ElemType::Float);
        let pos = self.b.unsqueeze(hint, &pos, &[2]);
        let inv = self.b.floats(&inv);
        let freqs = self.b.mul(hint, &pos, &inv);
        let emb = self.b.concat(hint, &[&freqs, &freqs], -1);
        let cos = self.b.op("Cos", hint, &[&emb]);
        let sin = self.b.op("Sin", hint, &[&emb]);
        (
            self.b.unsqueeze(hint, &cos, &[1]),
            self.b.unsqueeze(hint, &sin, &[1]),
        )
    }

    /// The additive attention mask `[batch, 1, seq, total]`: causal, padding from
    /// `attention_mask`, and a sliding window of `window` keys if given.
    fn mask(&mut self, window: Option<usize>) -> String {
        let hint = "mask";
        let one = self.b.int_scalar(1);
        let zero = self.b.int_scalar(0);
        let ids_shape = self.b.op("Shape", hint, &["input_ids"]);
        let seq = self.b.op("Gather", hint, &[&ids_shape, &one]);
        let mask_shape = self.b.op("Shape", hint, &["attention_mask"]);
        let total = self.b.op("Gather", hint, &[&mask_shape, &one]);
        let past = self.b.op("Sub", hint, &[&total, &seq]);
        let kpos = self.b.op("Range", hint, &[&zero, &total, &one]);
        let qpos = self.b.op("Range", hint, &[&past, &total, &one]);
        let qcol = self.b.unsqueeze(hint, &qpos, &[1]);
        let mut allowed = self.b.op("LessOrEqual", hint, &[&kpos, &qcol]);
        if let Some(w) = window {
            let w = self.b.int_scalar(w as i64);
            let low = self.b.op("Sub", hint, &[&qcol, &w]);
            let inside = self.b.op("Greater", hint, &[&kpos, &low]);
            allowed = self.b.op("And", hint, &[&allowed, &inside]);
        }
        let allowed = self.b.unsqueeze(hint, &allowed, &[0, 1]);
        let pad = self.b.cast(hint, "attention_mask", ElemType::Bool);
        let pad = self.b.unsqueeze(hint, &pad, &[1, 2]);
        let allowed = self.b.op("And", hint, &[&allowed, &pad]);
        let keep = self.b.float_scalar(0.0);
        let drop = self.b.float_scalar(f32::MIN);
        self.b.op("Where", hint, &[&allowed, &keep, &drop])
    }

    fn activation(&mut self, hint: &str, g: &str) -> String {
        match self.model.spec.activation {
            Activation::Silu => {
                let s = self.b.op("Sigmoid", hint, &[g]);
                self.b.mul(hint, g, &s)
            }
            Activation::GeluTanh => {
                let c = self.b.float_scalar(0.797_884_6);
                let k = self.b.float_scalar(0.044_715);
                let half = self.b.float_scalar(0.5);
                let one = self.b.float_scalar(1.0);
                let x2 = self.b.mul(hint, g, g);
                let x3 = self.b.mul(hint, &x2, g);
                let kx3 = self.b.mul(hint, &x3, &k);
                let inner = self.b.add(hint, g, &kx3);
                let inner = self.b.mul(hint, &inner, &c);
                let t = self.b.op("Tanh", hint, &[&inner]);
                let t1 = self.b.add(hint, &t, &one);
                let hx = self.b.mul(hint, g, &half);
                self.b.mul(hint, &hx, &t1)
            }
        }
    }
}

pub fn build(model: &ExportModel, opts: &ExportOptions) -> Result<Graph> {
    let cfg = &model.cfg;
    let spec = model.spec;
    let mut c = Ctx {
        model,
        opts,
        b: Builder::default(),
    };
    let (h, kv, hd) = (
        cfg.n_head as i64,
        cfg.n_head_kv as i64,
        cfg.head_dim_k as i64,
    );
    let permute = spec.rope == RopeStyle::Adjacent;
    let q_perm = permute.then_some(cfg.n_head);
    let k_perm = permute.then_some(cfg.n_head_kv);

    let mut inputs = vec![
        value_info("input_ids", ElemType::Int64, &[BATCH, SEQ]),
        value_info("attention_mask", ElemType::Int64, &[BATCH, TOTAL]),
        value_info("position_ids", ElemType::Int64, &[BATCH, SEQ]),
    ];
    let mut outputs = vec![value_info(
        "logits",
        ElemType::Float,
        &[BATCH, SEQ, Dim::Fixed(cfg.vocab_size as i64)],
    )];
    let kv_dims = |len: Dim| [BATCH, Dim::Fixed(kv), len, Dim::Fixed(hd)];

    // The embedding table is gathered as floats (Q4_0/Q8_0 rows dequantize exactly).
    let embd = model.tensor("token_embd.weight")?;
    let embd_w = c.b.weight(
        "token_embd.rows".into(),
        ElemType::Float,
        vec![embd.dims[1] as i64, embd.dims[0] as i64],
        Ctx::source("token_embd.weight", Part::Rows, None),
    );
    let mut x = c.b.op("Gather", "embed", &[&embd_w, "input_ids"]);
    if spec.scale_embeddings {
        let s = c.b.float_scalar((cfg.n_embd as f32).sqrt());
        x = c.b.mul("embed", &x, &s);
    }

    let factors = match model.file.tensor("rope_freqs.weight") {
        Some(info) => Some(model.f32_values(info)?),
        None => None,
    };
    // One mask per window size and one cos/sin pair per RoPE setting, shared by layers.
    let mut masks: Vec<(Option<usize>, String)> = Vec::new();
    let mut ropes: Vec<((u32, u32), (String, String))> = Vec::new();

    for (il, lc) in cfg.layers.iter().enumerate() {
        let n = |s: &str| format!("blk.{il}.{s}");
        let mask = match masks.iter().find(|(w, _)| *w == lc.window) {
            Some((_, m)) => m.clone(),
            None => {
                let m = c.mask(lc.window);
                masks.push((lc.window, m.clone()));
                m
            }
        };
        let rope_key = (lc.rope_base.to_bits(), lc.rope_scale.to_bits());
        let (cos, sin) = match ropes.iter().find(|(k, _)| *k == rope_key) {
            Some((_, t)) => t.clone(),
            None => {
                let t = c.rope_tables(lc.rope_base, lc.rope_scale, factors.as_deref());
                ropes.push((rope_key, t.clone()));
                t
            }
        };
        let hint = format!("layer{il}");
        let hn = c.rms_norm(&x, &n("attn_norm.weight"))?;
        let q = c.linear(&hn, &n("attn_q.weight"), q_perm)?;
        let k = c.linear(&hn, &n("attn_k.weight"), k_perm)?;
        let v = c.linear(&hn, &n("attn_v.weight"), None)?;
        let heads = |c: &mut Ctx, t: &str, count: i64| {
            let r = c.b.reshape(&hint, t, &[0, 0, count, hd]);
            c.b.transpose(&hint, &r, &[0, 2, 1, 3])
        };
        let mut q = heads(&mut c, &q, h);
        let mut k = heads(&mut c, &k, kv);
        let v = heads(&mut c, &v, kv);
        if spec.qk_norm {
            q = c.rms_norm(&q, &n("attn_q_norm.weight"))?;
            k = c.rms_norm(&k, &n("attn_k_norm.weight"))?;
        }
        let mut q = c.rope(&hint, &q, &cos, &sin);
        let k = c.rope(&hint, &k, &cos, &sin);

        let (past_k, past_v) = (
            format!("past_key_values.{il}.key"),
            format!("past_key_values.{il}.value"),
        );
        let (pres_k, pres_v) = (format!("present.{il}.key"), format!("present.{il}.value"));
        inputs.push(value_info(&past_k, ElemType::Float, &kv_dims(PAST)));
        inputs.push(value_info(&past_v, ElemType::Float, &kv_dims(PAST)));
        outputs.push(value_info(&pres_k, ElemType::Float, &kv_dims(TOTAL)));
        outputs.push(value_info(&pres_v, ElemType::Float, &kv_dims(TOTAL)));
        let axis = vec![("axis", Attr::Int(2))];
        c.b.push("Concat", "", &[&past_k, &k], &[&pres_k], axis.clone());
        c.b.push("Concat", "", &[&past_v, &v], &[&pres_v], axis);

        // Gemma 3 scales the queries, the others the scores (as mote and llama.cpp do).
        let scale = c.b.float_scalar(cfg.attn_scale);
        if spec.attn_scale == AttnScale::Gemma3 {
            q = c.b.mul(&hint, &q, &scale);
        }
        // GQA without repeating K/V: the query heads of one KV head become rows.
        let qg = c.b.reshape(&hint, &q, &[0, kv, -1, hd]);
        let kt = c.b.transpose(&hint, &pres_k, &[0, 1, 3, 2]);
        let mut scores = c.b.op("MatMul", &hint, &[&qg, &kt]);
        if spec.attn_scale != AttnScale::Gemma3 {
            scores = c.b.mul(&hint, &scores, &scale);
        }
        let scores = c.b.reshape(&hint, &scores, &[0, h, -1, 0]);
        let scores = c.b.add(&hint, &scores, &mask);
        let probs =
            c.b.op_attrs("Softmax", &hint, &[&scores], vec![("axis", Attr::Int(-1))]);
        let probs = c.b.reshape(&hint, &probs, &[0, kv, -1, 0]);
        let attn = c.b.op("MatMul", &hint, &[&probs, &pres_v]);
        let attn = c.b.reshape(&hint, &attn, &[0, h, -1, hd]);
        let attn = c.b.transpose(&hint, &attn, &[0, 2, 1, 3]);
        let attn = c.b.reshape(&hint, &attn, &[0, 0, h * hd]);
        let mut o = c.linear(&attn, &n("attn_output.weight"), None)?;
        if spec.post_norms {
            o = c.rms_norm(&o, &n("post_attention_norm.weight"))?;
        }
        x = c.b.add(&hint, &x, &o);

        let hn = c.rms_norm(&x, &n("ffn_norm.weight"))?;
        let g = c.linear(&hn, &n("ffn_gate.weight"), None)?;
        let u = c.linear(&hn, &n("ffn_up.weight"), None)?;
        let a = c.activation(&hint, &g);
        let m = c.b.mul(&hint, &a, &u);
        let mut d = c.linear(&m, &n("ffn_down.weight"), None)?;
        if spec.post_norms {
            d = c.rms_norm(&d, &n("post_ffw_norm.weight"))?;
        }
        x = c.b.add(&hint, &x, &d);
    }

    let hn = c.rms_norm(&x, "output_norm.weight")?;
    let head = if model.tied {
        "token_embd.weight"
    } else {
        "output.weight"
    };
    let mut logits = c.linear(&hn, head, None)?;
    if let Some(cap) = cfg.final_logit_softcap {
        let capv = c.b.float_scalar(cap);
        let scaled = c.b.op("Div", "softcap", &[&logits, &capv]);
        let t = c.b.op("Tanh", "softcap", &[&scaled]);
        logits = c.b.mul("softcap", &t, &capv);
    }
    c.b.push("Identity", "", &[&logits], &["logits"], Vec::new());
    Ok(Graph {
        b: c.b,
        inputs,
        outputs,
    })
}
