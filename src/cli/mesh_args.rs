//! The flags that state what the input does not show about the mesh (Istio and Kubernetes
//! versions, mesh config, a profile file, injection), shared by `analyze` and `fix` so both read
//! a repository the same way.

use std::path::PathBuf;

use crate::error::Result;
use crate::snapshot::SnapshotOptions;

#[derive(clap::Args, Debug, Clone)]
pub struct MeshArgs {
    /// Istio mesh config (the `mesh` key of the `istio` ConfigMap, the ConfigMap itself, the
    /// IstioOperator or Sail operator Istio that sets it, or istiod's Helm values); wins over
    /// those among the manifests.
    #[arg(long, value_name = "FILE")]
    pub mesh_config: Option<PathBuf>,
    /// Istio version whose defaults apply (e.g. 1.23); default: the istiod image's tag in the
    /// input, else an IstioOperator's `spec.tag` or a Sail Istio's `spec.version`, else the
    /// newest known.
    #[arg(long, value_name = "VERSION")]
    pub istio_version: Option<String>,
    /// The oldest kubelet's version (e.g. 1.32): with Istio ≥ 1.27 it decides whether sidecars
    /// are native. Default: the oldest Node in the input, else 1.34.
    #[arg(long, value_name = "VERSION")]
    pub kubernetes_version: Option<String>,
    /// A mesh profile file (YAML: istioVersion, kubernetesVersion, nativeSidecars,
    /// enableNamespacesByDefault, holdApplicationUntilProxyStarts, rewriteAppHTTPProbe,
    /// assumeInjected); wins over the input, loses to the flags.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Treat namespaces that have no Namespace object in the input as `istio-injection=enabled`
    /// (a repository of Deployments whose namespaces are labelled elsewhere).
    #[arg(long)]
    pub assume_injected: bool,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
}

impl MeshArgs {
    /// The snapshot options these flags give; reads `--mesh-config` and `--profile`.
    pub fn options(&self) -> Result<SnapshotOptions> {
        Ok(SnapshotOptions {
            cluster_domain: self.cluster_domain.clone(),
            istio_version: self.istio_version.clone(),
            mesh_config: self
                .mesh_config
                .as_ref()
                .map(super::analyze::read_mesh_config)
                .transpose()?,
            kubernetes_version: self.kubernetes_version.clone(),
            assume_injected: self.assume_injected,
            profile: self
                .profile
                .as_ref()
                .map(super::analyze::read_profile)
                .transpose()?,
        })
    }
}
