//! Reading manifests from files, directories and stdin.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Snapshot, SnapshotBuilder, SnapshotOptions};
use crate::error::{Error, Result, Source};

/// Builds a snapshot from paths: files, directories (recursively, `*.yaml`, `*.yml`, `*.json`, in
/// sorted order so output is deterministic) and `-` for stdin.
pub fn snapshot_from_paths(paths: &[PathBuf], options: SnapshotOptions) -> Result<Snapshot> {
    let mut builder = SnapshotBuilder::new(options);
    for file in expand_paths(paths)? {
        let (name, text) = read_input(&file)?;
        for (source, value) in parse_documents(&name, &text)? {
            builder.add(source, value)?;
        }
    }
    builder.build()
}

/// Expands directories into the manifest files below them.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            files.push(path.clone());
            continue;
        }
        let meta = std::fs::metadata(path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(path, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io)?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

fn read_input(path: &Path) -> Result<(String, String)> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(io)?;
        return Ok(("-".to_string(), text));
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    Ok((path.display().to_string(), text))
}

/// Splits a file into its YAML documents and parses each (JSON is YAML too). Each document is
/// parsed on its own, so an error names the document and the line in the file.
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<(Source, Value)>> {
    let mut out = Vec::new();
    for (document, (first_line, chunk)) in split_documents(text).into_iter().enumerate() {
        let source = Source::new(file, document);
        if is_blank(&chunk) {
            continue;
        }
        let value: Value = serde_saphyr::from_str(&chunk).map_err(|e| Error::Syntax {
            at: source.clone(),
            message: format!(
                "{} (the document starts at line {} of the file)",
                e.to_string().lines().next().unwrap_or_default(),
                first_line
            ),
        })?;
        if !value.is_null() {
            out.push((source, value));
        }
    }
    Ok(out)
}

/// Splits on `---` document markers; returns each document with its first line (1-based).
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        let is_marker =
            line == "---" || line.starts_with("--- ") || line.starts_with("---\t") || line == "...";
        if is_marker {
            if i > 0 || !current.is_empty() {
                docs.push((start, std::mem::take(&mut current)));
            }
            start = i + 2;
            if let Some(rest) = line.strip_prefix("--- ") {
                current.push_str(rest);
                current.push('\n');
            }
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push((start, current));
    docs
}

fn is_blank(chunk: &str) -> bool {
    chunk
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_skips_empty_ones() {
        let text = "---\na: 1\n---\n# only a comment\n---\nb: 2\n";
        let docs = parse_documents("f.yaml", text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].0.document, 0);
        assert_eq!(docs[1].0.document, 2);
        assert_eq!(docs[1].1["b"], 2);
    }

    #[test]
    fn syntax_errors_name_file_document_and_line() {
        let text = "a: 1\n---\nb: [1, 2\n";
        let err = parse_documents("bad.yaml", text).unwrap_err().to_string();
        assert!(err.contains("bad.yaml (document 1)"), "{err}");
        assert!(err.contains("starts at line 3"), "{err}");
    }

    #[test]
    fn json_is_read_too() {
        let docs =
            parse_documents("x.json", r#"{"apiVersion":"v1","kind":"List","items":[]}"#).unwrap();
        assert_eq!(docs[0].1["kind"], "List");
    }
}
