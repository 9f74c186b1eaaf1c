//! Morphometric features of a cell: 2D features of its input image and mask
//! ([`features_2d`]) and 3D features of a binarised volume ([`features_3d`]).
//!
//! Every feature is listed once, with its unit and a one-line definition, in [`FEATURES_2D`] and
//! [`FEATURES_3D`]; `docs/features.md` is generated from these tables (by the `features_doc`
//! module, and a test checks it is up to date) and the feature maps hold exactly these names.
//! Definitions follow scikit-image where it has the same feature, and golden tests check the
//! values against it.
//!
//! Values are always finite. A shape with no foreground is an [`FeatureError::EmptyShape`]; other
//! degenerate shapes (a single voxel, a flat shape, a shape touching the border) get the values
//! their definitions give, with the special cases written in the definitions.

mod features2d;
mod features3d;
mod glcm;
mod hull;
mod mesh;
mod moments;
mod quickhull;
mod topology;

pub use features2d::{MASK_THRESHOLD, features_2d};
pub use features3d::{features_3d, gaussian_smooth, surface_area, surface_roughness};
pub use topology::euler_number;

/// A feature's name (the key in a `FeatureMap`), unit and definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureDescriptor {
    pub name: &'static str,
    pub unit: &'static str,
    pub definition: &'static str,
}

const fn f(name: &'static str, unit: &'static str, definition: &'static str) -> FeatureDescriptor {
    FeatureDescriptor { name, unit, definition }
}

/// Why features could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeatureError {
    #[error(
        "the {what} is an empty shape (no foreground after thresholding): there is nothing to measure; \
         check the input (an all-background mask, or a sample the model left empty)"
    )]
    EmptyShape { what: &'static str },
    #[error("{what} has {len} values but its dimensions {dims:?} need {expected}")]
    WrongSize { what: &'static str, len: usize, dims: Vec<usize>, expected: usize },
}

/// The 2D features of a cell's inputs (mask thresholded at 128 of 255; image intensities 0..255).
pub const FEATURES_2D: &[FeatureDescriptor] = &[
    f("area", "px", "Number of mask pixels (scikit-image `area`)."),
    f(
        "perimeter",
        "px",
        "Perimeter of the mask by scikit-image's 4-neighbourhood weighting of boundary pixels (`perimeter`).",
    ),
    f(
        "convex_area",
        "px",
        "Pixels whose centres lie in the convex hull of the mask's pixel-edge midpoints (scikit-image `area_convex`).",
    ),
    f("solidity", "1", "area / convex_area (scikit-image `solidity`)."),
    f(
        "eccentricity",
        "1",
        "Eccentricity of the ellipse with the mask's second moments, sqrt(1 - l2/l1); 0 for a single pixel (scikit-image `eccentricity`).",
    ),
    f(
        "axis_major_length",
        "px",
        "Major axis of the ellipse with the mask's second moments, 4 sqrt(l1) (scikit-image `axis_major_length`).",
    ),
    f(
        "axis_minor_length",
        "px",
        "Minor axis of that ellipse, 4 sqrt(l2) (scikit-image `axis_minor_length`).",
    ),
    f(
        "equivalent_diameter",
        "px",
        "Diameter of the disc of the same area, sqrt(4 area / pi) (scikit-image `equivalent_diameter_area`).",
    ),
    f("extent", "1", "area / area of the bounding box (scikit-image `extent`)."),
    f(
        "circularity",
        "1",
        "4 pi area / perimeter^2 (1 for a disc); 0 when the perimeter is 0 (a single pixel).",
    ),
    f(
        "boundary_length",
        "px",
        "Number of boundary pixels: mask pixels with a 4-neighbour outside the mask or the image.",
    ),
    f(
        "boundary_roughness",
        "1",
        "Orientation-free boundary roughness: standard deviation of the boundary pixels' distances to the centroid divided by their mean (0 for a disc; 0 when the mean is 0).",
    ),
    f(
        "intensity_mean",
        "grey level",
        "Mean image intensity (0..255) over the mask (scikit-image `intensity_mean`).",
    ),
    f(
        "intensity_std",
        "grey level",
        "Population standard deviation of the image intensity over the mask (scikit-image `intensity_std`).",
    ),
    f("intensity_max", "grey level", "Maximum image intensity over the mask (scikit-image `intensity_max`)."),
    f(
        "glcm_dissimilarity",
        "grey level",
        "GLCM dissimilarity sum P(i,j)|i-j| of the masked image: distance 1, angles 0, 45, 90, 135 degrees averaged, symmetric, only pairs of mask pixels (scikit-image `graycoprops`).",
    ),
    f(
        "glcm_contrast",
        "grey level^2",
        "GLCM contrast sum P(i,j)(i-j)^2, same co-occurrences as glcm_dissimilarity (scikit-image `graycoprops`).",
    ),
    f(
        "glcm_homogeneity",
        "1",
        "GLCM homogeneity sum P(i,j)/(1+(i-j)^2), same co-occurrences (scikit-image `graycoprops`).",
    ),
    f(
        "glcm_correlation",
        "1",
        "GLCM correlation of the co-occurring grey levels, same co-occurrences; 1 where the intensity is constant, 0 where no pair exists (scikit-image `graycoprops`).",
    ),
];

/// The 3D features of a binarised volume (voxel units; z, y, x axes as stored).
pub const FEATURES_3D: &[FeatureDescriptor] = &[
    f("volume", "voxel", "Number of foreground voxels (scikit-image `area`)."),
    f(
        "surface_area",
        "voxel^2",
        "Area of the marching-cubes mesh at level 0.5 of the zero-padded binary volume (scikit-image `marching_cubes` + `mesh_surface_area`).",
    ),
    f(
        "sphericity",
        "1",
        "pi^(1/3) (6 volume)^(2/3) / surface_area: 1 for a ball, smaller for other shapes (voxelisation keeps it below 1).",
    ),
    f("surface_to_volume", "1/voxel", "surface_area / volume."),
    f(
        "equivalent_diameter",
        "voxel",
        "Diameter of the ball of the same volume, (6 volume / pi)^(1/3) (scikit-image `equivalent_diameter_area`).",
    ),
    f(
        "convex_volume",
        "voxel",
        "Voxels whose centres lie in the convex hull of the shape's voxel-face centres (scikit-image `area_convex`).",
    ),
    f("solidity", "1", "volume / convex_volume (scikit-image `solidity`)."),
    f(
        "inertia_eigenvalue_1",
        "voxel^2",
        "Largest eigenvalue of the inertia tensor per unit mass (scikit-image `inertia_tensor_eigvals`[0]).",
    ),
    f(
        "inertia_eigenvalue_2",
        "voxel^2",
        "Middle eigenvalue of the inertia tensor (scikit-image `inertia_tensor_eigvals`[1]).",
    ),
    f(
        "inertia_eigenvalue_3",
        "voxel^2",
        "Smallest eigenvalue of the inertia tensor (scikit-image `inertia_tensor_eigvals`[2]).",
    ),
    f(
        "axis_major_length",
        "voxel",
        "Longest axis of the ellipsoid with the shape's second moments, sqrt(20 c1) for covariance eigenvalues c1>=c2>=c3 (scikit-image `axis_major_length`).",
    ),
    f("axis_middle_length", "voxel", "Middle axis of that ellipsoid, sqrt(20 c2)."),
    f(
        "axis_minor_length",
        "voxel",
        "Shortest axis of that ellipsoid, sqrt(20 c3) (scikit-image `axis_minor_length`).",
    ),
    f(
        "elongation",
        "1",
        "sqrt(c2 / c1) (pyradiomics' elongation): 1 for a ball, small for a rod; 1 for a single voxel.",
    ),
    f(
        "flatness",
        "1",
        "sqrt(c3 / c1) (pyradiomics' flatness): 1 for a ball, small for a disc; 1 for a single voxel.",
    ),
    f("extent_z", "voxel", "Size of the bounding box along z."),
    f("extent_y", "voxel", "Size of the bounding box along y."),
    f("extent_x", "voxel", "Size of the bounding box along x."),
    f("bbox_volume", "voxel", "Volume of the bounding box, extent_z extent_y extent_x."),
    f("extent", "1", "volume / bbox_volume (scikit-image `extent`)."),
    f(
        "euler_number",
        "1",
        "Euler characteristic of the foreground with 26-connectivity: components - tunnels + cavities (scikit-image `euler_number`, connectivity 3).",
    ),
    f(
        "components",
        "1",
        "Number of 26-connected foreground components (scikit-image `label`, connectivity 3).",
    ),
    f("largest_component_fraction", "1", "Voxels of the largest 26-connected component / volume."),
    f(
        "surface_roughness",
        "voxel",
        "SHAPR's roughness: sum over voxels of |object - its Gaussian-smoothed version| (sigma 1 voxel, zero outside), divided by surface_area.",
    ),
    f(
        "boundary_voxels",
        "voxel",
        "Foreground voxels with a 6-neighbour in the background or outside the volume.",
    ),
    f("boundary_fraction", "1", "boundary_voxels / volume."),
    f(
        "convexity_xy",
        "1",
        "Solidity (area / convex area, as the 2D solidity) of the z-slice through the centroid; 0 when that slice is empty.",
    ),
    f("convexity_xz", "1", "Solidity of the y-slice through the centroid; 0 when that slice is empty."),
    f("convexity_yz", "1", "Solidity of the x-slice through the centroid; 0 when that slice is empty."),
    f("projection_area", "px", "Pixels of the projection along z (columns holding at least one voxel)."),
    f("projection_max_thickness", "voxel", "Largest number of foreground voxels in one z-column."),
    f("projection_mean_thickness", "voxel", "Mean number of foreground voxels per non-empty z-column."),
    f(
        "projection_thickness_std",
        "voxel",
        "Population standard deviation of the voxels per non-empty z-column.",
    ),
    f(
        "moment_j1",
        "1",
        "First scale-invariant 3D moment invariant: (c1 + c2 + c3) / volume^(2/3), c the covariance eigenvalues.",
    ),
    f("moment_j2", "1", "Second invariant: (c1 c2 + c2 c3 + c1 c3) / volume^(4/3)."),
    f("moment_j3", "1", "Third invariant: c1 c2 c3 / volume^2."),
    f(
        "radial_mean",
        "1",
        "Mean distance of the boundary voxels to the centroid, divided by the equivalent radius (equivalent_diameter / 2).",
    ),
    f(
        "radial_std",
        "1",
        "Population standard deviation of those distances, divided by the equivalent radius.",
    ),
    f("radial_max", "1", "Largest of those distances, divided by the equivalent radius."),
];

fn check_len(what: &'static str, len: usize, dims: &[usize]) -> Result<(), FeatureError> {
    let expected = dims.iter().product();
    if len != expected {
        return Err(FeatureError::WrongSize { what, len, dims: dims.to_vec(), expected });
    }
    Ok(())
}

/// A value made safe for the feature map: NaN or infinite becomes the documented `fallback`.
fn finite_or(v: f64, fallback: f64) -> f64 {
    if v.is_finite() { v } else { fallback }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_are_unique_snake_case_and_documented() {
        for table in [FEATURES_2D, FEATURES_3D] {
            let names: BTreeSet<_> = table.iter().map(|d| d.name).collect();
            assert_eq!(names.len(), table.len(), "duplicate feature name");
            for d in table {
                assert!(
                    d.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{}",
                    d.name
                );
                assert!(!d.unit.is_empty() && d.definition.ends_with('.'), "{}", d.name);
            }
        }
        assert!(FEATURES_2D.len() >= 14 && FEATURES_3D.len() >= 30);
    }
}
