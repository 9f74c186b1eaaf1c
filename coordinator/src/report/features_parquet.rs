//! `report/features.parquet`: [`FeatureTable`] as one typed, columnar table, for pandas, polars,
//! DuckDB and Spark (features.csv has the same rows; a CSV of a million cells is slow to parse and
//! loses the types). Columns: `cell`, `class`, `subclass` (strings, the last two nullable),
//! `samples` (uint32), then every feature as a nullable float64 in features.csv's order. The run
//! (id, model digest, sampler, volume format, code version) is in the file's key-value metadata.

use super::FeatureTable;
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::sync::Arc;

/// Rows per row group (and per Arrow batch in memory): small enough that encoding a batch costs
/// a few MB beside the table, large enough for readers to scan quickly.
const ROWS_PER_GROUP: usize = 64 * 1024;

/// `table` as parquet into `out`, a row group at a time, with `metadata` (key, value) in the
/// file's key-value metadata.
pub fn to_parquet<W: std::io::Write + Send>(
    table: &FeatureTable,
    metadata: &[(&str, String)],
    out: W,
) -> anyhow::Result<W> {
    let mut fields = vec![
        Field::new("cell", DataType::Utf8, false),
        Field::new("class", DataType::Utf8, true),
        Field::new("subclass", DataType::Utf8, true),
        Field::new("samples", DataType::UInt32, false),
    ];
    fields.extend(table.columns.iter().map(|c| Field::new(c, DataType::Float64, true)));
    // In the Arrow schema too: pyarrow and polars show a table's metadata from there.
    let schema = Arc::new(Schema::new(fields).with_metadata(
        metadata.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<std::collections::HashMap<_, _>>(),
    ));
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
        .set_key_value_metadata(Some(
            metadata.iter().map(|(k, v)| KeyValue::new(k.to_string(), v.clone())).collect(),
        ))
        .build();
    let mut writer = ArrowWriter::try_new(out, schema.clone(), Some(properties))?;
    let rows = table.cells.len();
    for start in (0..rows).step_by(ROWS_PER_GROUP) {
        let range = start..(start + ROWS_PER_GROUP).min(rows);
        let strings = |v: &super::table::Labels| -> ArrayRef {
            Arc::new(StringArray::from_iter(range.clone().map(|i| v.get(i))))
        };
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(range.clone().map(|i| &table.cells[i]))),
            strings(&table.class),
            strings(&table.subclass),
            Arc::new(UInt32Array::from_iter_values(table.samples[range.clone()].iter().copied())),
        ];
        for c in 0..table.columns.len() {
            columns.push(Arc::new(Float64Array::from_iter(range.clone().map(|i| table.value(i, c)))));
        }
        writer.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
    }
    Ok(writer.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    #[test]
    fn rows_columns_types_and_metadata_survive() {
        let table = FeatureTable::new(
            vec!["a1".into(), "b2".into(), "c3".into()],
            vec![Some("round".into()), None, Some("flat".into())],
            vec![None, None, Some("disc".into())],
            vec![3, 0, 3],
            vec!["2d_area".into(), "3d_mean_volume".into()],
            vec![vec![Some(1.5), Some(10.0)], vec![Some(2.5), None], vec![Some(3.5), Some(30.0)]],
        );
        let bytes = to_parquet(&table, &[("dispr.run_id", "r1".into())], Vec::new()).unwrap();
        let reader = SerializedFileReader::new(Bytes::from(bytes)).unwrap();
        let meta = reader.metadata().file_metadata();
        assert_eq!(meta.num_rows(), 3);
        let kv = meta.key_value_metadata().unwrap();
        assert!(kv.iter().any(|k| k.key == "dispr.run_id" && k.value.as_deref() == Some("r1")), "{kv:?}");
        let names: Vec<&str> = meta.schema_descr().columns().iter().map(|c| c.name()).collect();
        assert_eq!(names, ["cell", "class", "subclass", "samples", "2d_area", "3d_mean_volume"]);
    }
}
