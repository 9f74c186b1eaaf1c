//! Marching-cubes surface area of a binary volume.
//!
//! On a binary volume thresholded at 0.5 every mesh vertex sits at an edge midpoint, so the mesh
//! inside one cube depends only on which of its 8 corners are foreground. The area is therefore a
//! sum over cubes of a 256-entry table. The table is built once from the `mcubes` crate's own
//! marching cubes (its tables, its triangles), run on each 2x2x2 configuration; the volume is then
//! one pass of table look-ups, with no mesh allocated.

use std::sync::OnceLock;

/// Area of the marching-cubes triangles inside one cube, by corner configuration: bit
/// `dx + 2 dy + 4 dz` set when the corner at offset (dz, dy, dx) is foreground.
pub(super) fn area_table() -> &'static [f64; 256] {
    static TABLE: OnceLock<[f64; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = [0.0; 256];
        for (config, slot) in table.iter_mut().enumerate() {
            // mcubes indexes its values x + 2 y + 4 z: the same bit order as `config`.
            let values: Vec<f32> = (0..8).map(|p| if config & (1 << p) != 0 { 1.0 } else { 0.0 }).collect();
            // `new` only fails when the values do not fit the grid: 8 always fit 2x2x2.
            let Ok(mc) = mcubes::MarchingCubes::new(
                (2, 2, 2),
                (1.0, 1.0, 1.0),
                (1.0, 1.0, 1.0),
                lin_alg::f32::Vec3::new_zero(),
                values,
                0.5,
            ) else {
                continue;
            };
            let mesh = mc.generate(mcubes::MeshSide::OutsideOnly);
            *slot = mesh
                .indices
                .chunks_exact(3)
                .map(|t| {
                    let p = |i: usize| {
                        let v = &mesh.vertices[t[i]].posit;
                        [v.x as f64, v.y as f64, v.z as f64]
                    };
                    triangle_area(p(0), p(1), p(2))
                })
                .sum();
        }
        table
    })
}

fn triangle_area(a: [f64; 3], b: [f64; 3], c: [f64; 3]) -> f64 {
    let u = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
    let v = [c[0] - a[0], c[1] - a[1], c[2] - a[2]];
    let n = [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]];
    0.5 * (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt()
}

/// Surface area (voxel^2) of the marching-cubes mesh at level 0.5 of the volume padded with one
/// layer of background, so that a shape touching the border still gets a closed surface.
pub fn surface_area(mask: &[bool], dims: [usize; 3]) -> f64 {
    let (padded, pdims) = super::topology::pad(mask, dims);
    let table = area_table();
    let mut area = 0.0;
    super::topology::for_each_window(&padded, pdims, |c| area += table[c]);
    area
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_the_known_simple_cases() {
        let t = area_table();
        assert_eq!((t[0], t[255]), (0.0, 0.0));
        // One corner in or out: a triangle between three edge midpoints, area sqrt(3)/8.
        for c in (0..8).flat_map(|p| [1usize << p, 255 - (1 << p)]) {
            assert!((t[c] - 3f64.sqrt() / 8.0).abs() < 1e-6, "config {c}: {}", t[c]);
        }
        // Half the cube: a unit square.
        assert!((t[0b0000_1111] - 1.0).abs() < 1e-6, "{}", t[15]);
    }

    #[test]
    fn single_voxel_is_an_octahedron() {
        // 8 faces, each an equilateral triangle with side sqrt(2)/2: area 8 * sqrt(3)/8.
        let a = surface_area(&[true], [1, 1, 1]);
        assert!((a - 3f64.sqrt()).abs() < 1e-6, "{a}");
    }
}
