//! Topology of a binary volume with 26-connectivity: Euler characteristic and connected
//! components.
//!
//! Hand-written: scikit-image computes these with a 256-entry table of its own and a labelling
//! pass; no maintained crate does either for a plain boolean 3D array. Here the Euler
//! characteristic is counted on the cubical complex of the foreground voxels (closed unit cubes,
//! so that cubes meeting at an edge or a corner are connected, as 26-connectivity requires):
//! chi = vertices - edges + faces - cubes, each cell counted once at its lowest corner.

use std::sync::OnceLock;

/// Contribution to chi of the lattice point shared by a 2x2x2 window of voxels, and of the
/// edges, faces and cube that start there in the +x, +y, +z directions. Bit `dx + 2 dy + 4 dz`
/// of the configuration is the voxel at offset (dz, dy, dx); the point is the window's centre.
pub(super) fn euler_table() -> &'static [i8; 256] {
    static TABLE: OnceLock<[i8; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0i8; 256];
        for (config, slot) in t.iter_mut().enumerate() {
            let v = |dz: usize, dy: usize, dx: usize| config & (1 << (dx + 2 * dy + 4 * dz)) != 0;
            let any = |f: &dyn Fn(usize, usize, usize) -> bool| {
                (0..8).any(|p| f(p >> 2, (p >> 1) & 1, p & 1) && v(p >> 2, (p >> 1) & 1, p & 1))
            };
            let vertex = any(&|_, _, _| true) as i8;
            // The edge from the point along +x is shared by the four voxels with dx = 1.
            let edges = any(&|_, _, dx| dx == 1) as i8
                + any(&|_, dy, _| dy == 1) as i8
                + any(&|dz, _, _| dz == 1) as i8;
            // The face spanning +x and +y is shared by the two voxels with dx = dy = 1.
            let faces = any(&|_, dy, dx| dy == 1 && dx == 1) as i8
                + any(&|dz, _, dx| dz == 1 && dx == 1) as i8
                + any(&|dz, dy, _| dz == 1 && dy == 1) as i8;
            let cube = v(1, 1, 1) as i8;
            *slot = vertex - edges + faces - cube;
        }
        t
    })
}

/// The volume with one layer of background around it, as 0/1 bytes.
pub fn pad(mask: &[bool], dims: [usize; 3]) -> (Vec<u8>, [usize; 3]) {
    let [d, h, w] = dims;
    let (pd, ph, pw) = (d + 2, h + 2, w + 2);
    let mut padded = vec![0u8; pd * ph * pw];
    for z in 0..d {
        for y in 0..h {
            let src = &mask[(z * h + y) * w..(z * h + y + 1) * w];
            let dst = ((z + 1) * ph + y + 1) * pw + 1;
            for (o, &v) in padded[dst..dst + w].iter_mut().zip(src) {
                *o = v as u8;
            }
        }
    }
    (padded, [pd, ph, pw])
}

/// Calls `f(config)` for every 2x2x2 window of a padded volume (bit `dx + 2 dy + 4 dz`).
pub fn for_each_window(padded: &[u8], pdims: [usize; 3], mut f: impl FnMut(usize)) {
    let [pd, ph, pw] = pdims;
    let (sy, sz) = (pw, ph * pw);
    for z in 0..pd - 1 {
        for y in 0..ph - 1 {
            let base = z * sz + y * sy;
            for i in base..base + pw - 1 {
                f(padded[i] as usize
                    | (padded[i + 1] as usize) << 1
                    | (padded[i + sy] as usize) << 2
                    | (padded[i + sy + 1] as usize) << 3
                    | (padded[i + sz] as usize) << 4
                    | (padded[i + sz + 1] as usize) << 5
                    | (padded[i + sz + sy] as usize) << 6
                    | (padded[i + sz + sy + 1] as usize) << 7);
            }
        }
    }
}

/// Euler characteristic of the foreground, 26-connectivity (scikit-image `euler_number`,
/// connectivity 3): components - tunnels + cavities.
pub fn euler_number(mask: &[bool], dims: [usize; 3]) -> i64 {
    let (padded, pdims) = pad(mask, dims);
    let table = euler_table();
    let mut chi = 0i64;
    for_each_window(&padded, pdims, |c| chi += table[c] as i64);
    chi
}

/// Sizes of the 26-connected foreground components, largest first.
pub fn component_sizes(mask: &[bool], dims: [usize; 3]) -> Vec<usize> {
    // On the padded volume every foreground voxel has all 26 neighbours in bounds, and a
    // visited voxel is simply cleared.
    let (mut padded, [_, ph, pw]) = pad(mask, dims);
    let offsets: Vec<isize> = (0..27)
        .filter(|&k| k != 13)
        .map(|k| {
            let (dz, dy, dx) = (k / 9 - 1, (k / 3) % 3 - 1, k % 3 - 1);
            (dz * (ph * pw) as isize) + dy * pw as isize + dx
        })
        .collect();
    let mut sizes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..padded.len() {
        if padded[start] == 0 {
            continue;
        }
        padded[start] = 0;
        stack.push(start);
        let mut size = 0;
        while let Some(i) = stack.pop() {
            size += 1;
            for &o in &offsets {
                let j = (i as isize + o) as usize;
                if padded[j] != 0 {
                    padded[j] = 0;
                    stack.push(j);
                }
            }
        }
        sizes.push(size);
    }
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(dims: [usize; 3], f: impl Fn(usize, usize, usize) -> bool) -> Vec<bool> {
        let [d, h, w] = dims;
        (0..d * h * w).map(|i| f(i / (h * w), (i / w) % h, i % w)).collect()
    }

    #[test]
    fn euler_number_counts_components_tunnels_and_cavities() {
        let dims = [9, 9, 9];
        let solid = volume(dims, |z, y, x| (2..7).contains(&z) && (2..7).contains(&y) && (2..7).contains(&x));
        assert_eq!(euler_number(&solid, dims), 1);
        // A hollow box: one cavity.
        let hollow = volume(dims, |z, y, x| {
            let inside = |a: usize| (2..7).contains(&a);
            let core = |a: usize| (3..6).contains(&a);
            inside(z) && inside(y) && inside(x) && !(core(z) && core(y) && core(x))
        });
        assert_eq!(euler_number(&hollow, dims), 2);
        // A ring (a box with a hole through z): one tunnel.
        let ring = volume(dims, |z, y, x| {
            (3..6).contains(&z)
                && (2..7).contains(&y)
                && (2..7).contains(&x)
                && !((4..5).contains(&y) && (4..5).contains(&x))
        });
        assert_eq!(euler_number(&ring, dims), 0);
        // Two voxels touching at a corner are one component with 26-connectivity.
        let corner = volume(dims, |z, y, x| (z, y, x) == (1, 1, 1) || (z, y, x) == (2, 2, 2));
        assert_eq!(euler_number(&corner, dims), 1);
        assert_eq!(component_sizes(&corner, dims), vec![2]);
        let apart = volume(dims, |z, y, x| {
            (z, y, x) == (1, 1, 1) || (z, y, x) == (5, 5, 5) || (z, y, x) == (5, 5, 6)
        });
        assert_eq!(euler_number(&apart, dims), 2);
        assert_eq!(component_sizes(&apart, dims), vec![2, 1]);
        // Touching the border changes nothing: the volume is padded.
        let full = vec![true; 27];
        assert_eq!(euler_number(&full, [3, 3, 3]), 1);
    }
}
