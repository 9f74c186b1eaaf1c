//! How a run stores its sampled volumes: chosen per run (`--volumes`), recorded in the manifest
//! and carried by every job, so that every worker of a run writes the same kind of file.

use serde::{Deserialize, Serialize};

/// The pixel type of `volumes/<cell>/<k>.tif` and `std.tif`. Every format is a deflate-compressed
/// ImageJ stack; `probability.tif` is uint8 in all of them (with K samples it takes only K + 1
/// values, which 0..255 holds exactly for K <= 255).
///
/// The 3D features are computed from the sampler's own float output whatever the format, so a
/// run's features records do not depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeFormat {
    /// The sampler's float32 output in [0, 1], as sampled. Runs and jobs of releases before the
    /// format existed wrote this (uncompressed), so a record without the field means it.
    #[default]
    Float32,
    /// The sample quantised to 0..255 (`round(255 x)`): within 0.5/255 of the float value.
    Uint8,
    /// The binarised sample (the Otsu rule the 3D features use) as 0 and 255.
    Mask,
}

impl VolumeFormat {
    pub const ALL: [VolumeFormat; 3] = [VolumeFormat::Float32, VolumeFormat::Uint8, VolumeFormat::Mask];

    pub fn name(self) -> &'static str {
        match self {
            VolumeFormat::Float32 => "float32",
            VolumeFormat::Uint8 => "uint8",
            VolumeFormat::Mask => "mask",
        }
    }
}

impl std::fmt::Display for VolumeFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for VolumeFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|f| f.name() == s).ok_or_else(|| {
            format!(
                "unknown volume format {s:?}; use float32 (the sampler's values), uint8 (quantised to \
                 0..255, a quarter of the size) or mask (the binarised shape, smallest)"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_json() {
        for f in VolumeFormat::ALL {
            assert_eq!(f.name().parse::<VolumeFormat>().unwrap(), f);
            assert_eq!(serde_json::to_string(&f).unwrap(), format!("\"{f}\""));
        }
        assert!("int16".parse::<VolumeFormat>().unwrap_err().contains("uint8"));
    }
}
