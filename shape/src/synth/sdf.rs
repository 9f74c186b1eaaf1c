//! Signed distance functions for cell phantoms: a few primitives, smooth union and smooth
//! subtraction (after Inigo Quilez's well-known formulas).
//!
//! Hand-written because the needs are small and hot: the renderer evaluates a phantom ~100k times
//! per cell, and no maintained Rust crate offers these primitives as plain functions on points.
//! Distances are exact for spheres, tori, capsules and shells, and a close bound for ellipsoids
//! and blends; the renderer only relies on them being about one unit per unit of space.

use nalgebra::{Matrix3, Vector2, Vector3};

pub type V3 = Vector3<f32>;

/// A primitive in its own frame (symmetry axis z).
#[derive(Debug, Clone)]
pub enum Prim {
    /// An ellipsoid of semi-axes `r`.
    Ellipsoid { r: V3 },
    /// A torus in the xy plane.
    Torus { major: f32, minor: f32 },
    /// A disc (cylinder along z) with rounded edges.
    Disc { radius: f32, half_height: f32, round: f32 },
    /// A spherical shell of radius `r` and half-thickness `t`, cut open above `z = h`: a bowl.
    CutShell { r: f32, h: f32, t: f32 },
    /// A capsule from `a` to `b` whose radius goes from `ra` to `rb` (in the part's frame).
    Capsule { a: V3, b: V3, ra: f32, rb: f32 },
}

impl Prim {
    fn distance(&self, p: V3) -> f32 {
        match *self {
            Prim::Ellipsoid { r } => {
                let k0 = p.component_div(&r).norm();
                let k1 = p.component_div(&r.component_mul(&r)).norm();
                if k1 < 1e-9 { -r.min() } else { k0 * (k0 - 1.0) / k1 }
            }
            Prim::Torus { major, minor } => Vector2::new(p.xy().norm() - major, p.z).norm() - minor,
            Prim::Disc { radius, half_height, round } => {
                let d = Vector2::new(p.xy().norm() - radius + round, p.z.abs() - half_height + round);
                d.x.max(d.y).min(0.0) + Vector2::new(d.x.max(0.0), d.y.max(0.0)).norm() - round
            }
            Prim::CutShell { r, h, t } => {
                let w = (r * r - h * h).max(0.0).sqrt();
                let q = Vector2::new(p.xy().norm(), p.z);
                let d =
                    if h * q.x < w * q.y { (q - Vector2::new(w, h)).norm() } else { (q.norm() - r).abs() };
                d - t
            }
            Prim::Capsule { a, b, ra, rb } => {
                let pa = p - a;
                let ba = b - a;
                let s = (pa.dot(&ba) / ba.dot(&ba).max(1e-12)).clamp(0.0, 1.0);
                (pa - ba * s).norm() - (ra + (rb - ra) * s)
            }
        }
    }

    /// Radius of a sphere around the frame's origin that contains the primitive.
    fn bound(&self) -> f32 {
        match *self {
            Prim::Ellipsoid { r } => r.max(),
            Prim::Torus { major, minor } => major + minor,
            Prim::Disc { radius, half_height, .. } => (radius * radius + half_height * half_height).sqrt(),
            Prim::CutShell { r, t, .. } => r + t,
            Prim::Capsule { a, b, ra, rb } => (a.norm() + ra).max(b.norm() + rb),
        }
    }
}

/// A primitive placed in the phantom: `local = rot * (p - center)`.
#[derive(Debug, Clone)]
pub struct Part {
    pub center: V3,
    pub rot: Matrix3<f32>,
    pub prim: Prim,
    bound: f32,
}

impl Part {
    /// A primitive at `center`, turned by `rot` (phantom to local frame).
    pub fn new(prim: Prim, center: V3, rot: Matrix3<f32>) -> Self {
        let bound = prim.bound();
        Part { center, rot, prim, bound }
    }

    /// A primitive at `center`, not turned.
    pub fn at(prim: Prim, center: V3) -> Self {
        Self::new(prim, center, Matrix3::identity())
    }

    fn distance(&self, p: V3) -> f32 {
        self.prim.distance(self.rot * (p - self.center))
    }
}

/// Polynomial smooth minimum: blends two distances over a band of width `k`.
#[inline]
pub fn smin(a: f32, b: f32, k: f32) -> f32 {
    if k <= 0.0 {
        return a.min(b);
    }
    let h = (k - (a - b).abs()).max(0.0) / k;
    a.min(b) - h * h * k * 0.25
}

/// A cell phantom: the smooth union of `parts`, minus the smooth union of `cuts`.
#[derive(Debug, Clone, Default)]
pub struct Phantom {
    pub parts: Vec<Part>,
    /// Blend width of the union.
    pub blend: f32,
    pub cuts: Vec<Part>,
    /// Blend width of the subtraction.
    pub cut_blend: f32,
}

impl Phantom {
    /// Signed distance at `p`: negative inside.
    pub fn distance(&self, p: V3) -> f32 {
        let mut d = union(&self.parts, self.blend, p);
        if !self.cuts.is_empty() {
            let c = union(&self.cuts, self.cut_blend, p);
            d = -smin(-d, c, self.cut_blend);
        }
        d
    }

    /// Radius of a sphere around the origin that contains the phantom.
    pub fn bound(&self) -> f32 {
        self.parts.iter().map(|p| p.center.norm() + p.bound).fold(0.0, f32::max)
    }

    /// Moves every part by `offset`.
    pub fn translate(&mut self, offset: V3) {
        for p in self.parts.iter_mut().chain(self.cuts.iter_mut()) {
            p.center += offset;
        }
    }

    /// Turns the whole phantom by `rot` (a rotation, phantom to world) about the origin.
    pub fn rotate(&mut self, rot: &Matrix3<f32>) {
        let inv = rot.transpose();
        for p in self.parts.iter_mut().chain(self.cuts.iter_mut()) {
            p.center = rot * p.center;
            p.rot *= inv;
        }
    }

    /// Adds another phantom's parts and cuts (its blends are replaced by this one's).
    pub fn merge(&mut self, other: Phantom) {
        self.parts.extend(other.parts);
        self.cuts.extend(other.cuts);
    }
}

fn union(parts: &[Part], k: f32, p: V3) -> f32 {
    let mut d = f32::INFINITY;
    for part in parts {
        // A part whose bounding sphere is farther than the blend band cannot change the result.
        let lower = (p - part.center).norm() - part.bound;
        if lower > d + k {
            continue;
        }
        d = smin(d, part.distance(p), k);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: f32, y: f32, z: f32) -> V3 {
        V3::new(x, y, z)
    }

    #[test]
    fn primitives_measure_distance() {
        let sphere = Prim::Ellipsoid { r: v(1.0, 1.0, 1.0) };
        assert!((sphere.distance(v(2.0, 0.0, 0.0)) - 1.0).abs() < 1e-5);
        assert!((sphere.distance(v(0.0, 0.5, 0.0)) + 0.5).abs() < 1e-5);
        let torus = Prim::Torus { major: 1.0, minor: 0.25 };
        assert!((torus.distance(v(1.0, 0.0, 0.0)) + 0.25).abs() < 1e-5);
        assert!((torus.distance(V3::zeros()) - 0.75).abs() < 1e-5);
        let capsule = Prim::Capsule { a: V3::zeros(), b: v(0.0, 0.0, 2.0), ra: 0.5, rb: 0.5 };
        assert!((capsule.distance(v(1.0, 0.0, 1.0)) - 0.5).abs() < 1e-5);
        let disc = Prim::Disc { radius: 1.0, half_height: 0.2, round: 0.05 };
        assert!((disc.distance(v(0.0, 0.0, 0.5)) - 0.3).abs() < 1e-5);
        assert!(disc.distance(v(0.5, 0.0, 0.0)) < 0.0);
        // A bowl open upwards: inside its wall at the bottom, outside at the top and the centre.
        let bowl = Prim::CutShell { r: 1.0, h: 0.2, t: 0.1 };
        assert!(bowl.distance(v(0.0, 0.0, -1.0)) < 0.0);
        assert!(bowl.distance(v(0.0, 0.0, 1.0)) > 0.0);
        assert!(bowl.distance(V3::zeros()) > 0.0);
    }

    #[test]
    fn phantom_unions_subtracts_and_moves() {
        let mut ph = Phantom {
            parts: vec![Part::at(Prim::Ellipsoid { r: v(1.0, 1.0, 1.0) }, V3::zeros())],
            blend: 0.0,
            cuts: vec![Part::at(Prim::Ellipsoid { r: v(0.5, 0.5, 0.5) }, v(1.0, 0.0, 0.0))],
            cut_blend: 0.0,
        };
        assert!(ph.distance(v(-0.9, 0.0, 0.0)) < 0.0);
        assert!(ph.distance(v(0.9, 0.0, 0.0)) > 0.0, "the cut removes the +x side");
        ph.rotate(&nalgebra::Rotation3::from_axis_angle(&V3::z_axis(), std::f32::consts::PI).into_inner());
        assert!(ph.distance(v(-0.9, 0.0, 0.0)) > 0.0, "turned by 180 degrees the cut is at -x");
        ph.translate(v(0.0, 0.0, 5.0));
        assert!(ph.distance(v(0.9, 0.0, 5.0)) < 0.0);
        assert!((ph.bound() - 6.0).abs() < 1e-5);
    }
}
