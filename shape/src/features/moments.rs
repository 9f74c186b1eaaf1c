//! First and second moments of a set of pixels or voxels: count, centroid, population
//! covariance and its eigenvalues (nalgebra's symmetric eigen-decomposition).

use nalgebra::DMatrix;

/// Running sums of coordinates and their products, in exact integers.
#[derive(Debug, Clone, Copy)]
pub struct Moments<const N: usize> {
    pub count: u64,
    sum: [i64; N],
    sum2: [[i64; N]; N],
}

impl<const N: usize> Default for Moments<N> {
    fn default() -> Self {
        Self { count: 0, sum: [0; N], sum2: [[0; N]; N] }
    }
}

impl<const N: usize> Moments<N> {
    pub fn add(&mut self, p: [usize; N]) {
        self.count += 1;
        for i in 0..N {
            self.sum[i] += p[i] as i64;
            for j in i..N {
                self.sum2[i][j] += (p[i] * p[j]) as i64;
            }
        }
    }

    /// Centroid (mean coordinate); zeros for no points.
    pub fn centroid(&self) -> [f64; N] {
        let n = self.count.max(1) as f64;
        std::array::from_fn(|i| self.sum[i] as f64 / n)
    }

    /// Population covariance of the coordinates (scikit-image's central moments / mu0).
    pub fn covariance(&self) -> DMatrix<f64> {
        let n = self.count.max(1) as f64;
        let c = self.centroid();
        DMatrix::from_fn(N, N, |i, j| {
            let (a, b) = if i <= j { (i, j) } else { (j, i) };
            self.sum2[a][b] as f64 / n - c[a] * c[b]
        })
    }

    /// Eigenvalues of the covariance, largest first, clamped at 0 (round-off can make a zero
    /// eigenvalue slightly negative). A dynamic matrix: nalgebra's eigen-decomposition is not
    /// generic over a const dimension.
    pub fn covariance_eigenvalues(&self) -> [f64; N] {
        let eig = nalgebra::SymmetricEigen::new(self.covariance());
        let mut ev: [f64; N] = std::array::from_fn(|i| eig.eigenvalues[i].max(0.0));
        ev.sort_by(|a, b| b.total_cmp(a));
        ev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covariance_of_a_bar_is_along_its_axis() {
        let mut m = Moments::<2>::default();
        for c in 0..5 {
            m.add([3, c]);
        }
        assert_eq!(m.centroid(), [3.0, 2.0]);
        let ev = m.covariance_eigenvalues();
        assert!((ev[0] - 2.0).abs() < 1e-12 && ev[1].abs() < 1e-12, "{ev:?}");
    }
}
