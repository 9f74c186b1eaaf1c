//! Pictures of a cell for the run report: its input image and mask, the maximum projections of
//! each predicted sample along z, y and x, and those of the ground truth where it exists.

use dispr_shape::preview::encode_png;
use dispr_shape::volume::{Image2d, Volume};

/// Grey of the gaps between tiles.
const GAP: u8 = 64;
/// Tiles are drawn at this many screen pixels per voxel (64 px volumes are small on a screen).
const ZOOM: usize = 2;

/// Lays `tiles` (equal sizes) side by side, 2 px apart, zoomed, and encodes the row as a PNG.
pub fn strip_png(tiles: &[Image2d<u8>]) -> anyhow::Result<Vec<u8>> {
    let Some(first) = tiles.first() else { anyhow::bail!("no tiles to draw") };
    let [h, w] = first.dims;
    anyhow::ensure!(tiles.iter().all(|t| t.dims == first.dims), "tiles of a strip must have one size");
    let gap = 2;
    let (th, tw) = (h * ZOOM, w * ZOOM);
    let width = tiles.len() * tw + (tiles.len() - 1) * gap;
    let mut canvas = Image2d { dims: [th, width], data: vec![GAP; th * width] };
    for (i, tile) in tiles.iter().enumerate() {
        let left = i * (tw + gap);
        for y in 0..th {
            for x in 0..tw {
                canvas.data[y * width + left + x] = tile.data[(y / ZOOM) * w + x / ZOOM];
            }
        }
    }
    Ok(encode_png(&canvas)?)
}

/// Maximum projections along z, y and x of a volume in [0, 1], as 8-bit images.
pub fn projections_f32(volume: &Volume<f32>) -> [Image2d<u8>; 3] {
    [0, 1, 2].map(|axis| volume.max_projection(axis).map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8))
}

/// Maximum projections along z, y and x of an 8-bit volume.
pub fn projections_u8(volume: &Volume<u8>) -> [Image2d<u8>; 3] {
    [0, 1, 2].map(|axis| volume.max_projection(axis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_is_a_png_of_the_tiles_side_by_side() {
        let tile = Image2d { dims: [4, 3], data: vec![200u8; 12] };
        let png = strip_png(&[tile.clone(), tile]).unwrap();
        let (w, h) = (
            u32::from_be_bytes([png[16], png[17], png[18], png[19]]),
            u32::from_be_bytes([png[20], png[21], png[22], png[23]]),
        );
        assert_eq!((w, h), ((2 * 3 * ZOOM + 2) as u32, (4 * ZOOM) as u32));
        assert!(strip_png(&[]).is_err());
    }

    #[test]
    fn projections_take_the_maximum_along_each_axis() {
        let mut v = Volume::<f32>::zeros([4, 5, 6]);
        let i = v.index(1, 2, 3);
        v.data[i] = 1.0;
        let [z, y, x] = projections_f32(&v);
        assert_eq!((z.dims, y.dims, x.dims), ([5, 6], [4, 6], [4, 5]));
        assert_eq!((z.get(2, 3), y.get(1, 3), x.get(1, 2)), (255, 255, 255));
        assert_eq!(z.data.iter().filter(|&&p| p > 0).count(), 1);
    }
}
