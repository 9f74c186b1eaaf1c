//! Preview montages of a dataset, to judge by eye how cells look: one row per class (per
//! sub-class where there is one), and per cell five 64x64 tiles: the image, the mask, and the
//! maximum projections of obj along z, y and x (blank where the cell has no obj).

use crate::dataset::{CellData, Label};
use crate::volume::{Image2d, SIDE};
use std::collections::BTreeMap;

/// Tiles per cell: image, mask, three projections.
const TILES: usize = 5;
/// Grey lines between tiles, wider gaps between cells and rows.
const TILE_GAP: usize = 1;
const CELL_GAP: usize = 6;
const GAP_GREY: u8 = 48;

/// A montage and the label of each of its rows, top to bottom.
pub struct Montage {
    pub image: Image2d<u8>,
    pub rows: Vec<String>,
}

fn row_name(label: &Label) -> String {
    match &label.subclass {
        Some(sub) => format!("{} / {sub}", label.class),
        None => label.class.clone(),
    }
}

/// Which cells to show: the first `per_row` of each label, in the given order. Returns indices
/// into `labels`, grouped by label (sorted).
pub fn pick(labels: &[&Label], per_row: usize) -> Vec<usize> {
    let mut rows: BTreeMap<&Label, Vec<usize>> = BTreeMap::new();
    for (i, label) in labels.iter().enumerate() {
        let row = rows.entry(*label).or_default();
        if row.len() < per_row {
            row.push(i);
        }
    }
    rows.into_values().flatten().collect()
}

fn blit(canvas: &mut Image2d<u8>, tile: &Image2d<u8>, top: usize, left: usize) {
    let [h, w] = [tile.dims[0].min(SIDE), tile.dims[1].min(SIDE)];
    for y in 0..h {
        let start = (top + y) * canvas.dims[1] + left;
        canvas.data[start..start + w].copy_from_slice(&tile.data[y * tile.dims[1]..y * tile.dims[1] + w]);
    }
}

/// Lays out `cells` (at most `per_row` per label; see [`pick`]) into a montage.
pub fn montage(cells: &[CellData], per_row: usize) -> Montage {
    let mut rows: BTreeMap<&Label, Vec<&CellData>> = BTreeMap::new();
    for cell in cells {
        let row = rows.entry(&cell.label).or_default();
        if row.len() < per_row {
            row.push(cell);
        }
    }
    let cell_width = TILES * SIDE + (TILES - 1) * TILE_GAP;
    let width = per_row.max(1) * (cell_width + CELL_GAP) + CELL_GAP;
    let height = rows.len() * (SIDE + CELL_GAP) + CELL_GAP;
    let mut canvas = Image2d { dims: [height, width], data: vec![GAP_GREY; height * width] };
    for (r, row) in rows.values().enumerate() {
        let top = CELL_GAP + r * (SIDE + CELL_GAP);
        for (c, cell) in row.iter().enumerate() {
            let left = CELL_GAP + c * (cell_width + CELL_GAP);
            let blank = Image2d::zeros([SIDE, SIDE]);
            let projections = match &cell.obj {
                Some(obj) => [0, 1, 2].map(|axis| obj.max_projection(axis)),
                None => [blank.clone(), blank.clone(), blank.clone()],
            };
            let tiles = [&cell.image, &cell.mask, &projections[0], &projections[1], &projections[2]];
            for (t, tile) in tiles.into_iter().enumerate() {
                blit(&mut canvas, tile, top, left + t * (SIDE + TILE_GAP));
            }
        }
    }
    Montage { image: canvas, rows: rows.keys().map(|l| row_name(l)).collect() }
}

/// Encodes an 8-bit greyscale image as PNG.
pub fn encode_png(image: &Image2d<u8>) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, image.dims[1] as u32, image.dims[0] as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&image.data)?;
    writer.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Volume;
    use dispr_proto::CellId;

    fn cell(id: &str, class: &str, value: u8) -> CellData {
        let mut obj = Volume::<u8>::zeros([SIDE; 3]);
        let i = obj.index(10, 20, 30);
        obj.data[i] = value;
        CellData {
            id: CellId::new(id).unwrap(),
            label: Label { class: class.into(), subclass: None },
            image: Image2d { dims: [SIDE, SIDE], data: vec![value; SIDE * SIDE] },
            mask: Image2d::zeros([SIDE, SIDE]),
            obj: Some(obj),
        }
    }

    #[test]
    fn rows_per_label_and_tiles_in_place() {
        let cells = [cell("b1", "b", 200), cell("a1", "a", 100), cell("a2", "a", 110), cell("a3", "a", 120)];
        let m = montage(&cells, 2);
        assert_eq!(m.rows, ["a", "b"]);
        let w = m.image.dims[1];
        assert_eq!(m.image.dims[0], 2 * (SIDE + CELL_GAP) + CELL_GAP);
        // Row a, first cell: its image tile is all 100; a3 is left out (2 per row).
        assert_eq!(m.image.data[CELL_GAP * w + CELL_GAP], 100);
        assert!(!m.image.data.contains(&120));
        // The z projection tile of a1 shows the voxel at (y 20, x 30).
        let left = CELL_GAP + 2 * (SIDE + TILE_GAP);
        assert_eq!(m.image.data[(CELL_GAP + 20) * w + left + 30], 100);
        let png = encode_png(&m.image).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert_eq!(
            pick(&[&cells[0].label, &cells[1].label, &cells[2].label, &cells[3].label], 2),
            vec![1, 2, 0]
        );
    }
}
