//! Reading manifests from files, directories and stdin, as a repository holds them.
//!
//! A directory is scanned for `*.yaml`, `*.yml` and `*.json` (sorted, so output is
//! deterministic; `.git` is not entered). Every file holding Kubernetes objects is read; files
//! that are not manifests (Helm chart metadata, values files, templates, kustomize files and the
//! patches they list, files with no `apiVersion`/`kind` at all) are skipped with a reason. A
//! document that cannot be read is reported with its file and line, and the rest is still read.
//! Scalars resolve as kubectl resolves them ([`super::yaml`]).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::build::{Fields, Prepared};
use super::raw::DocText;
use super::yaml::{self, Document};
use super::{Snapshot, SnapshotBuilder, SnapshotOptions};
use crate::error::{Error, Result, Source};

/// A file left out of the analysis, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedFile {
    pub file: String,
    pub reason: String,
}

/// A document that could not be read; the others in its file still are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InvalidDocument {
    pub file: String,
    /// Zero-based index of the document in the file.
    pub document: usize,
    /// Zero-based index of the item when the document is a `kind: List`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    /// 1-based line of the error (a syntax error) or of the field (a wrong field).
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for InvalidDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} (document {}", self.file, self.line, self.document)?;
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        write!(f, "): {}", self.message)
    }
}

/// One document that holds an object (or a `kind: List`), with the line of each field.
#[derive(Debug)]
pub struct ObjectDocument {
    pub source: Source,
    /// The document's first line in its file (1-based).
    pub first_line: usize,
    /// The document read as a value (with the lines of its fields, or its text to find them);
    /// `None` for one whose objects were decoded on the thread that read it (`prepared`), which
    /// keeps only `text`. Boxed, and absent from those: 40,000 documents held an empty value and
    /// line map each until the build, 4.9 MB of the heap's peak at 10,000 services (README,
    /// Benchmarks).
    pub document: Option<Box<Document>>,
    /// A prepared document's text, to find the line of a field an error names.
    pub text: Option<DocText>,
    /// [`read_paths_prepared`]: the document's objects, already decoded on the thread that
    /// parsed it.
    pub prepared: Option<Vec<Entry>>,
}

/// One object of a document (a `kind: List` has several), made ready for the builder.
pub struct Entry {
    source: Source,
    /// To find objects defined twice.
    key: Option<ObjectKey>,
    prepared: Prepared,
    /// The field-path prefix of a List item (`items[3]`).
    prefix: String,
}

impl ObjectDocument {
    /// Read ahead, and of kinds the analysis only counts.
    fn is_skipped(&self) -> bool {
        self.prepared
            .as_ref()
            .is_some_and(|entries| entries.iter().all(|e| e.prepared.is_skipped()))
    }

    /// Drops the text of a document of kinds the analysis only counts: no error can come of
    /// it, no finding points into it, and it keeps its file's text alive.
    fn without_text_if_skipped(mut self) -> ObjectDocument {
        if self.is_skipped() {
            self.text = None;
            if let Some(document) = &mut self.document {
                document.text = None;
            }
        }
        self
    }

    /// A document read as a value, with its lines.
    pub fn of_value(source: Source, first_line: usize, document: Document) -> ObjectDocument {
        ObjectDocument {
            source,
            first_line,
            document: Some(Box::new(document)),
            text: None,
            prepared: None,
        }
    }

    /// The document's value (null once its objects are decoded).
    pub fn value(&self) -> &Value {
        const NULL: &Value = &Value::Null;
        self.document.as_ref().map_or(NULL, |d| &d.value)
    }

    /// The document's value, to change it (none once its objects are decoded).
    pub fn value_mut(&mut self) -> Option<&mut Value> {
        self.document.as_mut().map(|d| &mut d.value)
    }

    /// The line of a field path in the document, or of its nearest ancestor that has one.
    fn line_of(&self, path: &str) -> Option<usize> {
        match (&self.document, &self.text) {
            (Some(document), _) => document.line_of(path),
            (None, Some(text)) => yaml::line_in(text, path),
            (None, None) => None,
        }
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Entry({}, {:?})", self.source, self.key)
    }
}

/// The documents of the input, in order, kept in the parts they were read in (a large file's
/// share of each thread, one small file): joining the parts into one list was one more copy of
/// them all while the parts still lived (9 MB of the peak at 10,000 services; README,
/// Benchmarks).
#[derive(Default)]
pub struct Documents(Vec<Vec<ObjectDocument>>);

// The documents, whatever parts they were read in.
impl std::fmt::Debug for Documents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Documents {
    pub fn len(&self) -> usize {
        self.0.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Vec::is_empty)
    }

    pub fn push(&mut self, document: ObjectDocument) {
        match self.0.last_mut() {
            Some(last) => last.push(document),
            None => self.0.push(vec![document]),
        }
    }

    /// Appends a part as it is, without copying its documents.
    pub fn push_part(&mut self, part: Vec<ObjectDocument>) {
        if !part.is_empty() {
            self.0.push(part);
        }
    }

    /// Moves every document of `other` after these.
    pub fn append(&mut self, other: &mut Documents) {
        self.0.append(&mut other.0);
    }

    /// How many parts: [`Documents::after_part`] of it gives what is added after.
    fn parts(&self) -> usize {
        self.0.len()
    }

    /// The documents of the parts from `part` on.
    fn after_part(&self, part: usize) -> impl Iterator<Item = &ObjectDocument> {
        self.0.iter().skip(part).flatten()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ObjectDocument> {
        self.0.iter().flatten()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut ObjectDocument> {
        self.0.iter_mut().flatten()
    }
}

impl<'a> IntoIterator for &'a mut Documents {
    type Item = &'a mut ObjectDocument;
    type IntoIter = std::iter::Flatten<std::slice::IterMut<'a, Vec<ObjectDocument>>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter_mut().flatten()
    }
}

impl IntoIterator for Documents {
    type Item = ObjectDocument;
    type IntoIter = std::iter::Flatten<std::vec::IntoIter<Vec<ObjectDocument>>>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().flatten()
    }
}

// For tests only: the `index`th document, and a panic past the end, as a slice's.
#[cfg(test)]
impl std::ops::Index<usize> for Documents {
    type Output = ObjectDocument;
    fn index(&self, index: usize) -> &ObjectDocument {
        let mut rest = index;
        for part in &self.0 {
            if rest < part.len() {
                return &part[rest];
            }
            rest -= part.len();
        }
        panic!("document {index} of {}", self.len())
    }
}

/// Everything read from the inputs.
#[derive(Default)]
pub struct Input {
    pub objects: Documents,
    /// The text of each file that gave objects (name as in [`Source::file`], text), for the
    /// positions of findings (`positions::Locator::with_texts`). Stdin's is not kept.
    pub texts: Vec<(String, Arc<String>)>,
    pub skipped_files: Vec<SkippedFile>,
    pub invalid_documents: Vec<InvalidDocument>,
    /// Objects defined more than once (kind, namespace, name), said on stderr.
    pub duplicates: Vec<String>,
}

// By hand: the files' texts would fill a debug print.
impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("objects", &self.objects)
            .field(
                "texts",
                &self.texts.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("skipped_files", &self.skipped_files)
            .field("invalid_documents", &self.invalid_documents)
            .field("duplicates", &self.duplicates)
            .finish()
    }
}

impl Input {
    /// Appends what another part of the input (the next file) gave.
    fn absorb(&mut self, mut other: Input) {
        self.objects.append(&mut other.objects);
        self.texts.extend(other.texts);
        self.skipped_files.extend(other.skipped_files);
        self.invalid_documents.extend(other.invalid_documents);
        self.duplicates.extend(other.duplicates);
    }

    /// Builds the snapshot. Objects whose fields have the wrong type are reported in
    /// `invalid_documents` and left out; the others are analysed.
    pub fn build(&mut self, options: SnapshotOptions) -> Result<(Snapshot, usize)> {
        let mut builder = SnapshotBuilder::new(options);
        let mut read = 0;
        let mut objects = std::mem::take(&mut self.objects);
        // Every object (List items apart), left in the document it came from: a list of them
        // all would be one more large block of fresh memory (7 MB at 10,000 services).
        for obj in &mut objects {
            if obj.prepared.is_none() {
                // Moved, not cloned: only the text (for an error's line) stays behind.
                let value = obj.value_mut().map(std::mem::take).unwrap_or_default();
                obj.prepared = Some(prepare_entries(obj.source.clone(), value, None));
            }
        }
        let entries = || objects.iter().flat_map(|o| o.prepared.iter().flatten());
        // The same object twice (two variants of one manifest in a repository): the last one
        // is analysed, as `kubectl apply -f DIR` would leave it.
        let count = entries().count();
        let mut superseded = vec![false; count];
        {
            let mut last: hashbrown::HashMap<&ObjectKey, (usize, &Entry)> =
                hashbrown::HashMap::with_capacity(count);
            for (n, entry) in entries().enumerate() {
                if let Some(key) = &entry.key
                    && let Some((earlier, first)) = last.insert(key, (n, entry))
                {
                    superseded[earlier] = true;
                    let (kind, namespace, name) = key.parts();
                    self.duplicates.push(format!(
                        "{kind} {namespace}/{name} is in {} and {}: the last one is analysed",
                        first.source, entry.source
                    ));
                }
            }
        }
        let mut superseded = superseded.into_iter();
        for obj in &mut objects {
            for entry in obj.prepared.take().into_iter().flatten() {
                if superseded.next().unwrap_or(false) {
                    continue;
                }
                let Entry {
                    source,
                    prepared,
                    prefix,
                    ..
                } = entry;
                match builder.add_prepared(prepared) {
                    Ok(()) => read += 1,
                    Err(e) => self
                        .invalid_documents
                        .push(invalid_field(obj, &source, &prefix, e)?),
                }
            }
        }
        // The documents, emptied, are freed before the indexes are made: they were the
        // largest blocks still held (README, Benchmarks).
        drop(objects);
        Ok((builder.build()?, read))
    }
}

/// An object whose field has the wrong type, as the document it is left out of, with the
/// field's line; any other error is the run's.
fn invalid_field(
    obj: &ObjectDocument,
    source: &Source,
    prefix: &str,
    error: Error,
) -> Result<InvalidDocument> {
    let Error::InvalidField {
        object,
        field,
        message,
        ..
    } = error
    else {
        return Err(error);
    };
    let path = if field.starts_with('(') {
        prefix.to_string()
    } else if prefix.is_empty() {
        field.clone()
    } else {
        format!("{prefix}.{field}")
    };
    let line = obj.line_of(&path).unwrap_or(1);
    Ok(InvalidDocument {
        file: source.file.to_string(),
        document: source.document,
        item: source.item,
        line: obj.first_line + line - 1,
        message: format!("{object}: field `{field}`: {message}"),
    })
}

/// The objects of a document (the items of a `kind: List`), each decoded as far as it can be
/// without the builder. With the document's `text`, objects keep it instead of their tree
/// (snapshot::raw): the tree is built again only for the few objects a fix reads.
fn prepare_entries(source: Source, value: Value, text: Option<DocText>) -> Vec<Entry> {
    flatten_lists(source, value)
        .into_iter()
        .map(|(source, value, prefix)| Entry {
            key: object_key(&value),
            prepared: SnapshotBuilder::prepare(
                source.clone(),
                value,
                text.clone().map(|t| super::Raw::from_text(t, source.item)),
            ),
            source,
            prefix,
        })
        .collect()
}

/// [`prepare_entries`] of a document read as the borrowed tree: the same entries, the typed
/// objects decoded without the document's JSON.
fn prepare_borrowed(source: Source, node: yaml::Borrowed<'_>, text: DocText) -> Vec<Entry> {
    if node.is_list() {
        return prepare_entries(source, node.into_value(), Some(text));
    }
    let key = object_key(&node);
    let raw = super::Raw::from_text(text, None);
    vec![Entry {
        key,
        prepared: SnapshotBuilder::prepare_borrowed(source.clone(), node, raw),
        source,
        prefix: String::new(),
    }]
}

/// `(kind[.group], namespace, name)` in one string (one allocation an object, not three: they
/// are all held until the build). The two ends are kept, so keys are equal only when all three
/// parts are.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ObjectKey {
    text: String,
    kind_end: u32,
    namespace_end: u32,
}

impl ObjectKey {
    fn new(kind: &str, group: Option<&str>, namespace: &str, name: &str) -> Option<ObjectKey> {
        let mut text = String::with_capacity(
            kind.len() + group.map_or(0, |g| g.len() + 1) + namespace.len() + name.len(),
        );
        text.push_str(kind);
        if let Some(group) = group {
            text.push('.');
            text.push_str(group);
        }
        let kind_end = u32::try_from(text.len()).ok()?;
        text.push_str(namespace);
        let namespace_end = u32::try_from(text.len()).ok()?;
        text.push_str(name);
        Some(ObjectKey {
            text,
            kind_end,
            namespace_end,
        })
    }

    /// `(kind[.group], namespace, name)`.
    fn parts(&self) -> (&str, &str, &str) {
        let (kind, rest) = self.text.split_at(self.kind_end as usize);
        let (namespace, name) = rest.split_at((self.namespace_end - self.kind_end) as usize);
        (kind, namespace, name)
    }
}

/// Objects without a namespace are in `default`, as kubectl puts them.
fn object_key(value: &impl Fields) -> Option<ObjectKey> {
    let kind = value.str_at(&["kind"])?;
    let group = value
        .str_at(&["apiVersion"])?
        .rsplit_once('/')
        .map(|(g, _)| g);
    let name = value.str_at(&["metadata", "name"])?;
    // The API server ignores a cluster-scoped object's namespace: two definitions that differ
    // only there are one object (a Sail `Istio` with and without `namespace: istio-system`).
    let namespace = match value.str_at(&["metadata", "namespace"]) {
        _ if cluster_scoped(group.unwrap_or_default(), kind) => "",
        Some(ns) => ns,
        None => "default",
    };
    ObjectKey::new(kind, group, namespace, name)
}

/// Kinds without a namespace, of Kubernetes and of the projects a mesh repository holds.
fn cluster_scoped(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        (
            "",
            "Namespace" | "Node" | "PersistentVolume" | "ComponentStatus"
        ) | (
            "rbac.authorization.k8s.io",
            "ClusterRole" | "ClusterRoleBinding"
        ) | ("apiextensions.k8s.io", "CustomResourceDefinition")
            | (
                "admissionregistration.k8s.io",
                "MutatingWebhookConfiguration"
                    | "ValidatingWebhookConfiguration"
                    | "ValidatingAdmissionPolicy"
                    | "ValidatingAdmissionPolicyBinding"
            )
            | (
                "storage.k8s.io",
                "StorageClass" | "CSIDriver" | "CSINode" | "VolumeAttachment"
            )
            | ("scheduling.k8s.io", "PriorityClass")
            | ("node.k8s.io", "RuntimeClass")
            | ("networking.k8s.io", "IngressClass")
            | ("apiregistration.k8s.io", "APIService")
            | ("gateway.networking.k8s.io", "GatewayClass")
            | ("cert-manager.io", "ClusterIssuer")
            | (
                "sailoperator.io",
                "Istio" | "IstioCNI" | "ZTunnel" | "IstioRevision" | "IstioRevisionTag"
            )
    )
}

/// The items of a `kind: List` (each with its source and field-path prefix), or the object.
fn flatten_lists(source: Source, value: Value) -> Vec<(Source, Value, String)> {
    if !value.is_list() {
        return vec![(source, value, String::new())];
    }
    let Value::Object(mut map) = value else {
        return Vec::new();
    };
    let Some(Value::Array(items)) = map.remove("items") else {
        return Vec::new();
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let mut at = source.clone();
            at.item = Some(i);
            (at, item, format!("items[{i}]"))
        })
        .collect()
}

/// The directories named in the environment variable `var` (`dir1:dir2`), for the tests that
/// compare the fast readers with the full ones on other people's manifests.
#[cfg(test)]
pub(crate) fn dirs_from_env(var: &str) -> Vec<PathBuf> {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var}=dir1:dir2 names the directories to read"))
        .split(':')
        .map(Into::into)
        .collect()
}

/// Builds a snapshot from paths, strictly: the first unreadable document is an error.
pub fn snapshot_from_paths(paths: &[PathBuf], options: SnapshotOptions) -> Result<Snapshot> {
    let mut input = read_paths_prepared(paths)?;
    if let Some(bad) = input.invalid_documents.first() {
        return Err(Error::Other(bad.to_string()));
    }
    let (snapshot, _) = input.build(options)?;
    if let Some(bad) = input.invalid_documents.first() {
        return Err(Error::Other(bad.to_string()));
    }
    Ok(snapshot)
}

/// Reads files, directories and `-` (stdin). Only a path that cannot be read is an error.
pub fn read_paths(paths: &[PathBuf]) -> Result<Input> {
    read_paths_with(paths, false)
}

/// [`read_paths`], with each object decoded on the thread that parsed its document, which
/// drops the document's tree at once (`ObjectDocument::prepared`): for an input that is only
/// built into a snapshot ([`Input::build`]), far less memory at once, and the decoding spread
/// over the cores.
pub fn read_paths_prepared(paths: &[PathBuf]) -> Result<Input> {
    read_paths_with(paths, true)
}

/// The threads to spread work over: the cores this process may use, at most 8. Asked once:
/// the standard library reads the cgroup's CPU quota from /proc and /sys on every call (three
/// files opened per input file, when it was asked per file).
pub(crate) fn worker_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(8)))
}

/// `work` on each of `parts`, each on a thread of its own, the results in the parts' order; a
/// panic on one of the threads goes on in the caller.
pub(crate) fn on_threads<P: Send, T: Send>(parts: Vec<P>, work: impl Fn(P) -> T + Sync) -> Vec<T> {
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| scope.spawn(move || work(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// A file named as Helm values are: `values.yaml`, `values-prod.yaml`, and as installers name
/// them beside each other, `istiod-values.yaml` or `cni_values.minimal.yaml`.
fn names_values(file_name: &str) -> bool {
    file_name
        .split(['-', '_', '.'])
        .any(|word| word.eq_ignore_ascii_case("values"))
}

/// A file at least this large is parsed on every core by itself; smaller ones are read side by
/// side, one file per core.
const LARGE_FILE: usize = 1 << 20;

fn read_paths_with(paths: &[PathBuf], prepare: bool) -> Result<Input> {
    read_paths_on(paths, prepare, None, LARGE_FILE)
}

/// [`read_paths_with`] on `threads` threads (`None`: [`worker_threads`]), with files of `large`
/// bytes or more parsed on all of them after the others.
fn read_paths_on(
    paths: &[PathBuf],
    prepare: bool,
    threads: Option<usize>,
    large: usize,
) -> Result<Input> {
    let files = expand_paths(paths)?;
    let patches = kustomize_patches(&files);
    let mut charts = HashMap::new();
    let mut input = Input::default();
    // Fewer than two files a core are read in turn, each parsed on every core. Then the number
    // of cores is asked only when a file is parsed: asked before the file was read, it moved
    // where mimalloc placed what followed, and the peak at 10,000 services rose by 12 MiB.
    let side_by_side = (files.len() >= 4)
        .then(|| threads.unwrap_or_else(worker_threads))
        .filter(|&t| t >= 2 && files.len() >= 2 * t);
    let Some(threads) = side_by_side else {
        for file in &files {
            read_one(
                paths,
                &patches,
                file,
                &mut charts,
                &mut input,
                prepare,
                threads,
                None,
            )?;
        }
        return Ok(input);
    };
    // A repository is many small files: they are read and parsed side by side, and joined in
    // the order of `files`, so the result is the one a single thread gives (a test compares).
    // A large file is left for after them, to be parsed on every core.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = |_thread: usize| {
        let mut charts = HashMap::new();
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(file) = files.get(i) else { break };
            let mut part = Input::default();
            let left = read_one(
                paths,
                &patches,
                file,
                &mut charts,
                &mut part,
                prepare,
                Some(1),
                Some(large),
            );
            done.push((i, left.map(|left| (part, left))));
        }
        done
    };
    let mut read: Vec<(usize, Result<FileRead>)> = on_threads((0..threads).collect(), work)
        .into_iter()
        .flatten()
        .collect();
    read.sort_unstable_by_key(|(i, _)| *i);
    for (file, (_, one)) in files.iter().zip(read) {
        let (part, left) = one?;
        input.absorb(part);
        if let Some((name, text)) = left {
            parse_file(
                file,
                name,
                text,
                &mut charts,
                &mut input,
                prepare,
                Some(threads),
            );
        }
    }
    Ok(input)
}

/// A file's part of the [`Input`], and a large file's name and text left to parse.
type FileRead = (Input, Option<(String, Arc<String>)>);

/// Reads `file` into `input`; with `large`, a file of that many bytes or more is returned
/// unparsed instead.
#[allow(clippy::too_many_arguments)]
fn read_one(
    paths: &[PathBuf],
    patches: &HashMap<PathBuf, String>,
    file: &Path,
    charts: &mut HashMap<PathBuf, bool>,
    input: &mut Input,
    prepare: bool,
    threads: Option<usize>,
    large: Option<usize>,
) -> Result<Option<(String, Arc<String>)>> {
    let (name, text) = match read_input(file) {
        Ok(read) => read,
        // A file found in a directory that cannot be read as text is skipped; one the user
        // named is an error.
        Err(Error::Io { source, .. }) if !paths.iter().any(|p| p == file) => {
            input.skipped_files.push(SkippedFile {
                file: file.display().to_string(),
                reason: format!("cannot be read as UTF-8 text: {source}"),
            });
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if let Some(kustomization) = patches.get(&normalize(file)) {
        input.skipped_files.push(SkippedFile {
            file: name,
            reason: format!("kustomize patch (listed in {kustomization})"),
        });
        return Ok(None);
    }
    // Shared by the documents' texts and, later, the positions of findings.
    let text = Arc::new(text);
    if large.is_some_and(|large| text.len() >= large) {
        return Ok(Some((name, text)));
    }
    parse_file(file, name, text, charts, input, prepare, threads);
    Ok(None)
}

/// Adds a file's objects, documents that cannot be read, or why it is skipped, with its text
/// kept when it gave objects.
fn parse_file(
    file: &Path,
    name: String,
    text: Arc<String>,
    charts: &mut HashMap<PathBuf, bool>,
    input: &mut Input,
    prepare: bool,
    threads: Option<usize>,
) {
    let before = input.objects.parts();
    read_file(file, &name, &text, charts, input, prepare, threads);
    // Only a file with an object the analysis reads can hold a finding: a repository's
    // CustomResourceDefinitions alone were nine tenths of kubeflow/manifests' 25 MB.
    let analysed = input.objects.after_part(before).any(|o| !o.is_skipped());
    if analysed && name != "-" {
        input.texts.push((name, text));
    }
}

fn read_file(
    path: &Path,
    name: &str,
    text: &Arc<String>,
    charts: &mut HashMap<PathBuf, bool>,
    input: &mut Input,
    prepare: bool,
    threads: Option<usize>,
) {
    let skip = |input: &mut Input, reason: &str| {
        input.skipped_files.push(SkippedFile {
            file: name.to_string(),
            reason: reason.to_string(),
        })
    };
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if matches!(file_name, "Chart.yaml" | "Chart.yml") {
        return skip(input, "Helm chart metadata");
    }
    if matches!(
        file_name,
        "kustomization.yaml" | "kustomization.yml" | "Kustomization"
    ) {
        return skip(
            input,
            "kustomize configuration (analyse its output: kustomize build DIR | meshmedic analyze -)",
        );
    }
    // Decided on the text before any object is decoded: a chart's templates are skipped unread
    // (`has_template_actions` also counts a document that does not parse).
    let templated = text.contains("{{") && text.contains("}}");
    if templated && (in_chart_templates(path, charts) || has_template_actions(text)) {
        return skip(
            input,
            "Helm/Go template ({{ }}): render it first (helm template | meshmedic analyze -)",
        );
    }
    let mut objects = Documents::default();
    let mut invalid = Vec::new();
    let mut others = Vec::new();
    for part in read_document_parts(name, text, prepare, Some(text), threads) {
        // Each part's list becomes its list of objects, in place: the rest are rare.
        let part: Vec<ObjectDocument> = part
            .into_iter()
            .filter_map(|doc| match doc {
                Ok(obj) if obj.prepared.is_some() || is_object(obj.value()) => Some(obj),
                Ok(other) => {
                    others.push(other);
                    None
                }
                Err(bad) => {
                    invalid.push(bad);
                    None
                }
            })
            .collect();
        objects.push_part(part);
    }
    if objects.is_empty() && !invalid.is_empty() && !text.contains("apiVersion") {
        // JSON with comments or trailing commas (`.vscode/settings.json`, `appsettings.json`,
        // `stylecop.json` in retaildevcrews/istio) is not YAML, and no manifest either: a broken
        // manifest still names its apiVersion somewhere.
        return skip(
            input,
            "not valid YAML, and no apiVersion anywhere in it: not a manifest",
        );
    }
    if objects.is_empty() && invalid.is_empty() {
        let reason = if others.is_empty() {
            "empty"
        } else if names_values(file_name) {
            "Helm values file (no apiVersion/kind)"
        } else {
            "no Kubernetes objects (no document has apiVersion and kind)"
        };
        return skip(input, reason);
    }
    if !objects.is_empty() {
        // In a file of manifests, a document without apiVersion/kind is a broken object.
        for doc in others {
            invalid.push(InvalidDocument {
                file: name.to_string(),
                document: doc.source.document,
                item: None,
                line: doc.first_line,
                message: "not a Kubernetes object: apiVersion and kind are needed".to_string(),
            });
        }
        invalid.sort_by_key(|d| d.document);
    }
    // Moved, not copied: a large file's list of objects is tens of MB.
    input.objects.append(&mut objects);
    input.invalid_documents.extend(invalid);
}

/// A mapping with string `apiVersion` and `kind`.
fn is_object(doc: &impl Fields) -> bool {
    doc.str_at(&["apiVersion"]).is_some() && doc.str_at(&["kind"]).is_some()
}

/// Template actions in the YAML's structure, not inside its string values. Rendered output
/// (`helm template`, `kustomize build`, `istioctl manifest generate`) carries Go templates as
/// text: istiod's injector ConfigMap holds its injection templates (`{{- if … }}` lines,
/// `.Values`, `{{ template … }}`) in a block scalar, alerting rules and Argo workflows hold
/// `{{ $labels.x }}`. In a template not yet rendered, actions stand where YAML reads keys, flow
/// mappings or text of their own (`{{- if .Values.x }}` lines, `name: {{ .Release.Name }}`), so
/// fewer `{{` are left in the parsed strings than the text has outside comments. A document
/// that does not parse counts as templated.
fn has_template_actions(text: &str) -> bool {
    let in_text: usize = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.matches("{{").count())
        .sum();
    let mut in_strings = 0;
    for (_, doc) in split_documents(text) {
        match yaml::from_str(&doc) {
            Ok(value) => in_strings += actions_in_strings(&value),
            Err(_) => return true,
        }
    }
    in_strings < in_text
}

/// `{{` in the keys and string values of `value`.
fn actions_in_strings(value: &Value) -> usize {
    match value {
        Value::String(s) => s.matches("{{").count(),
        Value::Array(items) => items.iter().map(actions_in_strings).sum(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| k.matches("{{").count() + actions_in_strings(v))
            .sum(),
        _ => 0,
    }
}

/// Whether the file sits under `templates/` of a directory holding `Chart.yaml`.
fn in_chart_templates(path: &Path, charts: &mut HashMap<PathBuf, bool>) -> bool {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d.file_name().is_some_and(|n| n == "templates")
            && let Some(chart) = d.parent()
        {
            let is_chart = *charts
                .entry(chart.to_path_buf())
                .or_insert_with(|| chart.join("Chart.yaml").is_file());
            if is_chart {
                return true;
            }
        }
        dir = d.parent();
    }
    false
}

/// Files that kustomization files among `files` list as patches, with the kustomization's name.
fn kustomize_patches(files: &[PathBuf]) -> HashMap<PathBuf, String> {
    let mut out = HashMap::new();
    for file in files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !matches!(name, "kustomization.yaml" | "kustomization.yml") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let Ok(k) = yaml::from_str(&text) else {
            continue;
        };
        let dir = file.parent().unwrap_or(Path::new(""));
        let mut listed = Vec::new();
        for key in ["patchesStrategicMerge"] {
            for p in k.get(key).and_then(Value::as_array).into_iter().flatten() {
                listed.extend(p.as_str().map(str::to_string));
            }
        }
        for key in ["patches", "patchesJson6902"] {
            for p in k.get(key).and_then(Value::as_array).into_iter().flatten() {
                listed.extend(p.get("path").and_then(Value::as_str).map(str::to_string));
            }
        }
        for p in listed {
            out.insert(normalize(&dir.join(p)), file.display().to_string());
        }
    }
    out
}

/// `a/./b/../c` → `a/c`, without touching the file system.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Expands directories into the manifest files below them.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut seen = BTreeSet::new();
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
            let mut found = Vec::new();
            walk(path, &mut found)?;
            files.extend(found.into_iter().filter(|f| seen.insert(f.clone())));
        } else if seen.insert(path.clone()) {
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
    // The type of each entry comes with the directory's listing (no `stat` per file, which
    // were two per file).
    let mut entries = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.and_then(|e| Ok((e.path(), e.file_type()?))))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io)?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, file_type) in entries {
        let is_link = file_type.is_symlink();
        let is_dir = file_type.is_dir() || (is_link && path.is_dir());
        if is_dir {
            // A symlinked directory is not followed: a link to a parent would never end.
            if is_link || path.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
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
    let bytes = std::fs::read(path).map_err(io)?;
    let text = String::from_utf8(bytes).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    Ok((path.display().to_string(), text))
}

/// Every non-empty document of a file, read or with its error. Each `---` chunk is parsed on
/// its own (as kubectl's YAML reader splits the stream), so one broken document does not hide
/// the others, and errors carry the line in the file.
pub fn read_documents(
    file: &str,
    text: &str,
) -> Vec<std::result::Result<ObjectDocument, InvalidDocument>> {
    read_document_parts(file, text, false, None, None)
        .into_iter()
        .flatten()
        .collect()
}

/// [`read_documents`]; with `prepare`, objects are decoded where they are parsed
/// ([`ObjectDocument::prepared`]).
/// Documents keep their text as a range of `shared` (the file's text) when given.
/// In order, in the parts that were read on one thread each.
fn read_document_parts(
    file: &str,
    text: &str,
    prepare: bool,
    shared: Option<&Arc<String>>,
    threads: Option<usize>,
) -> Vec<Vec<std::result::Result<ObjectDocument, InvalidDocument>>> {
    // Each document's position in the file is its index here, blank ones included. Read in
    // place, by slices: a second list of them (its index beside each) and each thread's copy
    // of its share were 4.2 MB of the heap's peak at 10,000 services (README, Benchmarks).
    let chunks: Vec<(usize, Cow<'_, str>)> = split_documents(text);
    // One name for every object of the file.
    let name: Arc<str> = file.into();
    let read_value =
        |document: usize, first_line: usize, chunk: &str| match Document::lazy_in(shared, chunk) {
            Ok(doc) if doc.value.is_null() => None,
            Ok(doc) => {
                let source = Source::new(name.clone(), document);
                if !(prepare && is_object(&doc.value)) {
                    return Some(Ok(ObjectDocument::of_value(source, first_line, doc)));
                }
                let prepared = prepare_entries(source.clone(), doc.value, doc.text.clone());
                Some(Ok(ObjectDocument {
                    source,
                    first_line,
                    document: None,
                    text: doc.text,
                    prepared: Some(prepared),
                }))
            }
            Err(e) => Some(Err(InvalidDocument {
                file: file.to_string(),
                document,
                item: None,
                line: first_line + e.line.max(1) - 1,
                message: format!(
                    "not valid YAML: {}{}",
                    e.message,
                    match placeholder_near(chunk, e.line) {
                        Some(Placeholder::Shell) => {
                            "; `${…}` there is a placeholder for envsubst or a CI tool, not \
                             YAML: substitute it first (envsubst < FILE | meshmedic analyze -)"
                        }
                        Some(Placeholder::Delimited) => {
                            "; `%…%` or `@…@` there is a placeholder a script or a build tool \
                             replaces (sed, Maven resource filtering), not YAML: substitute it \
                             first and give meshmedic the result (… | meshmedic analyze -)"
                        }
                        None => "",
                    }
                ),
            })),
        };
    let read = |document: usize, (first_line, chunk): &(usize, Cow<'_, str>)| {
        let (first_line, chunk) = (*first_line, &**chunk);
        if is_blank(chunk) {
            return None;
        }
        // Plain block YAML (nearly every manifest): typed objects straight from the text.
        if prepare
            && let Some(node) = yaml::borrowed(chunk)
            && is_object(&node)
        {
            let source = Source::new(name.clone(), document);
            let text = DocText::of(shared, chunk);
            let prepared = Some(prepare_borrowed(source.clone(), node, text.clone()));
            return Some(Ok(ObjectDocument {
                source,
                first_line,
                document: None,
                text: Some(text),
                prepared,
            }
            .without_text_if_skipped()));
        }
        read_value(document, first_line, chunk)
            .map(|doc| doc.map(ObjectDocument::without_text_if_skipped))
    };
    // Documents are independent: a large file is parsed on `threads` cores, in order.
    let threads = threads.unwrap_or_else(worker_threads);
    // Lists of documents are made at their final size and moved, never grown by doubling:
    // each copy of a large one is fresh memory the kernel zeroes (README, Benchmarks).
    // `first`: the index of the part's first document in the file.
    let read_all = |(first, part): (usize, &[(usize, Cow<'_, str>)])| {
        let mut out = Vec::with_capacity(part.len());
        out.extend(
            part.iter()
                .enumerate()
                .filter_map(|(i, chunk)| read(first + i, chunk)),
        );
        out
    };
    if threads < 2 || chunks.len() < 64 {
        return vec![read_all((0, &chunks))];
    }
    let per = chunks.len().div_ceil(threads);
    let parts: Vec<_> = chunks
        .chunks(per)
        .enumerate()
        .map(|(n, part)| (n * per, part))
        .collect();
    on_threads(parts, read_all)
}

/// A template placeholder a tool replaces before the text is YAML.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placeholder {
    /// `${NAME}`: envsubst, CI variables.
    Shell,
    /// `%NAME%` or `@name@` at the start of a value, where YAML reserves both characters: sed
    /// scripts (RedHatGov/service-mesh-workshop-code's `image: %USER_PROFILE_IMAGE_URI%:1.0`),
    /// Maven resource filtering (`@project.version@`).
    Delimited,
}

/// The placeholder on the 1-based `line` of `document` or the line before it, where a YAML error
/// it causes is reported (an unquoted `${urls}` alone on a line of a sequence, in
/// retaildevcrews/istio, is "could not find expected ':'" on the next line).
fn placeholder_near(document: &str, line: usize) -> Option<Placeholder> {
    let first = line.saturating_sub(2);
    let near: Vec<&str> = document.lines().skip(first).take(line - first).collect();
    if near
        .iter()
        .any(|l| l.find("${").is_some_and(|i| l[i..].contains('}')))
    {
        return Some(Placeholder::Shell);
    }
    // A value (after `key: ` or `- `) that starts with the delimiter and closes it on the line.
    let delimited = |l: &&str| {
        let value = l
            .split_once(": ")
            .map(|(_, v)| v)
            .or_else(|| l.trim_start().strip_prefix("- "))
            .unwrap_or_default()
            .trim_start();
        ['%', '@'].into_iter().any(|d| {
            value.strip_prefix(d).is_some_and(|rest| {
                rest.split_once(d).is_some_and(|(name, _)| {
                    !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                })
            })
        })
    };
    near.iter().any(delimited).then_some(Placeholder::Delimited)
}

/// Splits a file into its YAML documents and parses each (JSON is YAML too); the first broken
/// document is an error naming the file, the document and the line.
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<(Source, Value)>> {
    let mut out = Vec::new();
    for doc in read_documents(file, text) {
        match doc {
            Ok(d) => {
                let value = d.document.map(|d| d.value).unwrap_or_default();
                out.push((d.source, value))
            }
            Err(bad) => {
                return Err(Error::Syntax {
                    at: Source::new(file, bad.document),
                    message: format!(
                        "{} (line {})",
                        bad.message.trim_start_matches("not valid YAML: "),
                        bad.line
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// Splits on `---` document markers; returns each document with its first line (1-based). A
/// document is its lines, each ended by `\n` (as `str::lines` reads them: `\r\n` too): borrowed
/// from `text` when that is already so (nearly always), copied only when not (`\r\n` line ends,
/// no final line end), so a large file is not held twice while it is parsed.
fn split_documents(text: &str) -> Vec<(usize, Cow<'_, str>)> {
    fn chunk(range: &str) -> Cow<'_, str> {
        if range.is_empty() || (range.ends_with('\n') && !range.contains("\r\n")) {
            return Cow::Borrowed(range);
        }
        let mut owned = String::with_capacity(range.len() + 1);
        for line in range.lines() {
            owned.push_str(line);
            owned.push('\n');
        }
        Cow::Owned(owned)
    }
    let bytes = text.as_bytes();
    let mut docs = Vec::new();
    let (mut start, mut from) = (1, 0);
    // Lines are counted between markers, not walked one by one (README, Benchmarks).
    let (mut i, mut counted_to) = (0, 0);
    for at in marker_line_candidates(text) {
        i += memchr::memchr_iter(b'\n', &bytes[counted_to..at]).count();
        counted_to = at;
        let offset = memchr::memchr(b'\n', &bytes[at..]).map_or(text.len(), |n| at + n + 1);
        let raw = &text[at..offset];
        let line = match raw.strip_suffix('\n') {
            Some(l) => l.strip_suffix('\r').unwrap_or(l),
            None => raw,
        };
        if !is_marker(line) {
            continue;
        }
        if i > 0 {
            docs.push((start, chunk(&text[from..at])));
        }
        start = i + 2;
        from = offset;
        if line.starts_with("--- ") {
            // `--- {a: 1}`: the document starts on the marker's line.
            from = at + 4;
            start = i + 1;
        }
    }
    docs.push((start, chunk(&text[from.min(text.len())..])));
    docs
}

/// Whether a line (without its line end) starts or ends a YAML document.
pub(crate) fn is_marker(line: &str) -> bool {
    line == "---" || line.starts_with("--- ") || line.starts_with("---\t") || line == "..."
}

/// The start of every line that begins with `---` or `...`, in order: the only lines that can
/// be document markers, found by a vectorised search rather than by walking every line (10 ms
/// of a 12.6 MB file, on one core, before its documents can be parsed on all of them).
pub(crate) fn marker_line_candidates(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let after_newline =
        |needle: &'static [u8]| memchr::memmem::find_iter(bytes, needle).map(|i| i + 1);
    let mut candidates: Vec<usize> = (bytes.starts_with(b"---") || bytes.starts_with(b"..."))
        .then_some(0)
        .into_iter()
        .chain(after_newline(b"\n---"))
        .chain(after_newline(b"\n..."))
        .collect();
    candidates.sort_unstable();
    candidates
}

fn is_blank(chunk: &str) -> bool {
    chunk
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `${…}` placeholder that breaks the YAML is named in the error, with what to do; other
    /// errors say nothing of it (retaildevcrews/istio: an unquoted `${urls}` in a container's
    /// args).
    #[test]
    fn an_envsubst_placeholder_that_breaks_the_yaml_is_named() {
        let broken = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api}\nspec:\n  args:\n    - --zone\n    - dev\n    ${urls}\n  image: api\n";
        let docs = read_documents("mock.yaml", broken);
        let Some(Err(bad)) = docs.first() else {
            panic!("{:?}", docs.len())
        };
        assert!(
            bad.message.starts_with("not valid YAML: "),
            "{}",
            bad.message
        );
        assert!(bad.message.contains("envsubst < FILE"), "{}", bad.message);
        assert_eq!(bad.line, 8, "{}", bad.message);

        let other = "apiVersion: v1\nkind: Service\nmetadata: {name: api\nspec: {}\n";
        let docs = read_documents("svc.yaml", other);
        let Some(Err(bad)) = docs.first() else {
            panic!("{:?}", docs.len())
        };
        assert!(!bad.message.contains("envsubst"), "{}", bad.message);
        // `%…%` and `@…@` where a value starts: YAML reserves both characters there.
        for (value, ok) in [
            ("%USER_PROFILE_IMAGE_URI%:1.0", true),
            ("@project.version@", true),
            ("@ not a placeholder", false),
        ] {
            let text = format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: a}}\nspec:\n  image: {value}\n"
            );
            let docs = read_documents("p.yaml", &text);
            let Some(Err(bad)) = docs.first() else {
                panic!("{value}: {:?}", docs.len())
            };
            assert_eq!(
                bad.message
                    .contains("placeholder a script or a build tool replaces"),
                ok,
                "{}",
                bad.message
            );
        }
        // A placeholder that YAML reads as text is no error at all.
        let fine = "apiVersion: v1\nkind: Service\nmetadata: {name: \"${NAME}\"}\n";
        assert!(read_documents("ok.yaml", fine)[0].is_ok());
    }

    /// Documents and their first lines as the first version split them: every line walked.
    fn split_documents_line_by_line(text: &str) -> Vec<(usize, String)> {
        let chunk = |range: &str| {
            if range.is_empty() || (range.ends_with('\n') && !range.contains("\r\n")) {
                return range.to_string();
            }
            range.lines().map(|l| format!("{l}\n")).collect()
        };
        let mut docs = Vec::new();
        let (mut start, mut from, mut offset) = (1, 0, 0);
        for (i, raw) in text.split_inclusive('\n').enumerate() {
            let at = offset;
            offset += raw.len();
            let line = match raw.strip_suffix('\n') {
                Some(l) => l.strip_suffix('\r').unwrap_or(l),
                None => raw,
            };
            if line == "---"
                || line.starts_with("--- ")
                || line.starts_with("---\t")
                || line == "..."
            {
                if i > 0 {
                    docs.push((start, chunk(&text[from..at])));
                }
                (start, from) = (i + 2, offset);
                if line.starts_with("--- ") {
                    (start, from) = (i + 1, at + 4);
                }
            }
        }
        docs.push((start, chunk(&text[from.min(text.len())..])));
        docs
    }

    /// Texts of lines made of the pieces document markers and near-markers are made of.
    pub(crate) fn marker_prone_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy;
        let line = proptest::sample::select(vec![
            "---",
            "--- ",
            "--- {a: 1}",
            "---\t",
            "----",
            "-- -",
            "...",
            "....",
            ". ..",
            "a: 1",
            "- x",
            "",
            "\r",
            "---\r",
            "...\r\r",
            "  ---",
            "#---",
            "é: ---",
        ]);
        (proptest::collection::vec(line, 0..24), proptest::bool::ANY).prop_map(
            |(lines, newline_at_end)| {
                let mut text = lines.join("\n");
                if newline_at_end {
                    text.push('\n');
                }
                text
            },
        )
    }

    proptest::proptest! {
        /// Markers found by searching split a file, and number its documents' first lines, as
        /// walking every line did.
        #[test]
        fn documents_found_by_search_are_the_line_by_line_ones(text in marker_prone_text()) {
            let searched: Vec<(usize, String)> = split_documents(&text)
                .into_iter()
                .map(|(line, chunk)| (line, chunk.into_owned()))
                .collect();
            proptest::prop_assert_eq!(searched, split_documents_line_by_line(&text));
        }
    }

    /// Kinds the analysis does not read are only counted while they are read ahead: the
    /// snapshot is the one made from their whole trees, and a file holding nothing else keeps
    /// no text (no finding can point into it).
    #[test]
    fn kinds_the_analysis_does_not_read_are_counted_and_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let crd = |name: &str| {
            format!(
                "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
                 metadata: {{name: {name}}}\nspec:\n  group: x.io\n  names: {{kind: X}}\n"
            )
        };
        std::fs::write(
            dir.path().join("crds.yaml"),
            format!(
                "{}---\n{}---\n{{\"apiVersion\": \"v1\", \"kind\": \"ServiceAccount\", \
                 \"metadata\": {{\"name\": \"j\"}}}}\n",
                crd("a.x.io"),
                crd("b.x.io")
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("mixed.yaml"),
            format!(
                "{}---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: \
                 {{istio-injection: enabled}}\n---\napiVersion: v1\nkind: Service\nmetadata: \
                 {{name: web, namespace: shop}}\nspec: {{ports: [{{port: 80}}]}}\n---\n\
                 apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\n\
                 metadata:\n  name: istio-revision-tag-prod\n  labels: {{istio.io/tag: prod, \
                 istio.io/rev: 1-28}}\n---\napiVersion: admissionregistration.k8s.io/v1\n\
                 kind: MutatingWebhookConfiguration\nmetadata: {{name: other}}\n---\n\
                 apiVersion: v1\nkind: Node\nmetadata: {{name: n}}\nstatus: {{nodeInfo: \
                 {{kubeletVersion: v1.33.2}}}}\n---\napiVersion: v1\nkind: List\nitems:\n\
                 - {{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: \
                 {{name: r}}}}\n---\napiVersion: apiextensions.k8s.io/v1\n\
                 kind: CustomResourceDefinition\nmetadata: {{name: [broken\n",
                crd("c.x.io")
            ),
        )
        .unwrap();
        let paths = [dir.path().to_path_buf()];
        let mut ahead = read_paths_on(&paths, true, Some(1), LARGE_FILE).unwrap();
        let mut later = read_paths(&paths).unwrap();
        let texts: Vec<&str> = ahead.texts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(texts.len(), 1, "{texts:?}");
        assert!(texts[0].ends_with("mixed.yaml"), "{texts:?}");
        let (a, read_ahead) = ahead.build(SnapshotOptions::default()).unwrap();
        let (l, read_later) = later.build(SnapshotOptions::default()).unwrap();
        assert_eq!(read_ahead, read_later);
        assert_eq!(read_ahead, 10);
        assert_eq!(a.skipped, l.skipped);
        assert_eq!(
            a.skipped.keys().collect::<Vec<_>>(),
            [
                "admissionregistration.k8s.io/v1/MutatingWebhookConfiguration",
                "apiextensions.k8s.io/v1/CustomResourceDefinition",
                "rbac.authorization.k8s.io/v1/ClusterRole",
                "v1/ServiceAccount",
            ]
        );
        assert_eq!(
            a.skipped["apiextensions.k8s.io/v1/CustomResourceDefinition"],
            3
        );
        assert_eq!(format!("{:?}", a.namespaces), format!("{:?}", l.namespaces));
        assert_eq!(a.profile.tags, l.profile.tags);
        assert_eq!(a.profile.tags.len(), 1);
        assert_eq!(format!("{:?}", a.profile), format!("{:?}", l.profile));
        assert_eq!(a.services.len(), 1);
        let broken = |input: &Input| format!("{:?}", input.invalid_documents);
        assert_eq!(broken(&ahead), broken(&later));
        assert_eq!(ahead.invalid_documents.len(), 1, "{}", broken(&ahead));
    }

    /// `text` read as the file `name`, alone, as `analyze` reads a file.
    fn read_one(name: &str, text: &str) -> Input {
        let mut input = Input::default();
        read_file(
            Path::new(name),
            name,
            &Arc::new(text.to_string()),
            &mut HashMap::new(),
            &mut input,
            true,
            Some(1),
        );
        input
    }

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
    fn documents_are_their_lines_each_ended_by_a_newline() {
        let texts = [
            "a: 1\n---\nb: 2\n",
            "a: 1\r\n---\r\nb: |\r\n  x\r\n",
            "--- {a: 1}\n...\n--- \nb: 2",
            "---\n---\n",
            "x: \"\\r\"\n",
        ];
        for text in texts {
            // What the split was before it borrowed: the lines, each with `\n`.
            let mut want = Vec::new();
            let (mut current, mut start) = (String::new(), 1);
            for (i, line) in text.lines().enumerate() {
                if line == "---" || line.starts_with("--- ") || line == "..." {
                    if i > 0 {
                        want.push((start, std::mem::take(&mut current)));
                    }
                    start = i + 2;
                    if let Some(rest) = line.strip_prefix("--- ") {
                        current = format!("{rest}\n");
                        start = i + 1;
                    }
                    continue;
                }
                current.push_str(line);
                current.push('\n');
            }
            want.push((start, current));
            let got: Vec<(usize, String)> = split_documents(text)
                .into_iter()
                .map(|(l, c)| (l, c.into_owned()))
                .collect();
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn syntax_errors_name_file_document_and_line() {
        let text = "a: 1\n---\nb: [1, 2\n";
        let err = parse_documents("bad.yaml", text).unwrap_err().to_string();
        assert!(err.contains("bad.yaml (document 1)"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn json_is_read_too() {
        let docs =
            parse_documents("x.json", r#"{"apiVersion":"v1","kind":"List","items":[]}"#).unwrap();
        assert_eq!(docs[0].1["kind"], "List");
    }

    #[test]
    fn template_actions_are_told_from_template_text_in_values() {
        assert!(has_template_actions(
            "{{- if .Values.x }}\nkind: Service\n{{- end }}\n"
        ));
        assert!(has_template_actions(
            "metadata:\n  name: {{ .Release.Name }}\n"
        ));
        assert!(has_template_actions(
            "metadata:\n  labels:\n    {{- include \"x.labels\" . | nindent 4 }}\n"
        ));
        // A comment counts for nothing; an action after a value's comment marker still does.
        assert!(!has_template_actions("# {{ .Values.x }}\nkind: Service\n"));
        assert!(has_template_actions("kind: Service # {{ .Values.x }}\n"));
        assert!(!has_template_actions(
            "annotations:\n  summary: \"{{ $labels.instance }} is down\"\n"
        ));
        // Rendered istiod: the injection templates are text of the injector ConfigMap.
        assert!(!has_template_actions(
            "kind: ConfigMap\ndata:\n  config: |-\n    templates:\n      sidecar: |\n        \
             {{- define \"resources\" }}\n        {{- if .Values.global.proxy.resources }}\n        \
             {{ template \"resources\" . }}\n        {{- end }}\n---\nkind: Service\n"
        ));
    }

    /// Objects are decoded without tracking field paths, and only a failing one again with it:
    /// the message must name the field as before, whether the document was read as the
    /// borrowed tree, as JSON, or was a List's item.
    #[test]
    fn a_field_of_the_wrong_type_is_named_however_the_document_was_read() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  ports:\n  \
                    - port: web\n---\n{\"apiVersion\": \"networking.istio.io/v1\", \"kind\": \
                    \"DestinationRule\", \"metadata\": {\"name\": \"r\"}, \"spec\": {\"host\": \
                    \"a\", \"trafficPolicy\": {\"connectionPool\": {\"tcp\": {\"idleTimeout\": \
                    [1]}}}}}\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: apps/v1\n  \
                    kind: Deployment\n  metadata: {name: d}\n  spec:\n    selector: {}\n    \
                    template:\n      spec:\n        containers: {name: app}\n";
        let messages = |prepare: bool| {
            let mut input = Input::default();
            read_file(
                Path::new("m.yaml"),
                "m.yaml",
                &Arc::new(text.to_string()),
                &mut HashMap::new(),
                &mut input,
                prepare,
                Some(1),
            );
            let (_, read) = input.build(SnapshotOptions::default()).unwrap();
            assert_eq!(read, 0);
            input
                .invalid_documents
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        let prepared = messages(true);
        assert_eq!(prepared, messages(false));
        assert_eq!(prepared.len(), 3, "{prepared:?}");
        for (bad, field) in prepared.iter().zip([
            "field `spec.ports[0].port`",
            "field `spec.trafficPolicy.connectionPool.tcp.idleTimeout`",
            "(document 2, item 0): Deployment d: field `spec.template.spec.containers`",
        ]) {
            assert!(bad.contains(field), "{bad} names {field}");
        }
    }

    #[test]
    fn a_removed_api_version_is_named_as_the_field() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n\
                    apiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n";
        let mut input = read_one("m.yaml", text);
        let (_, read) = input.build(SnapshotOptions::default()).unwrap();
        assert_eq!(read, 1);
        assert_eq!(input.invalid_documents.len(), 1);
        let bad = input.invalid_documents[0].to_string();
        assert_eq!(
            bad,
            "m.yaml:5 (document 1): Deployment d: field `apiVersion`: apps/v1beta1 is not \
             served by Kubernetes any more, so kubectl apply refuses it and meshmedic leaves it \
             out: Deployment is served as apps/v1"
        );
    }

    #[test]
    fn a_workload_of_the_removed_extensions_group_is_named_not_skipped() {
        let text = "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: d}\n\
                    spec: {}\n";
        let mut input = read_one("m.yaml", text);
        let (snapshot, read) = input.build(SnapshotOptions::default()).unwrap();
        assert_eq!(read, 0);
        assert!(snapshot.skipped.is_empty(), "{:?}", snapshot.skipped);
        assert_eq!(
            input.invalid_documents[0].to_string(),
            "m.yaml:1 (document 0): Deployment d: field `apiVersion`: extensions/v1beta1 is not \
             served by Kubernetes any more, so kubectl apply refuses it and meshmedic leaves it \
             out: Deployment is served as apps/v1"
        );
    }

    #[test]
    fn broken_document_is_reported_and_the_rest_is_read() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\n\
                    kind: Service\nmetadata: {name: b\n---\napiVersion: apps/v1\nkind: Deployment\n\
                    metadata: {name: c}\nspec:\n  replicas: many\n  selector: {}\n  template: {}\n";
        let mut input = read_one("m.yaml", text);
        assert_eq!(input.objects.len(), 2);
        assert_eq!(input.invalid_documents.len(), 1);
        assert_eq!(input.invalid_documents[0].document, 1);
        assert!(input.invalid_documents[0].line >= 7);
        let (snapshot, read) = input.build(SnapshotOptions::default()).unwrap();
        assert_eq!(read, 1);
        assert_eq!(snapshot.services.len(), 1);
        let bad = &input.invalid_documents[1];
        assert_eq!((bad.document, bad.line), (2, 13), "{bad}");
        assert!(bad.message.contains("spec.replicas"), "{bad}");
    }

    /// A rendered istiod install (as `helm template`, `istioctl manifest generate` or
    /// kubeflow/manifests' `kustomize build` write it) is read: its injector ConfigMap holds Go
    /// templates as text, and the mesh profile comes from it and from istiod.
    #[test]
    fn a_rendered_istio_install_is_read_not_skipped_as_a_template() {
        let text = r#"apiVersion: v1
kind: ConfigMap
metadata: {name: istio-sidecar-injector, namespace: istio-system}
data:
  config: |-
    policy: enabled
    templates:
      sidecar: |
        {{- define "resources" }}
          {{- if .Values.global.proxy.resources }}
        resources: {{ toYaml .Values.global.proxy.resources | indent 2 }}
          {{- end }}
        {{- end }}
        {{ template "resources" . }}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: istiod, namespace: istio-system}
spec:
  selector: {matchLabels: {app: istiod}}
  template:
    metadata: {labels: {app: istiod}}
    spec:
      containers:
      - {name: discovery, image: "docker.io/istio/pilot:1.29.1"}
"#;
        let mut input = read_one("install.yaml", text);
        assert!(input.skipped_files.is_empty(), "{:?}", input.skipped_files);
        assert_eq!(input.objects.len(), 2);
        let (snapshot, _) = input.build(SnapshotOptions::default()).unwrap();
        assert!(
            snapshot
                .istio_version
                .to_string()
                .starts_with("1.29, istiod image"),
            "{}",
            snapshot.istio_version
        );
    }

    /// A file that is not YAML and names no apiVersion (JSON with comments, as editors and .NET
    /// projects keep) is skipped as not a manifest; a broken manifest is still reported.
    #[test]
    fn unparsable_files_without_an_api_version_are_not_manifests() {
        let input = read_one(
            "settings.json",
            "{\n  // NOTE: read by the analyzer\n  // only once enabled\n  \"settings\": {}\n}\n",
        );
        assert!(input.invalid_documents.is_empty());
        assert_eq!(input.skipped_files.len(), 1);
        assert!(
            input.skipped_files[0].reason.contains("not a manifest"),
            "{:?}",
            input.skipped_files
        );
        let input = read_one(
            "svc.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: a\n",
        );
        assert!(input.skipped_files.is_empty());
        assert_eq!(input.invalid_documents.len(), 1);
    }

    #[test]
    fn the_same_object_twice_is_analysed_once_the_last_one() {
        let a = "apiVersion: v1\nkind: Service\nmetadata: {name: p, namespace: x}\nspec: {ports: [{port: 80}]}\n";
        let b = "apiVersion: v1\nkind: Service\nmetadata: {name: p, namespace: x}\nspec: {ports: [{port: 90}]}\n\
                 ---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g, namespace: x}\n\
                 ---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g, namespace: x}\n";
        let mut input = Input::default();
        let mut charts = HashMap::new();
        read_file(
            Path::new("a.yaml"),
            "a.yaml",
            &Arc::new(a.to_string()),
            &mut charts,
            &mut input,
            true,
            Some(1),
        );
        read_file(
            Path::new("b.yaml"),
            "b.yaml",
            &Arc::new(b.to_string()),
            &mut charts,
            &mut input,
            false,
            Some(1),
        );
        let (snapshot, read) = input.build(SnapshotOptions::default()).unwrap();
        assert_eq!(read, 3);
        assert_eq!(snapshot.services.len(), 1);
        assert_eq!(&*snapshot.services[0].source.file, "b.yaml");
        assert_eq!(input.duplicates.len(), 1, "{:?}", input.duplicates);
        assert!(
            input.duplicates[0].contains("Service x/p"),
            "{:?}",
            input.duplicates
        );
    }

    #[test]
    fn object_keys_are_equal_only_when_kind_namespace_and_name_are() {
        let key = |kind, group, ns, name| ObjectKey::new(kind, group, ns, name).unwrap();
        let service = key("Service", None, "shop", "cart");
        assert_eq!(service.parts(), ("Service", "shop", "cart"));
        assert_eq!(service, key("Service", None, "shop", "cart"));
        // The same letters split elsewhere are another object.
        assert_ne!(service, key("Service", None, "shopc", "art"));
        assert_ne!(service, key("Services", None, "hop", "cart"));
        // A cluster-scoped object's namespace is not part of it.
        let istio = |text: &str| object_key(&crate::snapshot::yaml::from_str(text).unwrap());
        assert_eq!(
            istio("apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {name: default}\n"),
            istio(
                "apiVersion: sailoperator.io/v1\nkind: Istio\nmetadata: {name: default, namespace: istio-system}\n"
            )
        );
        assert_ne!(
            istio("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"),
            istio("apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: b}\n")
        );
        let rule = key("DestinationRule", Some("networking.istio.io"), "", "r");
        assert_eq!(
            rule.parts(),
            ("DestinationRule.networking.istio.io", "", "r")
        );
    }

    #[test]
    fn directories_skip_unreadable_files_and_do_not_follow_symlinked_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("utf16.yaml"), [0xff, 0xfe, b'a', 0, b':', 0]).unwrap();
        std::fs::write(
            root.join("ok.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(root, root.join("loop")).unwrap();
        let input = read_paths(&[root.to_path_buf()]).unwrap();
        assert_eq!(input.objects.len(), 1);
        assert_eq!(input.skipped_files.len(), 1, "{:?}", input.skipped_files);
        assert!(input.skipped_files[0].reason.contains("UTF-8"));
        // Named explicitly, it is an error.
        assert!(read_paths(&[root.join("utf16.yaml")]).is_err());
    }

    /// Files read side by side (and large ones parsed after the others on every thread) give
    /// what one thread gives: the same objects, texts, skipped files and unreadable documents,
    /// in the same order; a named file that cannot be read is the same error.
    #[test]
    fn files_read_side_by_side_give_what_one_thread_gives() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let service = |i: usize| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: a}}\nspec: {{ports: [{{port: 80}}]}}\n"
            )
        };
        for i in 0..40 {
            let sub = root.join(format!("d{}", i % 3));
            std::fs::create_dir_all(&sub).unwrap();
            let text = match i % 8 {
                0 => "replicas: 2\n".to_string(),
                1 => format!("{}---\nkind: [broken\n", service(i)),
                2 => (0..100)
                    .map(|j| service(1000 * i + j))
                    .collect::<Vec<_>>()
                    .join("---\n"),
                3 => "apiVersion: v2\nname: chart\n".to_string(),
                _ => service(i),
            };
            std::fs::write(sub.join(format!("f{i:02}.yaml")), text).unwrap();
        }
        std::fs::write(root.join("utf16.yaml"), [0xff, 0xfe, b'a', 0]).unwrap();
        let paths = [root.to_path_buf()];
        let one = format!(
            "{:?}",
            read_paths_on(&paths, true, Some(1), LARGE_FILE).unwrap()
        );
        for (threads, large) in [(2, LARGE_FILE), (4, LARGE_FILE), (3, 2_000)] {
            let side_by_side = read_paths_on(&paths, true, Some(threads), large).unwrap();
            assert_eq!(
                format!("{side_by_side:?}"),
                one,
                "{threads} threads, large {large}"
            );
        }
        let input = read_paths_on(&paths, true, Some(1), LARGE_FILE).unwrap();
        assert_eq!(
            input.objects.len(),
            5 * 100 + 25,
            "{:?}",
            input.skipped_files
        );
        assert_eq!(input.invalid_documents.len(), 5);
        assert!(one.contains("no Kubernetes objects") && one.contains("UTF-8"));
        let named = [root.join("d0/f00.yaml"), root.join("utf16.yaml")];
        let error = |threads| {
            read_paths_on(&named, true, Some(threads), LARGE_FILE)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(error(1), error(4));
    }

    #[test]
    fn files_without_objects_are_skipped_with_a_reason() {
        for (name, text, reason) in [
            ("values.yaml", "replicas: 2\n", "Helm values"),
            // Seen on a public repository's Istio install directory.
            ("istiod-values-minimum.yaml", "pilot: {}\n", "Helm values"),
            ("cni_values.yaml", "cni: {}\n", "Helm values"),
            ("valuesets.yaml", "a: 1\n", "no Kubernetes objects"),
            ("config.yaml", "a: 1\n---\nb: 2\n", "no Kubernetes objects"),
            ("empty.yaml", "# nothing\n", "empty"),
            ("Chart.yaml", "apiVersion: v2\nname: x\n", "Helm chart"),
        ] {
            let input = read_one(name, text);
            assert!(input.objects.is_empty(), "{name}");
            assert!(
                input.skipped_files[0].reason.contains(reason),
                "{name}: {:?}",
                input.skipped_files
            );
        }
    }

    #[test]
    fn list_items_with_wrong_fields_name_their_line() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  \
                    metadata: {name: a}\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: b}\n  \
                    spec:\n    replicas: many\n";
        let mut input = read_one("l.yaml", text);
        let (snapshot, _) = input.build(SnapshotOptions::default()).unwrap();
        assert_eq!(snapshot.services.len(), 1);
        let bad = &input.invalid_documents[0];
        assert_eq!((bad.item, bad.line), (Some(1), 11), "{bad}");
    }
}
