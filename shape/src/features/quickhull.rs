//! Quickhull in 3D on integer points, with exact `i64` arithmetic.
//!
//! Written here because the maintained crate, `chull`, stores points as `Vec<Vec<T>>` and faces
//! in B-trees, and took about 300 ms for the hull of one 64^3 cell: fifteen times the whole
//! feature budget. Voxel points are small integers, so every orientation test here is exact
//! (no epsilon): a point is outside a face only when strictly above its plane, which keeps
//! the many coplanar grid points from ever creating degenerate faces.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Directed edges (vertex pairs) to the face that owns them. SipHash, the standard hasher, is
/// built for untrusted keys and was a third of the hull's time; these keys are our own indices.
type EdgeMap = HashMap<(u32, u32), u32, BuildHasherDefault<EdgeHasher>>;

#[derive(Default)]
struct EdgeHasher(u64);

impl Hasher for EdgeHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(b as u32);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = (self.0.rotate_left(26) ^ v as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A face of the hull: outward normal `n` and offset `d` (points `p` of the hull have
/// `n . p <= d`), its vertices, and the z-range of its vertices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plane {
    pub n: [i64; 3],
    pub d: i64,
    pub z_range: [i64; 2],
}

struct Face {
    v: [u32; 3],
    n: [i64; 3],
    d: i64,
    outside: Vec<u32>,
    alive: bool,
}

fn sub(a: [i64; 3], b: [i64; 3]) -> [i64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn cross(a: [i64; 3], b: [i64; 3]) -> [i64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}
fn dot(a: [i64; 3], b: [i64; 3]) -> i64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// The planes of the convex hull of `points` (deduplicated or not); `None` when the points do
/// not span 3D (fewer than 4 non-coplanar points).
pub fn hull_planes(points: &[[i64; 3]]) -> Option<Vec<Plane>> {
    let p = |i: u32| points[i as usize];
    // Initial tetrahedron: two far-apart points, the point farthest from their line, the point
    // farthest from their plane.
    let i0 = (0..points.len()).min_by_key(|&i| points[i])? as u32;
    let i1 = (0..points.len() as u32).max_by_key(|&i| {
        let d = sub(p(i), p(i0));
        dot(d, d)
    })?;
    let i2 = (0..points.len() as u32).max_by_key(|&i| {
        let c = cross(sub(p(i1), p(i0)), sub(p(i), p(i0)));
        dot(c, c)
    })?;
    let normal = cross(sub(p(i1), p(i0)), sub(p(i2), p(i0)));
    if normal == [0, 0, 0] {
        return None;
    }
    let i3 = (0..points.len() as u32).max_by_key(|&i| dot(normal, sub(p(i), p(i0))).abs())?;
    let orient = dot(normal, sub(p(i3), p(i0)));
    if orient == 0 {
        return None;
    }
    // Faces counter-clockwise seen from outside.
    let (a, b, c, e) = if orient < 0 { (i0, i1, i2, i3) } else { (i0, i2, i1, i3) };
    let mut faces: Vec<Face> = Vec::new();
    let mut edges = EdgeMap::default();
    let add_face = |faces: &mut Vec<Face>, edges: &mut EdgeMap, v: [u32; 3]| -> u32 {
        let n = cross(sub(p(v[1]), p(v[0])), sub(p(v[2]), p(v[0])));
        let id = faces.len() as u32;
        faces.push(Face { v, n, d: dot(n, p(v[0])), outside: Vec::new(), alive: true });
        for k in 0..3 {
            edges.insert((v[k], v[(k + 1) % 3]), id);
        }
        id
    };
    for v in [[a, b, c], [a, e, b], [b, e, c], [c, e, a]] {
        add_face(&mut faces, &mut edges, v);
    }
    // Conflict lists: each point outside the hull goes to the first face it is above.
    for i in 0..points.len() as u32 {
        if let Some(f) = faces.iter_mut().find(|f| dot(f.n, p(i)) > f.d) {
            f.outside.push(i);
        }
    }
    let mut pending: Vec<u32> = (0..4).collect();
    let mut visible: Vec<u32> = Vec::new();
    let mut is_visible: Vec<bool> = Vec::new();
    let mut stack: Vec<u32> = Vec::new();
    let mut horizon: Vec<(u32, u32)> = Vec::new();
    while let Some(f) = pending.pop() {
        let face = &faces[f as usize];
        if !face.alive || face.outside.is_empty() {
            continue;
        }
        let eye = *face.outside.iter().max_by_key(|&&i| dot(face.n, p(i)))?;
        let pe = p(eye);
        // Faces seen from the eye: a connected patch around f.
        is_visible.resize(faces.len(), false);
        visible.clear();
        stack.push(f);
        is_visible[f as usize] = true;
        while let Some(g) = stack.pop() {
            visible.push(g);
            let v = faces[g as usize].v;
            for k in 0..3 {
                let Some(&h) = edges.get(&(v[(k + 1) % 3], v[k])) else { continue };
                let hf = &faces[h as usize];
                if !is_visible[h as usize] && dot(hf.n, pe) > hf.d {
                    is_visible[h as usize] = true;
                    stack.push(h);
                }
            }
        }
        // Horizon: edges of visible faces whose neighbour is not visible.
        horizon.clear();
        for &g in &visible {
            let v = faces[g as usize].v;
            for k in 0..3 {
                let (s, t) = (v[k], v[(k + 1) % 3]);
                if edges.get(&(t, s)).is_none_or(|&h| !is_visible[h as usize]) {
                    horizon.push((s, t));
                }
            }
        }
        let mut orphans: Vec<u32> = Vec::new();
        for &g in &visible {
            let face = &mut faces[g as usize];
            face.alive = false;
            orphans.append(&mut face.outside);
            let v = face.v;
            for k in 0..3 {
                if edges.get(&(v[k], v[(k + 1) % 3])) == Some(&g) {
                    edges.remove(&(v[k], v[(k + 1) % 3]));
                }
            }
            is_visible[g as usize] = false;
        }
        let first_new = faces.len() as u32;
        for &(s, t) in &horizon {
            add_face(&mut faces, &mut edges, [s, t, eye]);
        }
        for i in orphans {
            if i == eye {
                continue;
            }
            if let Some(g) = (first_new..faces.len() as u32).find(|&g| {
                let face = &faces[g as usize];
                dot(face.n, p(i)) > face.d
            }) {
                faces[g as usize].outside.push(i);
            }
        }
        pending.extend(first_new..faces.len() as u32);
    }
    Some(
        faces
            .iter()
            .filter(|f| f.alive)
            .map(|f| {
                let zs = f.v.map(|i| p(i)[0]);
                Plane {
                    n: f.n,
                    d: f.d,
                    z_range: [*zs.iter().min().unwrap_or(&0), *zs.iter().max().unwrap_or(&0)],
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cube_with_interior_and_coplanar_points() {
        let mut pts = Vec::new();
        for z in 0..=4 {
            for y in 0..=4 {
                for x in 0..=4 {
                    pts.push([z, y, x]);
                }
            }
        }
        let planes = hull_planes(&pts).unwrap();
        // Every point is inside or on every plane; the corners are on three planes' boundary.
        for q in &pts {
            assert!(planes.iter().all(|pl| dot(pl.n, *q) <= pl.d));
        }
        assert!(planes.iter().any(|pl| dot(pl.n, [5, 2, 2]) > pl.d));
        assert!(planes.iter().any(|pl| dot(pl.n, [-1, 0, 0]) > pl.d));
        assert!(hull_planes(&[[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]]).is_none());
    }
}
