//! Convex hull areas and volumes counted as scikit-image's `convex_hull_image` does: the hull of
//! the shape's pixel-edge (voxel-face) midpoints, i.e. each pixel centre moved by +-0.5 along each
//! axis, and the count of pixel (voxel) centres inside it, borders included.
//!
//! All coordinates are doubled so that those midpoints are integers, and every test is exact
//! integer arithmetic: no tolerance to tune, no round-off on the grid's many coplanar points.
//! The 2D hull is Andrew's monotone chain, a dozen lines; the 3D hull is [`super::quickhull`]
//! (see there why not a crate).

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
    let cross =
        |o: [i64; 2], a: [i64; 2], b: [i64; 2]| (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
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

/// Number of voxel centres of a volume of `dims` inside the convex hull of the foreground
/// voxels' face centres (scikit-image `area_convex` in 3D). `None` for an empty volume.
pub fn convex_volume_3d(mask: &[bool], dims: [usize; 3]) -> Option<usize> {
    let [d, h, w] = dims;
    // Hull vertices are vertices of their z-slice's 2D hull: keep only those (a few hundred
    // points instead of thousands), then move each to its six face centres.
    let mut pts: Vec<[i64; 3]> = Vec::new();
    for z in 0..d {
        let slice = &mask[z * h * w..(z + 1) * h * w];
        let extremes = row_extremes_2d(slice, h, w);
        let vertices = if extremes.len() <= 2 { extremes } else { monotone_chain(&extremes) };
        for [y, x] in vertices {
            let (z, y, x) = (2 * z as i64, 2 * y, 2 * x);
            pts.extend([
                [z - 1, y, x],
                [z + 1, y, x],
                [z, y - 1, x],
                [z, y + 1, x],
                [z, y, x - 1],
                [z, y, x + 1],
            ]);
        }
    }
    if pts.is_empty() {
        return None;
    }
    pts.sort_unstable();
    pts.dedup();
    let planes = super::quickhull::hull_planes(&pts)?;
    let (zmin, zmax) = (pts[0][0], pts[pts.len() - 1][0]);
    let mut total = 0;
    let mut slice_planes: Vec<HalfSpace<2>> = Vec::new();
    for z in 0..d {
        let zz = 2 * z as i64;
        if zz < zmin || zz > zmax {
            continue;
        }
        // Only the faces crossing this slice bound it (the others are implied: the hull is convex).
        slice_planes.clear();
        slice_planes.extend(
            planes
                .iter()
                .filter(|p| p.z_range[0] <= zz && zz <= p.z_range[1])
                .map(|p| ([p.n[1], p.n[2]], p.d - p.n[0] * zz)),
        );
        total += count_lattice_in(&slice_planes, [h, w]);
    }
    Some(total)
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
        assert_eq!(convex_volume_3d(&v, dims), Some(48));
        let mut one = vec![false; 5 * 6 * 7];
        one[(2 * 6 + 2) * 7 + 2] = true;
        assert_eq!(convex_volume_3d(&one, dims), Some(1));
        assert_eq!(convex_volume_3d(&vec![false; 5 * 6 * 7], dims), None);
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
