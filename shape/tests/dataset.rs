//! The dataset layout: pure index building over key listings, and real datasets on a local
//! folder through `dispr_store::Store` (the real RBC sample, and a synthetic one written here).

use dispr_proto::CellId;
use dispr_shape::dataset::{self, DatasetError, Label, class, index_from_listing, label_from_name};
use dispr_shape::synth;
use dispr_store::Store;
use std::path::PathBuf;

fn keys(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn label(class: &str, subclass: Option<&str>) -> Label {
    Label { class: class.into(), subclass: subclass.map(Into::into) }
}

#[test]
fn real_prefixes_map_to_classes() {
    let cases = [
        ("A_cell_clusters000604", class::CLUSTER, None),
        ("B_keratocytes000673", class::KERATOCYTE, None),
        ("C_knizocytes000704", class::KNIZOCYTE, None),
        ("D_multilobate_cells000727", class::MULTILOBATE, None),
        ("E_acanthocytes000001", class::ACANTHOCYTE, None),
        ("-0.33_stomatocyte_I000001", class::SDE, Some("stomatocyte_I")),
        ("-0.67_stomatocyte_II000012", class::SDE, Some("stomatocyte_II")),
        ("-1.00_spherocyte000100", class::SDE, Some("spherocyte")),
        ("0.00_discocyte000123", class::SDE, Some("discocyte")),
        ("0.33_echinocyte_I000200", class::SDE, Some("echinocyte_I")),
        ("0.67_echinocyte_II000300", class::SDE, Some("echinocyte_II")),
        ("1.00_echinocyte_III000400", class::SDE, Some("echinocyte_III")),
    ];
    for (name, class, sub) in cases {
        assert_eq!(label_from_name(name), Some(label(class, sub)), "{name}");
    }
    // Other datasets: the prefix before the digits is the class.
    assert_eq!(label_from_name("neutrophil_0042"), Some(label("neutrophil", None)));
    assert_eq!(label_from_name("000123"), None);
}

#[test]
fn index_pairs_images_masks_and_objs() {
    let listing = keys(&[
        "image/B_keratocytes000002.tif",
        "image/A_cell_clusters000001.tif",
        "image/README.txt",
        "image/sub/ignored.tif",
        "mask/A_cell_clusters000001.tif",
        "mask/B_keratocytes000002.tif",
        "obj/A_cell_clusters000001.tif",
        "notes.md",
    ]);
    let index = index_from_listing(&listing, None).unwrap();
    let ids: Vec<&str> = index.cells.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["A_cell_clusters000001", "B_keratocytes000002"]);
    assert!(index.cells[0].has_obj && !index.cells[1].has_obj);
    assert_eq!(index.cells[1].label, label(class::KERATOCYTE, None));
    assert_eq!(index.class_counts().get("cluster"), Some(&1));
    assert!(index.get(&CellId::new("B_keratocytes000002").unwrap()).is_some());
}

#[test]
fn unpaired_cells_are_named() {
    let listing = keys(&["image/a1.tif", "image/b2.tif", "mask/b2.tif", "mask/c3.tif", "obj/d4.tif"]);
    let err = index_from_listing(&listing, None).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, DatasetError::Unpaired { without_mask, without_image }
        if without_mask == &["a1"] && without_image == &["c3", "d4"]),
        "{msg}"
    );
    assert!(
        msg.contains("image but no mask/<cell>.tif: a1") && msg.contains("no image/<cell>.tif: c3, d4"),
        "{msg}"
    );
}

#[test]
fn bad_cell_ids_and_empty_datasets_are_refused() {
    let err = index_from_listing(&keys(&["image/cell 1.tif", "mask/cell 1.tif"]), None).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, DatasetError::BadId { .. })
            && msg.contains("image/cell 1.tif")
            && msg.contains("letters, digits"),
        "{msg}"
    );
    let err = index_from_listing(&keys(&["README.md"]), None).unwrap_err();
    assert!(matches!(err, DatasetError::Empty), "{err}");
    let err = index_from_listing(&keys(&["image/0001.tif", "mask/0001.tif"]), None).unwrap_err();
    assert!(err.to_string().contains("labels.csv"), "{err}");
}

#[test]
fn labels_csv_overrides_names() {
    let listing = keys(&[
        "image/0001.tif",
        "mask/0001.tif",
        "image/A_cell_clusters000002.tif",
        "mask/A_cell_clusters000002.tif",
    ]);
    let csv = b"cell,class,subclass\n0001,SDE,discocyte\nA_cell_clusters000002,odd one,\n";
    let index = index_from_listing(&listing, Some(csv)).unwrap();
    assert_eq!(index.cells[0].label, label("SDE", Some("discocyte")));
    assert_eq!(index.cells[1].label, label("odd one", None));
    // Two columns and no header work too.
    let index = index_from_listing(&listing, Some(b"0001,x\nA_cell_clusters000002,y\n")).unwrap();
    assert_eq!(index.cells[0].label, label("x", None));
    // Every image needs a row; every row needs an image; rows are well-formed.
    let err = index_from_listing(&listing, Some(b"0001,x\n")).unwrap_err().to_string();
    assert!(err.contains("A_cell_clusters000002 has no row"), "{err}");
    let err = index_from_listing(&listing, Some(b"0001,x\nA_cell_clusters000002,y\nghost,z\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ghost is listed but has no image/ghost.tif"), "{err}");
    let err = index_from_listing(&listing, Some(b"0001,x\n0001,y\n")).unwrap_err().to_string();
    assert!(err.contains("line 2") && err.contains("twice") && err.contains("first on line 1"), "{err}");
    let err = index_from_listing(&listing, Some(b"0001\n")).unwrap_err().to_string();
    assert!(err.contains("line 1") && err.contains("1 field(s)"), "{err}");
    let err = index_from_listing(&listing, Some(b"bad id!,x\n")).unwrap_err().to_string();
    assert!(err.contains("line 1") && err.contains("bad id!"), "{err}");
}

/// The labels files a new user's tools make of `labels.csv`, each refused with its line, what is
/// wrong and what to do, before any cell runs.
#[test]
fn broken_labels_files_are_refused_with_line_and_remedy() {
    let listing = keys(&["image/a1.tif", "mask/a1.tif", "image/b2.tif", "mask/b2.tif"]);
    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain("cell,class\na1,x\n".encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    let cases: Vec<(&str, Vec<u8>, u64, &str)> = vec![
        ("empty class", b"a1,x\nb2,\n".to_vec(), 2, "b2 has an empty class"),
        ("duplicate row", b"a1,x\nb2,y\na1,x\n".to_vec(), 3, "a1 is listed twice (first on line 1)"),
        ("four fields", b"a1,x,y,z\nb2,y\n".to_vec(), 1, "4 field(s)"),
        ("semicolons", b"cell;class\na1;x\nb2;y\n".to_vec(), 1, "separated by ';'"),
        ("tabs", b"a1\tx\nb2\ty\n".to_vec(), 1, "separated by tabs"),
        ("Latin-1", b"a1,x\nb2,h\xe9maties\n".to_vec(), 2, "byte 0xe9 is not UTF-8"),
        ("UTF-16", utf16, 1, "UTF-16"),
        ("a PNG", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".to_vec(), 1, "byte 0x89 is not UTF-8"),
        ("control bytes", b"a1,x\nb2,y\n\x01\x02\n".to_vec(), 3, "binary data"),
        ("bad id", b"a1,x\nb 2,y\n".to_vec(), 2, "cell id is not valid"),
    ];
    for (what, csv, line, says) in cases {
        let err = index_from_listing(&listing, Some(&csv)).expect_err(what);
        let msg = err.to_string();
        assert!(matches!(err, DatasetError::Labels { line: l, .. } if l == line), "{what}: {msg}");
        assert!(msg.contains(&format!("labels.csv line {line}: ")) && msg.contains(says), "{what}: {msg}");
        assert!(msg.contains("cell,class") && msg.contains("docs/datasets.md"), "{what}: {msg}");
    }
    // What a spreadsheet writes as "CSV UTF-8": a byte-order mark, CRLF line ends. Accepted.
    let index = index_from_listing(&listing, Some(b"\xef\xbb\xbfcell,class\r\na1,x\r\nb2,y\r\n")).unwrap();
    assert_eq!(index.cells[1].label, label("y", None));
    // A missing row and an unknown cell are refused, not ignored.
    let err = index_from_listing(&listing, Some(b"a1,x\n")).unwrap_err().to_string();
    assert!(err.contains("b2 has no row"), "{err}");
    let err = index_from_listing(&listing, Some(b"a1,x\nb2,y\nc3,z\n")).unwrap_err().to_string();
    assert!(err.contains("c3 is listed but has no image/c3.tif"), "{err}");
}

#[test]
fn misspelt_extensions_are_refused_and_other_files_listed() {
    // `.tiff` beside `.tif` used to be listed as a cell whose image/x.tif did not exist; `.TIF`
    // was skipped in silence.
    let listing = keys(&["image/a1.tif", "mask/a1.tif", "image/b2.tiff", "mask/b2.TIF", "obj/a1.Tif"]);
    let err = index_from_listing(&listing, None).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, DatasetError::WrongExtension { files } if files.len() == 3)
            && msg.contains("image/b2.tiff, mask/b2.TIF, obj/a1.Tif")
            && msg.contains("rename them"),
        "{msg}"
    );
    let index = index_from_listing(
        &keys(&["image/a1.tif", "mask/a1.tif", "image/notes.txt", "mask/old/a1.tif"]),
        None,
    )
    .unwrap();
    assert_eq!(index.cells.len(), 1);
    assert_eq!(index.ignored, ["image/notes.txt", "mask/old/a1.tif"]);
}

#[tokio::test]
async fn open_names_the_dataset_and_a_missing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dataset");
    let err = dataset::Dataset::open(Store::open(missing.to_str().unwrap()).unwrap()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err.problem(), DatasetError::Missing), "{msg}");
    assert!(msg.contains(&missing.display().to_string()) && msg.contains("does not exist"), "{msg}");

    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    let err = dataset::Dataset::open(Store::open(dir.path().join("empty").to_str().unwrap()).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err.problem(), DatasetError::Empty), "{err}");
    assert!(err.to_string().contains("docs/datasets.md"), "{err}");
    // The documentation the messages point to exists.
    assert!(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(dataset::LAYOUT_DOC).is_file());
}

#[test]
fn written_labels_read_back() {
    let a = CellId::new("c1").unwrap();
    let b = CellId::new("c2").unwrap();
    let (la, lb) = (label("SDE", Some("discocyte")), label("with, comma", None));
    let bytes = dataset::write_labels([(&a, &la), (&b, &lb)]);
    let parsed = dataset::parse_labels(&bytes).unwrap();
    assert_eq!(parsed.get(&a), Some(&la));
    assert_eq!(parsed.get(&b), Some(&lb));
}

fn real_sample() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/rbc-real-sample");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("real RBC sample not found at {}: skipping the real-data loader test", dir.display());
        None
    }
}

#[tokio::test]
async fn loads_the_real_sample() {
    let Some(dir) = real_sample() else { return };
    let store = Store::open(dir.to_str().unwrap()).unwrap();
    let ds = dataset::Dataset::open(store).await.unwrap();
    assert_eq!(ds.index.cells.len(), 25);
    let counts = ds.index.class_counts();
    assert_eq!(counts.get(class::CLUSTER), Some(&8));
    assert_eq!(counts.get(class::KERATOCYTE), Some(&8));
    assert_eq!(counts.get(class::KNIZOCYTE), Some(&6));
    assert_eq!(counts.get(class::MULTILOBATE), Some(&3));
    assert!(ds.index.cells.iter().all(|c| c.has_obj));
    let cell = ds.load_cell(&CellId::new("D_multilobate_cells000727").unwrap()).await.unwrap();
    assert_eq!(cell.label, label(class::MULTILOBATE, None));
    assert_eq!((cell.image.dims, cell.mask.dims), ([64, 64], [64, 64]));
    let obj = cell.obj.unwrap();
    assert_eq!(obj.dims, [64, 64, 64]);
    let fraction = obj.data.iter().filter(|&&v| v > 127).count() as f64 / obj.data.len() as f64;
    assert!((0.05..0.35).contains(&fraction), "solid fraction {fraction}");
    let err = ds.load_cell(&CellId::new("nope").unwrap()).await.unwrap_err();
    assert!(matches!(err, DatasetError::UnknownCell { .. }));
}

#[tokio::test]
async fn synthetic_cells_round_trip_through_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let specs = synth::plan(3);
    let mut cells = Vec::new();
    for spec in &specs {
        let cell = synth::generate(1, spec);
        for (key, bytes) in dataset::encode_cell(&cell).unwrap() {
            store.put(&key, bytes.into()).await.unwrap();
        }
        cells.push(cell);
    }
    let labels = dataset::write_labels(cells.iter().map(|c| (&c.id, &c.label)));
    store.put(dispr_proto::keys::DATASET_LABELS, labels.into()).await.unwrap();
    let ds = dataset::Dataset::open(store.clone()).await.unwrap();
    assert_eq!(ds.index.cells.len(), 3);
    for cell in &cells {
        assert_eq!(&ds.load_cell(&cell.id).await.unwrap(), cell);
    }
    // A broken file fails that cell with the file named.
    store
        .put(&dispr_proto::keys::dataset_mask(&cells[0].id), bytes::Bytes::from_static(b"junk"))
        .await
        .unwrap();
    let msg = ds.load_cell(&cells[0].id).await.unwrap_err().to_string();
    assert!(msg.contains(&format!("mask/{}.tif", cells[0].id)) && msg.contains("not a TIFF"), "{msg}");
}
