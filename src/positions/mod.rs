//! Where in the user's files a finding is: `path:line:col` of the object and of the field its
//! fix changes, as compilers print them.
//!
//! The snapshot keeps, for each object, its [`Source`] (file, document index, list item). This
//! module reads the file again, splits it into documents exactly as `snapshot::load` does (a
//! line `---`, `--- …` or `...` starts a new document), and finds the object and the field in a
//! lossless syntax tree of that document (the `yaml-edit` crate, also used by `meshmedic fix`),
//! or, for plain block YAML, by indentation alone ([`block`]: the same positions, far faster).
//! Pure functions of the file text; only [`Locator`] reads files.

pub mod block;
pub mod edit;

use std::collections::HashMap;
use std::str::FromStr;

use serde::Serialize;
use yaml_edit::{AsYaml, YamlFile, YamlNode};

use crate::analysis::Finding;
use crate::error::Source;
use crate::model::ObjectRef;
use crate::remediation::Action;
pub use crate::remediation::pointer_tokens;
use crate::snapshot::Snapshot;

/// A finding's place in the files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    /// The object the position is of (the fix's target, or for a new object the workload or
    /// Service the finding is about).
    pub object: String,
    pub file: String,
    /// Zero-based document index in the file (as in error messages).
    pub document: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    /// 1-based line and column (columns count characters).
    pub line: usize,
    pub column: usize,
    /// `file:line:col`.
    pub at: String,
    /// The field the fix changes, when the fix is a patch of this object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<FieldLocation>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldLocation {
    /// JSON pointer of the changed field, relative to the object.
    pub path: String,
    /// `false` when the fix adds the field: the position is then that of its nearest parent
    /// that exists.
    pub exists: bool,
    pub line: usize,
    pub column: usize,
    pub at: String,
}

/// 1-based line and column.
pub type LineCol = (usize, usize);

/// A document as `snapshot::load` splits a file: a byte range of the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub start: usize,
    pub end: usize,
}

/// The documents of a file, in the order (and with the indexes) `snapshot::load` gives them.
pub fn document_chunks(text: &str) -> Vec<Chunk> {
    let bytes = text.as_bytes();
    let mut chunks = Vec::new();
    let mut start = 0;
    for offset in crate::snapshot::load::marker_line_candidates(text) {
        let end_of_line =
            memchr::memchr(b'\n', &bytes[offset..]).map_or(text.len(), |i| offset + i + 1);
        let line = text[offset..end_of_line].trim_end_matches(['\n', '\r']);
        if !crate::snapshot::load::is_marker(line) {
            continue;
        }
        if offset > 0 {
            chunks.push(Chunk { start, end: offset });
        }
        start = if line.starts_with("--- ") {
            offset + 4
        } else {
            end_of_line
        };
    }
    chunks.push(Chunk {
        start: start.min(text.len()),
        end: text.len(),
    });
    chunks
}

/// A file's text with its documents, and the line each document starts on, computed once:
/// locating every finding of a large file would otherwise rescan it per finding (quadratic:
/// 100 s at 10,000 services). A line is counted from the start of its document, not looked up
/// in a table of every line start (8 bytes a line, more than the text's own size at 10k).
pub struct FileIndex {
    pub text: std::sync::Arc<String>,
    pub chunks: Vec<Chunk>,
    /// (offset, 0-based line) of the file's start and of each document's start.
    anchors: Vec<(usize, usize)>,
}

impl FileIndex {
    pub fn new(text: impl Into<std::sync::Arc<String>>) -> FileIndex {
        let text = text.into();
        let chunks = document_chunks(&text);
        let mut anchors = Vec::with_capacity(chunks.len() + 1);
        anchors.push((0, 0));
        let (mut at, mut line) = (0, 0);
        for chunk in &chunks {
            line += memchr::memchr_iter(b'\n', &text.as_bytes()[at..chunk.start]).count();
            at = chunk.start;
            anchors.push((at, line));
        }
        FileIndex {
            text,
            chunks,
            anchors,
        }
    }

    /// 1-based line and column of a byte offset (the column counts characters).
    pub fn line_col(&self, offset: usize) -> LineCol {
        let offset = offset.min(self.text.len());
        let bytes = self.text.as_bytes();
        let (at, line) = self.anchors[self.anchors.partition_point(|&(a, _)| a <= offset) - 1];
        let line = line + memchr::memchr_iter(b'\n', &bytes[at..offset]).count();
        let start = memchr::memrchr(b'\n', &bytes[..offset]).map_or(0, |i| i + 1);
        // A byte order mark opening the file is no column in an editor.
        let start = if start == 0 && self.text.starts_with('\u{feff}') {
            '\u{feff}'.len_utf8().min(offset)
        } else {
            start
        };
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, column + 1)
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, text[line_start..offset].chars().count() + 1)
}

/// A parsed document: the lossless tree of one chunk.
pub struct ParsedChunk {
    pub file: YamlFile,
}

impl ParsedChunk {
    pub fn parse(chunk_text: &str) -> Option<ParsedChunk> {
        let file = YamlFile::from_str(chunk_text).ok()?;
        // Only a tree that gives back the text exactly may be used for positions or edits.
        if file.to_string() != chunk_text {
            return None;
        }
        Some(ParsedChunk { file })
    }

    /// The object node: the document's root, or item `item` of its `items` list.
    pub fn object(&self, item: Option<usize>) -> Option<YamlNode> {
        let document = self.file.document()?;
        let mapping = document.as_mapping()?;
        let root = YamlNode::from_syntax(AsYaml::as_node(&mapping)?.clone())?;
        match item {
            None => Some(root),
            Some(i) => root.get("items")?.get_item(i),
        }
    }
}

/// The deepest node on `path` below `object`: its byte offset (of the key, for a mapping
/// entry) and how many tokens of the path exist.
pub fn find_path(object: &YamlNode, path: &[String]) -> (usize, usize) {
    let mut node = object.clone();
    let mut offset = node.byte_range().start as usize;
    for (depth, token) in path.iter().enumerate() {
        if let Some(mapping) = node.as_mapping() {
            let Some(entry) = mapping.find_entry_by_key(token.as_str()) else {
                return (offset, depth);
            };
            let Some(key) = entry.key_node() else {
                return (offset, depth);
            };
            let Some(next) = mapping.get(token.as_str()) else {
                return (offset, depth);
            };
            offset = key.byte_range().start as usize;
            node = next;
        } else if let Some(sequence) = node.as_sequence() {
            let Some(next) = token.parse::<usize>().ok().and_then(|i| sequence.get(i)) else {
                return (offset, depth);
            };
            offset = next.byte_range().start as usize;
            node = next;
        } else {
            return (offset, depth);
        }
    }
    (offset, path.len())
}

/// Where in the file text the object of a [`Source`] is, and (for `field`, a JSON pointer) the
/// field. `None` when the document cannot be found or parsed losslessly.
pub fn locate_in_text(
    text: &str,
    source: &Source,
    field: Option<&str>,
) -> Option<(LineCol, Option<(bool, LineCol)>)> {
    locate_in_file(&FileIndex::new(text.to_string()), source, field)
}

/// [`locate_in_text`] on a file indexed once.
pub fn locate_in_file(
    file: &FileIndex,
    source: &Source,
    field: Option<&str>,
) -> Option<(LineCol, Option<(bool, LineCol)>)> {
    // A position is worth less than the analysis: should the editor crate fail on some input,
    // the finding just has no position.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        locate_unguarded(file, source, field)
    }))
    .ok()
    .flatten()
}

fn locate_unguarded(
    file: &FileIndex,
    source: &Source,
    field: Option<&str>,
) -> Option<(LineCol, Option<(bool, LineCol)>)> {
    let chunk = *file.chunks.get(source.document)?;
    let chunk_text = &file.text[chunk.start..chunk.end];
    let tokens = field.map(pointer_tokens);
    // Plain block YAML (nearly every manifest) by indentation; anything else by the tree.
    if let Some((object, found)) = block::locate(chunk_text, source.item, tokens.as_deref()) {
        let at = file.line_col(chunk.start + object);
        let field = found.zip(tokens.as_ref()).map(|((offset, depth), tokens)| {
            (depth == tokens.len(), file.line_col(chunk.start + offset))
        });
        return Some((at, field));
    }
    let parsed = ParsedChunk::parse(chunk_text)?;
    let object = parsed.object(source.item)?;
    let at = file.line_col(chunk.start + object.byte_range().start as usize);
    let field = field.map(|pointer| {
        let tokens = pointer_tokens(pointer);
        let (offset, depth) = find_path(&object, &tokens);
        (depth == tokens.len(), file.line_col(chunk.start + offset))
    });
    Some((at, field))
}

/// Where each object of a snapshot came from.
pub fn source_of<'a>(snapshot: &'a Snapshot, target: &ObjectRef) -> Option<&'a Source> {
    snapshot.object(target).map(|o| o.source)
}

/// The object a finding points at, whether it is the one its fix patches, and where it was
/// read: one lookup of the object (this ran four times per finding).
/// The object a finding is placed at: the target it patches, else its workload or service.
pub fn subject_object(snapshot: &Snapshot, finding: &Finding) -> Option<ObjectRef> {
    subject_object_of(snapshot, finding).map(|(object, _, _)| object.into_owned())
}

fn subject_object_of<'a>(
    snapshot: &'a Snapshot,
    finding: &'a Finding,
) -> Option<(std::borrow::Cow<'a, ObjectRef>, bool, &'a Source)> {
    let r = &finding.remediation;
    if r.action == Action::Patch
        && let Some(source) = source_of(snapshot, &r.target)
    {
        return Some((std::borrow::Cow::Borrowed(&r.target), true, source));
    }
    let ns = &finding.namespace;
    let workload =
        (finding.workload.as_ref()).and_then(|w| snapshot.workload(&w.kind, ns, &w.name));
    let object = match workload {
        Some(x) => x.object_ref(),
        None => {
            let service = finding.service.as_ref()?;
            let i = snapshot.service_index(ns, service)?;
            snapshot.services[i].object_ref()
        }
    };
    let source = source_of(snapshot, &object)?;
    Some((std::borrow::Cow::Owned(object), false, source))
}

/// Reads each file once and locates findings in it.
#[derive(Default)]
pub struct Locator {
    files: HashMap<String, Option<FileIndex>>,
}

impl Locator {
    /// A locator that already holds these files (name as in [`Source::file`], text): the
    /// texts `analyze` read, so positions come from the very text analysed, and a large file
    /// is not read and allocated a second time (5% of a 10k-service run).
    pub fn with_texts(
        texts: impl IntoIterator<Item = (String, std::sync::Arc<String>)>,
    ) -> Locator {
        Locator {
            files: texts
                .into_iter()
                .map(|(name, text)| (name, Some(FileIndex::new(text))))
                .collect(),
        }
    }

    /// The text of a file named in a [`Source`]; `None` for stdin, the cluster, or an
    /// unreadable file.
    pub fn text(&mut self, file: &str) -> Option<&str> {
        self.file(file).map(|f| f.text.as_str())
    }

    /// The file, read and indexed on first use.
    pub fn file(&mut self, file: &str) -> Option<&FileIndex> {
        // Asked once per finding: no new key when the file is already held.
        if self.files.contains_key(file) {
            return self.files.get(file).and_then(Option::as_ref);
        }
        self.files
            .entry(file.to_string())
            .or_insert_with(|| {
                if file == "-" || file == "cluster" {
                    return None;
                }
                std::fs::read_to_string(file).ok().map(FileIndex::new)
            })
            .as_ref()
    }

    /// The location of a finding, when its object was read from a file.
    pub fn locate(&mut self, snapshot: &Snapshot, finding: &Finding) -> Option<Location> {
        self.load(snapshot, finding);
        self.locate_loaded(snapshot, finding)
    }

    /// Reads (once) the file a finding's object came from.
    fn load(&mut self, snapshot: &Snapshot, finding: &Finding) {
        if let Some((_, _, source)) = subject_object_of(snapshot, finding) {
            self.file(&source.file);
        }
    }

    /// [`Locator::locate`] once [`Locator::load`] has read the file: shared by threads.
    fn locate_loaded(&self, snapshot: &Snapshot, finding: &Finding) -> Option<Location> {
        let (object, patched, source) = subject_object_of(snapshot, finding)?;
        let field = if patched {
            finding.remediation.changed_field()
        } else {
            None
        };
        let file = self.files.get(&*source.file)?.as_ref()?;
        let ((line, column), field_at) = match locate_in_file(file, source, field) {
            Some(found) => found,
            // The document is there but its tree could not be had: its first line.
            None => {
                let chunk = *file.chunks.get(source.document)?;
                (file.line_col(chunk.start), None)
            }
        };
        let at = |line: usize, column: usize| format!("{}:{line}:{column}", source.file);
        Some(Location {
            object: object.to_string(),
            file: source.file.to_string(),
            document: source.document,
            item: source.item,
            line,
            column,
            at: at(line, column),
            field: field
                .zip(field_at)
                .map(|(path, (exists, (l, c)))| FieldLocation {
                    path: path.to_string(),
                    exists,
                    line: l,
                    column: c,
                    at: at(l, c),
                }),
        })
    }
}

/// The locations of findings, in their order; files not yet in `locator` are read.
pub fn locate(
    locator: &mut Locator,
    snapshot: &Snapshot,
    findings: &[Finding],
) -> Vec<Option<Location>> {
    for f in findings {
        locator.load(snapshot, f);
    }
    // Each finding re-parses its document (a small lossless tree): independent, so spread
    // over the cores, in order.
    let threads = crate::snapshot::load::worker_threads();
    if threads < 2 || findings.len() < 64 {
        return findings
            .iter()
            .map(|f| locator.locate_loaded(snapshot, f))
            .collect();
    }
    let locator = &*locator;
    let parts: Vec<&[Finding]> = findings.chunks(findings.len().div_ceil(threads)).collect();
    crate::snapshot::load::on_threads(parts, |part| {
        part.iter()
            .map(|f| locator.locate_loaded(snapshot, f))
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// Documents as the first version split them: every line, one by one.
    fn document_chunks_line_by_line(text: &str) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        let (mut start, mut offset, mut index) = (0, 0, 0);
        while offset < text.len() {
            let end_of_line = text[offset..]
                .find('\n')
                .map_or(text.len(), |i| offset + i + 1);
            let line = text[offset..end_of_line].trim_end_matches(['\n', '\r']);
            if line == "---"
                || line.starts_with("--- ")
                || line.starts_with("---\t")
                || line == "..."
            {
                if index > 0 {
                    chunks.push(Chunk { start, end: offset });
                }
                start = if line.starts_with("--- ") {
                    offset + 4
                } else {
                    end_of_line
                };
            }
            offset = end_of_line;
            index += 1;
        }
        chunks.push(Chunk {
            start: start.min(text.len()),
            end: text.len(),
        });
        chunks
    }

    proptest::proptest! {
        /// Markers found by searching for them split a file as walking every line did.
        #[test]
        fn chunks_found_by_search_are_the_line_by_line_ones(
            text in crate::snapshot::load::tests::marker_prone_text(),
        ) {
            proptest::prop_assert_eq!(document_chunks(&text), document_chunks_line_by_line(&text));
        }
    }

    #[test]
    fn chunks_match_the_loader_document_indexes() {
        let text = "# head\n---\na: 1\n---\n# only a comment\n--- {b: 2}\n...\nc: 3\n";
        let chunks = document_chunks(text);
        let parts: Vec<&str> = chunks.iter().map(|c| &text[c.start..c.end]).collect();
        assert_eq!(
            parts,
            vec![
                "# head\n",
                "a: 1\n",
                "# only a comment\n",
                "{b: 2}\n",
                "c: 3\n"
            ]
        );
        let docs = crate::snapshot::load::parse_documents("f.yaml", text).unwrap();
        let indexes: Vec<usize> = docs.iter().map(|(s, _)| s.document).collect();
        assert_eq!(indexes, vec![1, 3, 4]);
    }

    #[test]
    fn the_line_index_agrees_with_a_scan() {
        let text = "a: 1\nb: \"é\"\n\nc:\n  - x\n";
        let index = FileIndex::new(text.to_string());
        for offset in 0..=text.len() {
            if text.is_char_boundary(offset) {
                assert_eq!(index.line_col(offset), line_col(text, offset), "{offset}");
            }
        }
    }

    #[test]
    fn leading_marker_is_not_an_empty_document() {
        let chunks = document_chunks("---\na: 1\n");
        assert_eq!(chunks.len(), 1);
    }

    #[test]
    fn positions_of_object_and_field_in_the_second_document() {
        let text = "a: 1\n---\n# comment\nkind: X\nspec:\n  list:\n  - name: x\n    port: 80 # c\n";
        let source = Source::new("f.yaml", 1);
        let (at, field) = locate_in_text(text, &source, Some("/spec/list/0/port")).unwrap();
        assert_eq!(at, (4, 1));
        assert_eq!(field, Some((true, (8, 5))));
        let (_, missing) = locate_in_text(text, &source, Some("/spec/list/0/x/y")).unwrap();
        assert_eq!(missing, Some((false, (7, 5))), "nearest parent that exists");
    }

    /// Every JSON pointer of `value` (and a missing child of each mapping), for comparing.
    fn pointers(value: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(at.clone());
        match value {
            Value::Object(map) => {
                at.push("no-such-field".into());
                out.push(at.clone());
                at.pop();
                for (k, v) in map {
                    at.push(k.clone());
                    pointers(v, at, out);
                    at.pop();
                }
            }
            Value::Array(items) => {
                at.push(items.len().to_string());
                out.push(at.clone());
                at.pop();
                for (i, v) in items.iter().enumerate() {
                    at.push(i.to_string());
                    pointers(v, at, out);
                    at.pop();
                }
            }
            _ => {}
        }
    }

    /// The block-YAML locator against the tree on every field of every document below `dirs`:
    /// where it answers, it answers exactly as the tree. Returns (documents, answered).
    fn block_agrees_with_the_tree(dirs: &[std::path::PathBuf]) -> (usize, usize) {
        let files = crate::snapshot::load::expand_paths(dirs).expect("paths");
        let (mut documents, mut answered) = (0, 0);
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            for chunk in document_chunks(&text) {
                let chunk_text = &text[chunk.start..chunk.end];
                let Ok(value) = crate::snapshot::yaml::from_str(chunk_text) else {
                    continue;
                };
                let Some(parsed) = ParsedChunk::parse(chunk_text) else {
                    continue;
                };
                let items = match value.get("items").and_then(Value::as_array) {
                    Some(items) if value.get("kind").is_some() => {
                        (0..items.len()).map(Some).collect::<Vec<_>>()
                    }
                    _ => vec![None],
                };
                for item in items {
                    let Some(object) = parsed.object(item) else {
                        continue;
                    };
                    let object_value = match item {
                        Some(i) => &value["items"][i],
                        None => &value,
                    };
                    documents += 1;
                    let mut paths = Vec::new();
                    pointers(object_value, &mut Vec::new(), &mut paths);
                    let mut all = true;
                    for path in &paths {
                        let fast = block::locate(chunk_text, item, Some(path));
                        let Some((start, field)) = fast else {
                            if all && std::env::var_os("MESHMEDIC_POSITIONS_WHY").is_some() {
                                eprintln!(
                                    "tree needed: {} item {item:?} path {path:?}",
                                    file.display()
                                );
                            }
                            all = false;
                            continue;
                        };
                        let tree = (
                            object.byte_range().start as usize,
                            Some(find_path(&object, path)),
                        );
                        assert_eq!(
                            (start, field),
                            tree,
                            "{} document at byte {} item {item:?} path {path:?}",
                            file.display(),
                            chunk.start
                        );
                    }
                    answered += usize::from(all);
                }
            }
        }
        (documents, answered)
    }

    #[test]
    fn the_block_locator_agrees_with_the_tree_on_every_field_of_the_bundled_manifests() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let (documents, answered) =
            block_agrees_with_the_tree(&[root.join("examples"), root.join("tests/fixtures")]);
        eprintln!("block locator: {answered} of {documents} documents without the tree");
        // The bundled manifests are written flow-style on purpose in many places (`{app: x}`),
        // which the tree enters; the generated meshes and public repositories are block style.
        assert!(
            documents > 50 && answered >= 20,
            "{answered} of {documents}"
        );
    }

    /// `MESHMEDIC_POSITIONS_DIRS=dir1:dir2 cargo test --lib block_locator_on -- --ignored
    /// --nocapture`: the same on other people's manifests.
    #[test]
    #[ignore = "reads the directories named in MESHMEDIC_POSITIONS_DIRS"]
    fn block_locator_on_other_manifests() {
        let dirs = crate::snapshot::load::dirs_from_env("MESHMEDIC_POSITIONS_DIRS");
        let (documents, answered) = block_agrees_with_the_tree(&dirs);
        eprintln!("block locator: {answered} of {documents} documents without the tree");
    }

    /// A flow collection on the line below its key (anthos-service-mesh-workshop's probes):
    /// the block locator enters it as the tree does, instead of stopping at the key.
    #[test]
    fn a_flow_collection_below_its_key() {
        let text = "kind: Pod\nspec:\n  containers:\n  - name: a\n    command:\n      [\"sh\", \"-c\", \"x\"]\n";
        let tokens: Vec<String> = ["spec", "containers", "0", "command", "1"]
            .map(String::from)
            .to_vec();
        let (_, found) = block::locate(text, None, Some(&tokens)).unwrap();
        let (offset, depth) = found.unwrap();
        assert_eq!((&text[offset..offset + 4], depth), ("\"-c\"", 5));
        let parsed = ParsedChunk::parse(text).unwrap();
        let object = parsed.object(None).unwrap();
        assert_eq!(
            find_path(&object, &tokens),
            (offset, 5),
            "the tree's answer"
        );
    }

    /// A tab after a key's colon is a separator (argocd-example-apps' guestbook-ui-svc.yaml):
    /// such a document is left to the tree, which finds the key.
    #[test]
    fn tabs_after_keys() {
        let text = "apiVersion: v1\t\nkind: Service\t\nmetadata:\t\n  name: web\t\n";
        let tokens: Vec<String> = vec!["metadata".into(), "name".into()];
        assert_eq!(block::locate(text, None, Some(&tokens)), None);
        let source = Source {
            file: "f".into(),
            document: 0,
            item: None,
        };
        let (_, field) = locate_in_text(text, &source, Some("/metadata/name")).unwrap();
        assert_eq!(field, Some((true, (4, 3))));
    }

    /// A file opening with a byte order mark (trevorbox/service-mesh-patterns): the object is
    /// placed after it, on the first column an editor shows.
    #[test]
    fn a_byte_order_mark_is_no_column() {
        let text = "\u{feff}kind: ClusterRole\nmetadata:\n  name: x\n";
        assert_eq!(block::locate(text, None, None), None);
        let source = Source {
            file: "f".into(),
            document: 0,
            item: None,
        };
        let (at, field) = locate_in_text(text, &source, Some("/metadata/name")).unwrap();
        assert_eq!(at, (1, 1));
        assert_eq!(field, Some((true, (3, 3))));
    }

    #[test]
    fn items_of_a_list_document() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- kind: A\n- kind: B\n  spec: {x: 1}\n";
        let source = Source {
            file: "f".into(),
            document: 0,
            item: Some(1),
        };
        let (at, field) = locate_in_text(text, &source, Some("/spec/x")).unwrap();
        assert_eq!(at, (5, 3));
        assert_eq!(field, Some((true, (6, 10))));
    }
}
