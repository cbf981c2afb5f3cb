//! JSON records that read back what they wrote. JSON has no NaN or infinity:
//! serde_json writes a non-finite float as `null`, so every float of a
//! record is read with [`nan_if_null`], which takes `null` back as NaN.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// A float, or NaN where the file has `null` (a non-finite value was written).
pub fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A 2×2 matrix of [`nan_if_null`] floats.
pub fn mat2_nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<[[f64; 2]; 2], D::Error> {
    let m = <[[Option<f64>; 2]; 2]>::deserialize(d)?;
    Ok(m.map(|row| row.map(|v| v.unwrap_or(f64::NAN))))
}

/// A pair of [`nan_if_null`] floats.
pub fn vec2_nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<[f64; 2], D::Error> {
    Ok(<[Option<f64>; 2]>::deserialize(d)?.map(|v| v.unwrap_or(f64::NAN)))
}

/// A list of [`nan_if_null`] floats.
pub fn vec_nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    Ok(Vec::<Option<f64>>::deserialize(d)?.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// A map of names to [`nan_if_null`] floats.
pub fn map_nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
    let map = BTreeMap::<String, Option<f64>>::deserialize(d)?;
    Ok(map.into_iter().map(|(k, v)| (k, v.unwrap_or(f64::NAN))).collect())
}

/// NaN, the default of a float key that older files lack.
pub fn nan() -> f64 {
    f64::NAN
}

/// A NaN matrix, the default of a matrix key that older files lack.
pub fn nan_mat2() -> [[f64; 2]; 2] {
    [[f64::NAN; 2]; 2]
}
