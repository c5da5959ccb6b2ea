//! The cluster flags every command that talks to the API server takes, spelled as kubectl spells
//! them, so `kubectl meshmedic …` (the same binary installed as `kubectl-meshmedic`) reads like any
//! kubectl command.

use std::path::PathBuf;

use kube::Client;

use crate::error::Result;
use crate::snapshot::cluster;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct KubeArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
}

/// A client for the chosen cluster, and the namespace the command works in.
pub struct Connection {
    pub client: Client,
    pub namespace: String,
}

impl KubeArgs {
    pub async fn connect(&self) -> Result<Connection> {
        let (client, context_namespace) = crate::snapshot::cluster::connect(&cluster::Connection {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
        })
        .await?;
        let namespace = self.namespace.clone().unwrap_or(context_namespace);
        Ok(Connection { client, namespace })
    }
}
