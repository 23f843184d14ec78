//! A small builder for ONNX graphs: nodes with generated output names, deduplicated
//! constants, and the weight initializers that are streamed when the file is written.

use std::collections::HashMap;

use super::proto::{small_tensor, Attr, ElemType, Node};
use super::weights::WeightSource;

/// A streamed initializer: its name, type, shape and how to produce its bytes.
#[derive(Clone, Debug)]
pub struct Weight {
    pub name: String,
    pub elem: ElemType,
    pub dims: Vec<i64>,
    pub source: WeightSource,
}

#[derive(Default)]
pub struct Builder {
    pub nodes: Vec<Node>,
    /// Encoded small constant tensors.
    pub consts: Vec<Vec<u8>>,
    const_names: HashMap<(Vec<u8>, Vec<i64>, u8), String>,
    pub weights: Vec<Weight>,
    /// Operator types used from the `com.microsoft` domain.
    pub uses_ms: bool,
    count: usize,
}

impl Builder {
    /// One node with one output, named after `hint`.
    pub fn op(&mut self, op: &'static str, hint: &str, inputs: &[&str]) -> String {
        self.op_attrs(op, hint, inputs, Vec::new())
    }

    pub fn op_attrs(
        &mut self,
        op: &'static str,
        hint: &str,
        inputs: &[&str],
        attrs: Vec<(&'static str, Attr)>,
    ) -> String {
        let out = format!("{hint}/{op}_{}", self.count);
        self.push(op, "", inputs, &[&out], attrs);
        out
    }

    /// A node with the given output names.
    pub fn push(
        &mut self,
        op: &'static str,
        domain: &'static str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: Vec<(&'static str, Attr)>,
    ) {
        self.count += 1;
        if domain == "com.microsoft" {
            self.uses_ms = true;
        }
        self.nodes.push(Node {
            op,
            domain,
            name: format!("n{}_{op}", self.count),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attrs,
        });
    }

    fn constant(&mut self, elem: ElemType, dims: &[i64], data: Vec<u8>) -> String {
        let key = (data, dims.to_vec(), elem as u8);
        if let Some(name) = self.const_names.get(&key) {
            return name.clone();
        }
        let name = format!("const_{}", self.const_names.len());
        self.consts.push(small_tensor(&name, elem, dims, &key.0));
        self.const_names.insert(key, name.clone());
        name
    }

    /// An int64 vector constant.
    pub fn ints(&mut self, v: &[i64]) -> String {
        let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.constant(ElemType::Int64, &[v.len() as i64], data)
    }

    /// An int64 scalar (0-d) constant.
    pub fn int_scalar(&mut self, v: i64) -> String {
        self.constant(ElemType::Int64, &[], v.to_le_bytes().to_vec())
    }

    /// A float scalar (0-d) constant.
    pub fn float_scalar(&mut self, v: f32) -> String {
        self.constant(ElemType::Float, &[], v.to_le_bytes().to_vec())
    }

    /// A float vector constant.
    pub fn floats(&mut self, v: &[f32]) -> String {
        let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.constant(ElemType::Float, &[v.len() as i64], data)
    }

    /// Registers a streamed weight and returns its name.
    pub fn weight(
        &mut self,
        name: String,
        elem: ElemType,
        dims: Vec<i64>,
        source: WeightSource,
    ) -> String {
        self.weights.push(Weight {
            name: name.clone(),
            elem,
            dims,
            source,
        });
        name
    }

    // Shorthands for the element-wise and shape operators the decoder uses.

    pub fn add(&mut self, hint: &str, a: &str, b: &str) -> String {
        self.op("Add", hint, &[a, b])
    }

    pub fn mul(&mut self, hint: &str, a: &str, b: &str) -> String {
        self.op("Mul", hint, &[a, b])
    }

    pub fn reshape(&mut self, hint: &str, x: &str, shape: &[i64]) -> String {
        let s = self.ints(shape);
        self.op("Reshape", hint, &[x, &s])
    }

    pub fn transpose(&mut self, hint: &str, x: &str, perm: &[i64]) -> String {
        self.op_attrs(
            "Transpose",
            hint,
            &[x],
            vec![("perm", Attr::Ints(perm.to_vec()))],
        )
    }

    pub fn unsqueeze(&mut self, hint: &str, x: &str, axes: &[i64]) -> String {
        let a = self.ints(axes);
        self.op("Unsqueeze", hint, &[x, &a])
    }

    pub fn concat(&mut self, hint: &str, inputs: &[&str], axis: i64) -> String {
        self.op_attrs("Concat", hint, inputs, vec![("axis", Attr::Int(axis))])
    }

    /// `x[..., start..end]` on the last axis.
    pub fn slice_last(&mut self, hint: &str, x: &str, start: i64, end: i64) -> String {
        let s = self.ints(&[start]);
        let e = self.ints(&[end]);
        let a = self.ints(&[-1]);
        self.op("Slice", hint, &[x, &s, &e, &a])
    }

    pub fn cast(&mut self, hint: &str, x: &str, to: ElemType) -> String {
        self.op_attrs("Cast", hint, &[x], vec![("to", Attr::Int(to as i64))])
    }
}
