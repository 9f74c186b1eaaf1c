//! Plain arrays for 2D images and 3D volumes.
//!
//! Both types are deliberately simple, public-field containers: the dimensions and a flat,
//! row-major buffer. Volumes are in ZYX order (`data[(z * h + y) * w + x]`), the order of a
//! multi-page TIFF (one page per z) and of numpy arrays read with tifffile, so data moves between
//! the model, the TIFF files and Python reference checks without any transposition.

/// Side of the cube the DISPR model works on: volumes are 64^3, images 64x64.
pub const SIDE: usize = 64;

/// A 3D array in ZYX order: `dims = [depth, height, width]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume<T> {
    /// `[depth (z), height (y), width (x)]`.
    pub dims: [usize; 3],
    /// `depth * height * width` values, x fastest.
    pub data: Vec<T>,
}

/// A 2D array in YX order: `dims = [height, width]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Image2d<T> {
    /// `[height (y), width (x)]`.
    pub dims: [usize; 2],
    /// `height * width` values, x fastest.
    pub data: Vec<T>,
}

impl<T: Copy + Default> Volume<T> {
    /// A volume of `dims` filled with `T::default()` (zero for numbers).
    pub fn zeros(dims: [usize; 3]) -> Self {
        Self { dims, data: vec![T::default(); dims[0] * dims[1] * dims[2]] }
    }

    /// Wraps `data`; `None` when its length does not match `dims`.
    pub fn from_vec(dims: [usize; 3], data: Vec<T>) -> Option<Self> {
        (data.len() == dims[0] * dims[1] * dims[2]).then_some(Self { dims, data })
    }

    /// Flat index of voxel (z, y, x).
    #[inline]
    pub fn index(&self, z: usize, y: usize, x: usize) -> usize {
        (z * self.dims[1] + y) * self.dims[2] + x
    }

    /// Value at (z, y, x). Panics when out of bounds, like slice indexing.
    #[inline]
    pub fn get(&self, z: usize, y: usize, x: usize) -> T {
        self.data[self.index(z, y, x)]
    }

    /// The z-slice `z` as an image (a TIFF page).
    pub fn slice_z(&self, z: usize) -> Image2d<T> {
        let plane = self.dims[1] * self.dims[2];
        Image2d { dims: [self.dims[1], self.dims[2]], data: self.data[z * plane..(z + 1) * plane].to_vec() }
    }

    /// Applies `f` to every voxel.
    pub fn map<U>(&self, f: impl Fn(T) -> U) -> Volume<U> {
        Volume { dims: self.dims, data: self.data.iter().map(|&v| f(v)).collect() }
    }
}

impl<T: Copy + Default + PartialOrd> Volume<T> {
    /// Maximum intensity projection along `axis` (0 = z, 1 = y, 2 = x). The result keeps the
    /// other two axes in order: along z it is a YX image, along y a ZX image, along x a ZY image.
    pub fn max_projection(&self, axis: usize) -> Image2d<T> {
        let [d, h, w] = self.dims;
        let (rows, cols) = match axis {
            0 => (h, w),
            1 => (d, w),
            _ => (d, h),
        };
        let mut out: Vec<Option<T>> = vec![None; rows * cols];
        for z in 0..d {
            for y in 0..h {
                for x in 0..w {
                    let v = self.data[(z * h + y) * w + x];
                    let i = match axis {
                        0 => y * w + x,
                        1 => z * w + x,
                        _ => z * h + y,
                    };
                    if out[i].is_none_or(|m| v > m) {
                        out[i] = Some(v);
                    }
                }
            }
        }
        Image2d { dims: [rows, cols], data: out.into_iter().map(Option::unwrap_or_default).collect() }
    }
}

impl<T: Copy + Default> Image2d<T> {
    /// An image of `dims` filled with `T::default()`.
    pub fn zeros(dims: [usize; 2]) -> Self {
        Self { dims, data: vec![T::default(); dims[0] * dims[1]] }
    }

    /// Wraps `data`; `None` when its length does not match `dims`.
    pub fn from_vec(dims: [usize; 2], data: Vec<T>) -> Option<Self> {
        (data.len() == dims[0] * dims[1]).then_some(Self { dims, data })
    }

    /// Value at (y, x). Panics when out of bounds, like slice indexing.
    #[inline]
    pub fn get(&self, y: usize, x: usize) -> T {
        self.data[y * self.dims[1] + x]
    }

    /// Applies `f` to every pixel.
    pub fn map<U>(&self, f: impl Fn(T) -> U) -> Image2d<U> {
        Image2d { dims: self.dims, data: self.data.iter().map(|&v| f(v)).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zyx_indexing_and_slices() {
        let data: Vec<u16> = (0..2 * 3 * 4).collect();
        let v = Volume::from_vec([2, 3, 4], data).unwrap();
        assert_eq!(v.get(1, 2, 3), 23);
        assert_eq!(v.get(1, 0, 0), 12);
        assert_eq!(v.slice_z(1).data, (12..24).collect::<Vec<_>>());
        assert!(Volume::<u8>::from_vec([2, 2, 2], vec![0; 7]).is_none());
    }

    #[test]
    fn max_projections_keep_axis_order() {
        let mut v = Volume::<u8>::zeros([2, 3, 4]);
        let i = v.index(1, 2, 3);
        v.data[i] = 9;
        let pz = v.max_projection(0);
        assert_eq!((pz.dims, pz.get(2, 3)), ([3, 4], 9));
        let py = v.max_projection(1);
        assert_eq!((py.dims, py.get(1, 3)), ([2, 4], 9));
        let px = v.max_projection(2);
        assert_eq!((px.dims, px.get(1, 2)), ([2, 3], 9));
        assert_eq!(px.data.iter().filter(|&&p| p == 9).count(), 1);
    }
}
