//! Where each weight of guided-diffusion's `UNetModel` (dims=3) lives in this project's
//! [`UNet`](crate::UNet), and how it is laid out there. The table is derived from the same
//! [`Plan`] the network is built from, and both directions (import and export) read it, so they
//! cannot disagree.

use crate::config::ModelConfig;
use crate::unet::{BlockPlan, Plan};

/// How a reference tensor becomes ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// The same layout (convolutions, norms, biases).
    Same,
    /// `nn.Linear` [out, in] -> Burn's `Linear` [in, out].
    Transpose,
    /// A 1x1 `nn.Conv1d` [out, in, 1] -> Burn's `Linear` [in, out].
    Conv1dAsLinear,
    /// The attention's qkv projection ([3C, C, 1] weight or [3C] bias). guided-diffusion's
    /// `QKVAttentionLegacy` splits heads first (rows: head 0's q, k, v, then head 1's, ...); this
    /// project splits q, k, v first and each into heads. The rows are reordered accordingly.
    Qkv { heads: usize },
}

/// One tensor: its reference name and shape, our parameter path, and the transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub reference: String,
    pub shape: Vec<usize>,
    pub ours: String,
    pub transform: Transform,
}

/// Every tensor of the reference network of `config`, in the reference's order. `config` must
/// be a reference network: attention in the middle block, depth kept, the `eps` objective.
pub fn layout(config: &ModelConfig) -> Vec<Entry> {
    let plan = Plan::new(config);
    let (base, temb) = (config.base_channels, config.time_embed_dim());
    let mut t = Table { entries: Vec::new(), config };
    t.linear("time_embed.0", "time1", base, temb);
    t.linear("time_embed.2", "time2", temb, temb);
    t.conv("input_blocks.0.0", "conv_in", config.in_channels(), base, 3);
    for (i, block) in plan.encoder.iter().enumerate() {
        let (gd, ours) = (format!("input_blocks.{}", i + 1), format!("encoder.{i}"));
        match *block {
            BlockPlan::Res { cin, cout, attn, .. } => t.res_attn(&gd, &ours, cin, cout, attn),
            BlockPlan::Down { channels, .. } => {
                t.conv(&format!("{gd}.0.op"), &format!("{ours}.Down"), channels, channels, 3)
            }
            BlockPlan::Up { .. } => unreachable!("the encoder does not upsample"),
        }
    }
    let m = plan.middle_channels;
    t.res("middle_block.0", "mid1", m, m);
    t.attention("middle_block.1", "mid_attn", m);
    t.res("middle_block.2", "mid2", m, m);
    // The reference puts a level's upsampling into the output block of its last residual block.
    let mut out_block = 0;
    let mut last_attn = false;
    for (j, block) in plan.decoder.iter().enumerate() {
        let ours = format!("decoder.{j}");
        match *block {
            BlockPlan::Res { cin, cout, attn, .. } => {
                t.res_attn(&format!("output_blocks.{out_block}"), &ours, cin, cout, attn);
                out_block += 1;
                last_attn = attn;
            }
            BlockPlan::Up { channels, .. } => {
                let gd = format!("output_blocks.{}.{}.conv", out_block - 1, 1 + usize::from(last_attn));
                t.conv(&gd, &format!("{ours}.Up"), channels, channels, 3);
            }
            BlockPlan::Down { .. } => unreachable!("the decoder does not downsample"),
        }
    }
    t.norm("out.0", "out_norm", base);
    t.conv("out.2", "out_conv", base, 2, 3);
    t.entries
}

struct Table<'a> {
    entries: Vec<Entry>,
    config: &'a ModelConfig,
}

impl Table<'_> {
    fn push(&mut self, gd: String, shape: Vec<usize>, ours: String, transform: Transform) {
        self.entries.push(Entry { reference: gd, shape, ours, transform });
    }

    fn conv(&mut self, gd: &str, ours: &str, cin: usize, cout: usize, k: usize) {
        self.push(
            format!("{gd}.weight"),
            vec![cout, cin, k, k, k],
            format!("{ours}.weight"),
            Transform::Same,
        );
        self.push(format!("{gd}.bias"), vec![cout], format!("{ours}.bias"), Transform::Same);
    }

    fn linear(&mut self, gd: &str, ours: &str, cin: usize, cout: usize) {
        self.push(format!("{gd}.weight"), vec![cout, cin], format!("{ours}.weight"), Transform::Transpose);
        self.push(format!("{gd}.bias"), vec![cout], format!("{ours}.bias"), Transform::Same);
    }

    fn norm(&mut self, gd: &str, ours: &str, c: usize) {
        self.push(format!("{gd}.weight"), vec![c], format!("{ours}.gamma"), Transform::Same);
        self.push(format!("{gd}.bias"), vec![c], format!("{ours}.beta"), Transform::Same);
    }

    fn res(&mut self, gd: &str, ours: &str, cin: usize, cout: usize) {
        let emb = if self.config.scale_shift_norm { 2 * cout } else { cout };
        self.norm(&format!("{gd}.in_layers.0"), &format!("{ours}.norm1"), cin);
        self.conv(&format!("{gd}.in_layers.2"), &format!("{ours}.conv1"), cin, cout, 3);
        self.linear(&format!("{gd}.emb_layers.1"), &format!("{ours}.emb"), self.config.time_embed_dim(), emb);
        self.norm(&format!("{gd}.out_layers.0"), &format!("{ours}.norm2"), cout);
        self.conv(&format!("{gd}.out_layers.3"), &format!("{ours}.conv2"), cout, cout, 3);
        if cin != cout {
            self.conv(&format!("{gd}.skip_connection"), &format!("{ours}.skip"), cin, cout, 1);
        }
    }

    fn attention(&mut self, gd: &str, ours: &str, c: usize) {
        let heads = self.config.num_heads;
        self.norm(&format!("{gd}.norm"), &format!("{ours}.norm"), c);
        self.push(
            format!("{gd}.qkv.weight"),
            vec![3 * c, c, 1],
            format!("{ours}.qkv.weight"),
            Transform::Qkv { heads },
        );
        self.push(
            format!("{gd}.qkv.bias"),
            vec![3 * c],
            format!("{ours}.qkv.bias"),
            Transform::Qkv { heads },
        );
        self.push(
            format!("{gd}.proj_out.weight"),
            vec![c, c, 1],
            format!("{ours}.proj.weight"),
            Transform::Conv1dAsLinear,
        );
        self.push(format!("{gd}.proj_out.bias"), vec![c], format!("{ours}.proj.bias"), Transform::Same);
    }

    fn res_attn(&mut self, gd: &str, ours: &str, cin: usize, cout: usize, attn: bool) {
        self.res(&format!("{gd}.0"), &format!("{ours}.Res.res"), cin, cout);
        if attn {
            self.attention(&format!("{gd}.1"), &format!("{ours}.Res.attn"), cout);
        }
    }
}

/// For each of our qkv rows (q, k, v, each split into heads), the reference row it comes from.
fn qkv_rows(c: usize, heads: usize) -> Vec<usize> {
    let ch = c / heads;
    (0..3 * c)
        .map(|o| {
            let (part, j) = (o / c, o % c);
            (j / ch) * 3 * ch + part * ch + j % ch
        })
        .collect()
}

/// A reference tensor (row-major values of `entry.shape`) in our layout, with our shape.
pub fn to_ours(entry: &Entry, values: &[f32]) -> (Vec<f32>, Vec<usize>) {
    let s = &entry.shape;
    match entry.transform {
        Transform::Same => (values.to_vec(), s.clone()),
        Transform::Transpose | Transform::Conv1dAsLinear => (transpose(values, s[0], s[1]), vec![s[1], s[0]]),
        Transform::Qkv { heads } => {
            let rows = qkv_rows(s[0] / 3, heads);
            let width = s.get(1).copied().unwrap_or(1);
            let permuted: Vec<f32> =
                rows.iter().flat_map(|&r| values[r * width..(r + 1) * width].iter().copied()).collect();
            if s.len() == 1 {
                (permuted, s.clone())
            } else {
                (transpose(&permuted, s[0], width), vec![width, s[0]])
            }
        }
    }
}

/// One of our tensors (row-major, our layout) in the reference's layout and shape
/// (`entry.shape`): the inverse of [`to_ours`].
pub fn to_reference(entry: &Entry, values: &[f32]) -> Vec<f32> {
    let s = &entry.shape;
    match entry.transform {
        Transform::Same => values.to_vec(),
        Transform::Transpose | Transform::Conv1dAsLinear => transpose(values, s[1], s[0]),
        Transform::Qkv { heads } => {
            let width = s.get(1).copied().unwrap_or(1);
            let rows_major = if s.len() == 1 { values.to_vec() } else { transpose(values, width, s[0]) };
            let mut out = vec![0.0; rows_major.len()];
            for (o, r) in qkv_rows(s[0] / 3, heads).into_iter().enumerate() {
                out[r * width..(r + 1) * width].copy_from_slice(&rows_major[o * width..(o + 1) * width]);
            }
            out
        }
    }
}

/// [rows, cols] row-major -> [cols, rows] row-major.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layouts_have_the_reference_parameter_counts() {
        // Counted by guided-diffusion itself (see the configurations' docs).
        for (config, params) in
            [(ModelConfig::dispr_64(), 9_772_802), (ModelConfig::dispr_64_ref(), 14_714_626)]
        {
            let l = layout(&config);
            assert_eq!(l.iter().map(|e| e.shape.iter().product::<usize>()).sum::<usize>(), params);
        }
        let l = layout(&ModelConfig::dispr_64_ref());
        let names: Vec<&str> = l.iter().map(|e| e.reference.as_str()).collect();
        // The last level's upsampling sits in the output block after its attention.
        assert!(names.contains(&"output_blocks.2.2.conv.weight"), "{names:?}");
        assert!(names.contains(&"input_blocks.3.0.op.weight"));
        assert!(names.contains(&"output_blocks.11.0.skip_connection.weight"));
        assert!(!names.iter().any(|n| n.starts_with("output_blocks.12")));
    }

    #[test]
    fn transforms_invert() {
        let entry = |shape: Vec<usize>, transform| Entry {
            reference: "x".into(),
            shape,
            ours: "y".into(),
            transform,
        };
        for (shape, tr) in [
            (vec![6, 4], Transform::Transpose),
            (vec![6, 4, 1], Transform::Conv1dAsLinear),
            (vec![12, 4, 1], Transform::Qkv { heads: 2 }),
            (vec![12], Transform::Qkv { heads: 4 }),
        ] {
            let e = entry(shape.clone(), tr);
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let (ours, _) = to_ours(&e, &v);
            assert_ne!(ours, v, "{tr:?} moves values");
            assert_eq!(to_reference(&e, &ours), v, "{tr:?}");
        }
        // Two heads of 2 channels: reference rows [q0 q0 k0 k0 v0 v0 q1 q1 k1 k1 v1 v1].
        assert_eq!(qkv_rows(4, 2), [0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11]);
        assert_eq!(qkv_rows(4, 1), (0..12).collect::<Vec<_>>());
    }
}
