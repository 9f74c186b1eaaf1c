//! `docs/features.md`, generated from the feature tables of [`crate::features`] and the
//! reconstruction metrics' table: a module of its own so that neither of those modules needs the
//! other to write it.

use crate::features::{FEATURES_2D, FEATURES_3D};

/// The generated `docs/features.md`: one table per feature set (and the reconstruction
/// metrics), from the descriptors.
pub fn features_markdown() -> String {
    let mut s = String::from(
        "# Shape features\n\n\
         Generated from `shape/src/features/mod.rs` (`FEATURES_2D`, `FEATURES_3D`); do not edit by hand.\n\
         Regenerate with `DISPR_UPDATE_DOCS=1 cargo test -p dispr-shape features_doc`.\n\n\
         Values are always finite. A mask or volume without foreground is reported as an empty shape\n\
         (an error, never numbers); the special cases of other degenerate shapes are in the definitions.\n\
         Where a definition names a scikit-image property, the value agrees with it within 1% on the\n\
         golden fixtures (`shape/tests/golden/`).\n\n\
         Per cell, each 3D feature of the K samples is also reported as its mean and (population)\n\
         standard deviation over the samples.\n",
    );
    for (title, table) in [
        ("2D features of the input mask and image", FEATURES_2D),
        ("3D features of a binarised volume", FEATURES_3D),
        (
            "Reconstruction metrics of a predicted volume P against the ground truth G",
            crate::reconstruction::METRICS,
        ),
    ] {
        s.push_str(&format!(
            "\n## {title} ({})\n\n| name | unit | definition |\n| --- | --- | --- |\n",
            table.len()
        ));
        for d in table {
            s.push_str(&format!("| `{}` | {} | {} |\n", d.name, d.unit, d.definition.replace('|', "\\|")));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/features.md is generated from the tables; this fails when someone changed one
    /// without regenerating it (DISPR_UPDATE_DOCS=1 rewrites it).
    #[test]
    fn features_doc_is_up_to_date() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/features.md");
        let want = features_markdown();
        if std::env::var_os("DISPR_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/features.md is out of date: run `DISPR_UPDATE_DOCS=1 cargo test -p dispr-shape features_doc`"
        );
    }
}
