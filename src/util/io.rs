//! Atomic file output: every file is written under a temporary name in the
//! same folder and renamed into place, so a crash never leaves half a file.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::util::error::{Error, Result};

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = temp_path(path)?;
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// The temporary name `path` is written under before it is renamed into
/// place: a hidden file in the same folder (so the rename is atomic),
/// `.<name>.tmp<pid>`. It ends in no known extension, so what a killed
/// writer leaves behind is never taken for a checkpoint or a table.
pub fn temp_path(path: &Path) -> Result<std::path::PathBuf> {
    let (dir, name) = split(path)?;
    Ok(dir.join(format!(".{name}.tmp{}", std::process::id())))
}

/// [`temp_path`] with the extension kept last (`.<name>.tmp<pid>.<ext>`),
/// for writers that choose the format by it (image encoders).
#[cfg(feature = "report")]
pub fn temp_path_with_extension(path: &Path) -> Result<std::path::PathBuf> {
    let (dir, name) = split(path)?;
    Ok(match path.extension() {
        Some(ext) => dir.join(format!(".{name}.tmp{}.{}", std::process::id(), ext.to_string_lossy())),
        None => temp_path(path)?,
    })
}

/// The folder of `path` (`.` when it has none) and its file name.
fn split(path: &Path) -> Result<(&Path, String)> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| Error::Input { file: path.into(), message: "not a file name".into() })?;
    Ok((dir, name.to_string_lossy().into_owned()))
}

/// Renames `tmp` (written in full) to `path`, removing `tmp` on failure.
#[cfg(feature = "report")]
pub fn commit_temp(tmp: &Path, path: &Path) -> Result<()> {
    fs::rename(tmp, path).map_err(|e| {
        let _ = fs::remove_file(tmp);
        Error::io(path, e)
    })
}

/// [`write_atomic`] for text.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, text.as_bytes())
}

/// [`write_atomic`] for pretty-printed JSON with a trailing newline.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).expect("serialising plain data cannot fail");
    text.push('\n');
    write_text(path, &text)
}

/// Reads a JSON record, naming the file in every error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Input { file: path.into(), message: format!("cannot read: {e}") })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Input { file: path.into(), message: format!("not the expected JSON: {e}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer killed mid-write (SIGKILL) leaves its temporary file behind;
    /// it was named `.model.safetensors.tmpPID.safetensors`, which looked like
    /// a checkpoint (a flaky failure of the kill-and-resume test). Temporary
    /// names end in `.tmpPID`; only image files keep their extension last.
    #[test]
    fn temporary_names_never_end_in_the_extension_of_what_they_replace() {
        let tmp = temp_path(Path::new("run/model.safetensors")).unwrap();
        let name = tmp.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(tmp.parent(), Some(Path::new("run")));
        assert!(name.starts_with(".model.safetensors.tmp") && !name.ends_with(".safetensors"), "{name}");
        #[cfg(feature = "report")]
        {
            let png = temp_path_with_extension(Path::new("figures/map.png")).unwrap();
            assert!(png.to_string_lossy().ends_with(".png"), "{}", png.display());
        }
    }
}
