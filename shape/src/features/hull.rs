//! Convex hull areas and volumes counted as scikit-image's `convex_hull_image` does: the hull of
//! the shape's pixel-edge (voxel-face) midpoints, i.e. each pixel centre moved by +-0.5 along each
//! axis, and the count of pixel (voxel) centres inside it, borders included.
//!
//! All coordinates are doubled so that those midpoints are integers, and every test is exact
//! integer arithmetic: no tolerance to tune, no round-off on the grid's many coplanar points.
//! The 3D hull comes from the `chull` crate run on `i64`; the 2D hull is Andrew's monotone chain,
//! a dozen lines, which is shorter than adapting a crate's float API to exact integers.

/// A half-space `n . p <= d` over doubled coordinates.
type HalfSpace<const N: usize> = ([i64; N], i64);

/// Pixel coordinates `[row, col]` of the first and last foreground pixel of each row: the only
/// pixels that can be hull vertices (any other lies between two of its row).
pub fn row_extremes_2d(mask: &[bool], h: usize, w: usize) -> Vec<[i64; 2]> {
    let mut pts = Vec::new();
    for r in 0..h {
        let row = &mask[r * w..(r + 1) * w];
        if let (Some(a), Some(b)) = (row.iter().position(|&v| v), row.iter().rposition(|&v| v)) {
            pts.push([r as i64, a as i64]);
            if b != a {
                pts.push([r as i64, b as i64]);
            }
        }
    }
    pts
}

/// Number of pixel centres of an `h` x `w` grid inside the convex hull of the given pixels'
/// edge midpoints (scikit-image `area_convex`). 0 for no pixels.
pub fn convex_area_2d(pixels: &[[i64; 2]], h: usize, w: usize) -> usize {
    if pixels.is_empty() {
        return 0;
    }
    let mut pts: Vec<[i64; 2]> = pixels
        .iter()
        .flat_map(|&[r, c]| {
            let (r, c) = (2 * r, 2 * c);
            [[r - 1, c], [r + 1, c], [r, c - 1], [r, c + 1]]
        })
        .collect();
    pts.sort_unstable();
    pts.dedup();
    let hull = monotone_chain(&pts);
    // Counter-clockwise in (row, col) axes as in a right-handed (x, y) plane: the interior is
    // on the left of each edge p->q, i.e. cross(q - p, x - p) >= 0.
    let planes: Vec<HalfSpace<2>> = (0..hull.len())
        .map(|i| {
            let (p, q) = (hull[i], hull[(i + 1) % hull.len()]);
            let (dr, dc) = (q[0] - p[0], q[1] - p[1]);
            // dr*(X_c - p_c) - dc*(X_r - p_r) >= 0  <=>  dc*X_r - dr*X_c <= dc*p_r - dr*p_c
            ([dc, -dr], dc * p[0] - dr * p[1])
        })
        .collect();
    count_lattice_in(&planes, [h, w])
}

/// Andrew's monotone chain: the hull's vertices counter-clockwise, collinear points dropped.
fn monotone_chain(sorted: &[[i64; 2]]) -> Vec<[i64; 2]> {
    let cross = |o: [i64; 2], a: [i64; 2], b: [i64; 2]| (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
    let mut hull: Vec<[i64; 2]> = Vec::with_capacity(sorted.len() + 1);
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &[i64; 2]>> =
            if pass == 0 { Box::new(sorted.iter()) } else { Box::new(sorted.iter().rev()) };
        for &p in iter {
            while hull.len() >= start + 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0 {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop(); // the last point of each chain starts the other
    }
    hull
}

/// Voxel coordinates `[z, y, x]` of the first and last foreground voxel of each x-row.
pub fn row_extremes_3d(mask: &[bool], dims: [usize; 3]) -> Vec<[i64; 3]> {
    let [d, h, w] = dims;
    let mut pts = Vec::new();
    for z in 0..d {
        for y in 0..h {
            let row = &mask[(z * h + y) * w..(z * h + y + 1) * w];
            if let (Some(a), Some(b)) = (row.iter().position(|&v| v), row.iter().rposition(|&v| v)) {
                pts.push([z as i64, y as i64, a as i64]);
                if b != a {
                    pts.push([z as i64, y as i64, b as i64]);
                }
            }
        }
    }
    pts
}

/// Number of voxel centres inside the convex hull of the given voxels' face centres
/// (scikit-image `area_convex` in 3D). `None` when `chull` fails on the point set (it should
/// not: the face centres always span 3D).
pub fn convex_volume_3d(voxels: &[[i64; 3]], dims: [usize; 3]) -> Option<usize> {
    if voxels.is_empty() {
        return Some(0);
    }
    let doubled: Vec<[i64; 3]> = voxels.iter().map(|v| [2 * v[0], 2 * v[1], 2 * v[2]]).collect();
    // As scikit-image: first the hull of the voxel centres (fewer points), then the face
    // centres of its vertices. A flat or tiny set has no 3D hull: offset all of its points.
    let centres = match hull_3d(&doubled) {
        Some((vertices, _)) => vertices,
        None => doubled,
    };
    let mut pts: Vec<[i64; 3]> = centres
        .iter()
        .flat_map(|&[z, y, x]| {
            [[z - 1, y, x], [z + 1, y, x], [z, y - 1, x], [z, y + 1, x], [z, y, x - 1], [z, y, x + 1]]
        })
        .collect();
    pts.sort_unstable();
    pts.dedup();
    let (vertices, triangles) = hull_3d(&pts)?;
    // Orient every facet so that the hull's vertex centroid is inside: n . (sum) <= d * count.
    let sum = vertices.iter().fold([0i64; 3], |a, v| [a[0] + v[0], a[1] + v[1], a[2] + v[2]]);
    let m = vertices.len() as i64;
    let planes: Vec<HalfSpace<3>> = triangles
        .iter()
        .filter_map(|t| {
            let (a, b, c) = (vertices[t[0]], vertices[t[1]], vertices[t[2]]);
            let u = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
            let v = [c[0] - a[0], c[1] - a[1], c[2] - a[2]];
            let n = [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]];
            if n == [0, 0, 0] {
                return None;
            }
            let d = dot(n, a);
            if dot(n, sum) <= d * m { Some((n, d)) } else { Some(([-n[0], -n[1], -n[2]], -d)) }
        })
        .collect();
    Some(count_lattice_in(&planes, dims))
}

fn dot<const N: usize>(a: [i64; N], b: [i64; N]) -> i64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The 3D hull's vertices and triangles (indices into the vertices), by `chull` in exact
/// integer arithmetic. `None` for a set with no 3D extent. `i128`, because chull's degeneracy
/// test takes a 4x4 determinant of sums of squared coordinates, which overflows `i64`.
fn hull_3d(points: &[[i64; 3]]) -> Option<(Vec<[i64; 3]>, Vec<[usize; 3]>)> {
    let as_vecs: Vec<Vec<i128>> = points.iter().map(|p| p.iter().map(|&c| c as i128).collect()).collect();
    let hull = chull::ConvexHull::try_new(&as_vecs, 0i128, None).ok()?;
    let (vertices, indices) = hull.vertices_indices();
    let vertices: Vec<[i64; 3]> = vertices.iter().map(|v| [v[0] as i64, v[1] as i64, v[2] as i64]).collect();
    let triangles = indices.chunks_exact(3).map(|t| [t[0], t[1], t[2]]).collect();
    Some((vertices, triangles))
}

/// Number of grid points (doubled coordinates `2 * index`) of a grid of `dims` satisfying all the
/// half-spaces: rows along the last axis are solved as integer intervals.
fn count_lattice_in<const N: usize>(planes: &[HalfSpace<N>], dims: [usize; N]) -> usize {
    let outer: usize = dims[..N - 1].iter().product();
    let w = dims[N - 1] as i64;
    let mut total = 0usize;
    let mut idx = [0usize; N];
    for flat in 0..outer {
        // Decompose the row index into the leading coordinates.
        let mut rest = flat;
        for a in (0..N - 1).rev() {
            idx[a] = rest % dims[a];
            rest /= dims[a];
        }
        let (mut lo, mut hi) = (0i64, w - 1);
        for (n, d) in planes {
            let partial: i64 = (0..N - 1).map(|a| n[a] * 2 * idx[a] as i64).sum();
            let rhs = d - partial;
            let k = 2 * n[N - 1];
            if k > 0 {
                hi = hi.min(floor_div(rhs, k));
            } else if k < 0 {
                lo = lo.max(ceil_div(rhs, k));
            } else if rhs < 0 {
                hi = -1;
            }
            if lo > hi {
                break;
            }
        }
        if hi >= lo {
            total += (hi - lo + 1) as usize;
        }
    }
    total
}

fn floor_div(a: i64, b: i64) -> i64 {
    let q = a / b;
    if a % b != 0 && ((a < 0) != (b < 0)) { q - 1 } else { q }
}

fn ceil_div(a: i64, b: i64) -> i64 {
    -floor_div(-a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_division_rounds_the_right_way() {
        assert_eq!((floor_div(7, 2), floor_div(-7, 2), floor_div(7, -2), floor_div(-7, -2)), (3, -4, -4, 3));
        assert_eq!((ceil_div(7, 2), ceil_div(-7, 2), ceil_div(7, -2), ceil_div(6, -2)), (4, -3, -3, -3));
    }

    #[test]
    fn convex_shapes_are_their_own_hull() {
        // A filled rectangle, and a single pixel.
        let (h, w) = (10, 12);
        let mut m = vec![false; h * w];
        for r in 2..7 {
            for c in 3..11 {
                m[r * w + c] = true;
            }
        }
        assert_eq!(convex_area_2d(&row_extremes_2d(&m, h, w), h, w), 40);
        assert_eq!(convex_area_2d(&[[4, 4]], h, w), 1);
        let dims = [5, 6, 7];
        let mut v = vec![false; 5 * 6 * 7];
        for z in 1..4 {
            for y in 1..5 {
                for x in 2..6 {
                    v[(z * 6 + y) * 7 + x] = true;
                }
            }
        }
        assert_eq!(convex_volume_3d(&row_extremes_3d(&v, dims), dims), Some(48));
        assert_eq!(convex_volume_3d(&[[2, 2, 2]], dims), Some(1));
    }

    #[test]
    fn an_l_shape_fills_its_corner() {
        // L of two 1-pixel bars 5 long: the hull is a triangle-ish region of the 5x5 corner.
        let (h, w) = (7, 7);
        let mut m = vec![false; h * w];
        for i in 1..6 {
            m[w + i] = true;
            m[i * w + 1] = true;
        }
        let n = convex_area_2d(&row_extremes_2d(&m, h, w), h, w);
        assert!(n > 9 && n < 25, "{n}");
    }
}
