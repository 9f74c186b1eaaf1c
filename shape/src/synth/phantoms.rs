//! Parametric 3D shapes of red blood cells, one family per [`Kind`], in cell units: a resting
//! discocyte is about 2 across (radius 1). The renderer turns, scales and centres them.
//!
//! The shapes follow the morphology of the classes: the stomatocyte-discocyte-echinocyte (SDE)
//! series goes from cups (stomatocytes) over the biconcave disc to crenated discs and spiky
//! spheres (echinocytes), with the spherocyte as a smooth sphere; acanthocytes carry a few long
//! irregular spicules, knizocytes are trilobal, keratocytes have a notch flanked by two horns,
//! multilobate cells are several fused lobes, clusters are 2-3 touching cells.

use super::roster::Kind;
use super::sdf::{Part, Phantom, Prim, V3};
use nalgebra::{Matrix3, Rotation3, UnitQuaternion, Vector3};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use std::f32::consts::{PI, TAU};

type Rng64 = rand_chacha::ChaCha8Rng;

fn v(x: f32, y: f32, z: f32) -> V3 {
    V3::new(x, y, z)
}

fn u(rng: &mut Rng64, lo: f32, hi: f32) -> f32 {
    rng.random_range(lo..hi)
}

/// A uniformly random rotation (a normalised 4D Gaussian is a uniform unit quaternion).
pub fn random_rotation(rng: &mut Rng64) -> Matrix3<f32> {
    let mut q = [0f32; 4];
    for c in &mut q {
        *c = StandardNormal.sample(rng);
    }
    let q = nalgebra::Quaternion::new(q[0], q[1], q[2], q[3]);
    UnitQuaternion::from_quaternion(q).to_rotation_matrix().into_inner()
}

/// How a cell lies in the stack. The real keratocytes mostly lie flat on the slide: the shortest
/// axis of 5 of the 8 in the real sample is within 25 degrees of z (z extent 19-24 voxels against
/// 45-59 in the plane), two are tilted by 40 and 73 degrees, and the class's mean z extent is 32
/// voxels against 44-45 in the plane. The real clusters, knizocytes and multilobate cells show no
/// preferred orientation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pose {
    /// Any orientation, uniformly.
    Any,
    /// Turned freely about z, tilted off the xy plane by a half-normal angle of this standard
    /// deviation (radians).
    Flat { tilt_sd: f32 },
}

impl Pose {
    pub fn of(kind: Kind) -> Pose {
        match kind {
            Kind::Keratocyte => Pose::Flat { tilt_sd: 0.7 },
            _ => Pose::Any,
        }
    }

    /// A rotation drawn for this pose (phantom to world).
    pub fn draw(self, rng: &mut Rng64) -> Matrix3<f32> {
        match self {
            Pose::Any => random_rotation(rng),
            Pose::Flat { tilt_sd } => {
                let spin = Rotation3::from_axis_angle(&Vector3::z_axis(), u(rng, 0.0, TAU));
                let n: f32 = StandardNormal.sample(rng);
                let a = u(rng, 0.0, TAU);
                let axis = nalgebra::Unit::new_normalize(v(a.cos(), a.sin(), 0.0));
                let tilt = Rotation3::from_axis_angle(&axis, (n * tilt_sd).abs());
                (tilt * spin).into_inner()
            }
        }
    }
}

/// A uniformly random direction.
fn random_direction(rng: &mut Rng64) -> V3 {
    let z = u(rng, -1.0, 1.0);
    let a = u(rng, 0.0, TAU);
    let r = (1.0 - z * z).max(0.0).sqrt();
    v(r * a.cos(), r * a.sin(), z)
}

/// `n` roughly even directions (a jittered Fibonacci sphere), for spicules.
fn spread_directions(rng: &mut Rng64, n: usize, jitter: f32) -> Vec<V3> {
    let golden = PI * (3.0 - 5f32.sqrt());
    let offset = u(rng, 0.0, TAU);
    (0..n)
        .map(|i| {
            let z = 1.0 - 2.0 * (i as f32 + 0.5) / n as f32;
            let r = (1.0 - z * z).sqrt();
            let a = golden * i as f32 + offset;
            (v(r * a.cos(), r * a.sin(), z) + random_direction(rng) * jitter).normalize()
        })
        .collect()
}

fn single(parts: Vec<Part>, blend: f32) -> Phantom {
    Phantom { parts, blend, ..Phantom::default() }
}

/// A biconcave disc: a torus rim fused to a thin centre.
fn discocyte(rng: &mut Rng64) -> Phantom {
    let minor = u(rng, 0.24, 0.32);
    let major = 1.0 - minor + u(rng, -0.04, 0.04);
    let centre = Prim::Disc { radius: major, half_height: u(rng, 0.08, 0.15), round: 0.06 };
    single(vec![Part::at(Prim::Torus { major, minor }, V3::zeros()), Part::at(centre, V3::zeros())], 0.18)
}

/// A cup: a thick spherical shell cut open; `deep` gives the stomatocyte II bowl.
fn stomatocyte(rng: &mut Rng64, deep: bool) -> Phantom {
    let (h, t) =
        if deep { (u(rng, 0.1, 0.45), u(rng, 0.2, 0.27)) } else { (u(rng, -0.45, -0.15), u(rng, 0.2, 0.28)) };
    // Off-centre is fine: the renderer centres every shape on its bounding box.
    single(vec![Part::at(Prim::CutShell { r: 1.0 - t, h, t }, V3::zeros())], 0.0)
}

fn spherocyte(rng: &mut Rng64) -> Phantom {
    let r = v(u(rng, 0.92, 1.05), u(rng, 0.92, 1.05), u(rng, 0.8, 1.0));
    single(vec![Part::at(Prim::Ellipsoid { r }, V3::zeros())], 0.0)
}

/// A body with bumps or spicules: `level` 1 crenated disc, 2 spiky flattened ellipsoid, 3 spiky
/// sphere (the echinocyte stages).
fn echinocyte(rng: &mut Rng64, level: u8) -> Phantom {
    let mut parts = Vec::new();
    let (count, bump) = match level {
        1 => {
            // Crenated disc: the rim carries small bumps.
            let minor = u(rng, 0.28, 0.34);
            let major = 0.95 - minor;
            parts.push(Part::at(Prim::Torus { major, minor }, V3::zeros()));
            parts.push(Part::at(
                Prim::Disc { radius: major, half_height: u(rng, 0.14, 0.2), round: 0.06 },
                V3::zeros(),
            ));
            let n = rng.random_range(9..16);
            let offset = u(rng, 0.0, TAU);
            for i in 0..n {
                let a = offset + TAU * (i as f32 + u(rng, -0.2, 0.2)) / n as f32;
                let z = u(rng, -0.15, 0.15);
                let r = u(rng, 0.1, 0.14);
                parts.push(Part::at(Prim::Ellipsoid { r: v(r, r, r) }, v(a.cos() * 0.98, a.sin() * 0.98, z)));
            }
            return single(parts, 0.08);
        }
        2 => (rng.random_range(16..27), u(rng, 0.11, 0.15)),
        _ => (rng.random_range(26..44), u(rng, 0.09, 0.12)),
    };
    let body = if level == 2 { v(0.9, 0.9, u(rng, 0.5, 0.65)) } else { v(0.82, 0.82, u(rng, 0.75, 0.82)) };
    parts.push(Part::at(Prim::Ellipsoid { r: body }, V3::zeros()));
    for dir in spread_directions(rng, count, 0.15) {
        // The surface point of the ellipsoid in that direction, then a spicule sticking out.
        let scale = 1.0 / dir.component_div(&body).norm();
        let at = dir * scale;
        let r = bump * u(rng, 0.85, 1.15);
        parts.push(Part::at(Prim::Ellipsoid { r: v(r, r, r) }, at + dir * r * 0.6));
    }
    single(parts, 0.06)
}

/// A rounded body with a few long, irregular, unevenly placed spicules with knobby tips.
fn acanthocyte(rng: &mut Rng64) -> Phantom {
    let body = v(u(rng, 0.78, 0.9), u(rng, 0.72, 0.85), u(rng, 0.55, 0.75));
    let mut parts = vec![Part::at(Prim::Ellipsoid { r: body }, V3::zeros())];
    for _ in 0..rng.random_range(3..9) {
        let dir = random_direction(rng);
        let base = dir * (0.8 / dir.component_div(&body).norm());
        let len = u(rng, 0.2, 0.5);
        // Bent a little: the tip wanders off the radial direction.
        let tip = base + (dir + random_direction(rng) * 0.35).normalize() * len;
        let (ra, rb) = (u(rng, 0.09, 0.14), u(rng, 0.05, 0.08));
        parts.push(Part::at(Prim::Capsule { a: base, b: tip, ra, rb }, V3::zeros()));
        if rng.random_bool(0.5) {
            let k = rb * 1.5;
            parts.push(Part::at(Prim::Ellipsoid { r: v(k, k, k) }, tip));
        }
    }
    single(parts, 0.08)
}

/// Three lobes around a centre, in a plane: the trilobal knizocyte. Plump: the real knizocytes'
/// shortest axis is 0.63-0.71 of their longest and they fill 12% of the cube.
fn knizocyte(rng: &mut Rng64) -> Phantom {
    let thick = u(rng, 0.42, 0.55);
    let mut parts = vec![Part::at(Prim::Ellipsoid { r: v(0.5, 0.5, thick) }, V3::zeros())];
    let offset = u(rng, 0.0, TAU);
    for i in 0..3 {
        let a = offset + TAU * i as f32 / 3.0 + u(rng, -0.25, 0.25);
        let len = u(rng, 0.5, 0.75);
        let lobe = v(u(rng, 0.4, 0.52), u(rng, 0.3, 0.4), thick * u(rng, 0.8, 1.0));
        let rot = Rotation3::from_axis_angle(&Vector3::z_axis(), -a).into_inner();
        parts.push(Part::new(Prim::Ellipsoid { r: lobe }, v(a.cos() * len, a.sin() * len, 0.0), rot));
    }
    single(parts, 0.3)
}

/// A flat cell with a notch bitten out of its rim, the notch flanked by two horns.
fn keratocyte(rng: &mut Rng64) -> Phantom {
    let body = v(1.0, u(rng, 0.8, 0.95), u(rng, 0.32, 0.42));
    let mut parts = vec![Part::at(Prim::Ellipsoid { r: body }, V3::zeros())];
    let bite_r = u(rng, 0.4, 0.6);
    let bite = Part::at(
        Prim::Ellipsoid { r: v(bite_r, bite_r, 1.0) },
        v(1.0 + bite_r * u(rng, 0.05, 0.35), 0.0, 0.0),
    );
    for side in [-1.0f32, 1.0] {
        // Horns start at the notch's corners and point outwards and forwards.
        let a = side * u(rng, 0.5, 0.8);
        let base = v(a.cos() * 0.75, a.sin() * 0.75 * body.y, 0.0);
        let dir = v(1.0, side * u(rng, 0.2, 0.7), 0.0).normalize();
        let tip = base + dir * u(rng, 0.3, 0.55);
        parts.push(Part::at(
            Prim::Capsule { a: base, b: tip, ra: body.z * 0.8, rb: u(rng, 0.06, 0.1) },
            V3::zeros(),
        ));
    }
    Phantom { parts, blend: 0.15, cuts: vec![bite], cut_blend: 0.1 }
}

/// Several fused round lobes.
fn multilobate(rng: &mut Rng64) -> Phantom {
    let n = rng.random_range(3..7);
    let mut parts: Vec<Part> = Vec::with_capacity(n);
    let mut at = V3::zeros();
    for _ in 0..n {
        let r = u(rng, 0.35, 0.55);
        parts.push(Part::at(Prim::Ellipsoid { r: v(r, r * u(rng, 0.85, 1.0), r * u(rng, 0.75, 1.0)) }, at));
        // The next lobe overlaps this one; lobes wander, so some chains curl into rings.
        at += random_direction(rng) * r * u(rng, 0.9, 1.3);
    }
    let mean = parts.iter().map(|p| p.center).sum::<V3>() / n as f32;
    let mut ph = single(parts, 0.15);
    ph.translate(-mean);
    ph
}

/// Two or three cells pressed together: discocytes, spherocytes and cups, turned at random.
fn cluster(rng: &mut Rng64) -> Phantom {
    // Two to four cells pressed close around their common centre: the real clusters are compact
    // masses, about as deep as they are wide (extents 51 / 54 / 54 voxels), filling 20% of the
    // cube; chains of touching cells scale down to fit and fill half that.
    let n = [2, 3, 3, 4][rng.random_range(0..4)];
    let mut ph = Phantom { blend: 0.12, ..Phantom::default() };
    let mut centres: Vec<V3> = Vec::new();
    for i in 0..n {
        // Mostly plump cells.
        let mut cell = match rng.random_range(0..5) {
            0 => discocyte(rng),
            1 => stomatocyte(rng, false),
            _ => spherocyte(rng),
        };
        cell.rotate(&random_rotation(rng));
        let size = u(rng, 0.8, 1.0);
        for p in &mut cell.parts {
            p.center *= size;
            scale_prim(&mut p.prim, size);
        }
        // Each new cell is pushed against the ones placed before, overlapping them.
        let at = match i {
            0 => V3::zeros(),
            _ => {
                centres.iter().sum::<V3>() / centres.len() as f32 + random_direction(rng) * u(rng, 0.55, 0.8)
            }
        };
        cell.translate(at);
        centres.push(at);
        ph.merge(cell);
    }
    let mean = centres.iter().sum::<V3>() / n as f32;
    ph.translate(-mean);
    ph
}

fn scale_prim(prim: &mut Prim, s: f32) {
    match prim {
        Prim::Ellipsoid { r } => *r *= s,
        Prim::Torus { major, minor } => {
            *major *= s;
            *minor *= s;
        }
        Prim::Disc { radius, half_height, round } => {
            *radius *= s;
            *half_height *= s;
            *round *= s;
        }
        Prim::CutShell { r, h, t } => {
            *r *= s;
            *h *= s;
            *t *= s;
        }
        Prim::Capsule { a, b, ra, rb } => {
            *a *= s;
            *b *= s;
            *ra *= s;
            *rb *= s;
        }
    }
}

/// A random phantom of `kind`, in cell units, not yet turned or scaled to the cube.
pub fn phantom(kind: Kind, rng: &mut Rng64) -> Phantom {
    match kind {
        Kind::StomatocyteII => stomatocyte(rng, true),
        Kind::StomatocyteI => stomatocyte(rng, false),
        Kind::Spherocyte => spherocyte(rng),
        Kind::Discocyte => discocyte(rng),
        Kind::EchinocyteI => echinocyte(rng, 1),
        Kind::EchinocyteII => echinocyte(rng, 2),
        Kind::EchinocyteIII => echinocyte(rng, 3),
        Kind::Acanthocyte => acanthocyte(rng),
        Kind::Cluster => cluster(rng),
        Kind::Keratocyte => keratocyte(rng),
        Kind::Knizocyte => knizocyte(rng),
        Kind::Multilobate => multilobate(rng),
    }
}
