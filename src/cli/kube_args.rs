//! The cluster flags every command that talks to the API server takes, spelled as kubectl spells
//! them, so `kubectl meshmedic …` (the same binary installed as `kubectl-meshmedic`) reads like any
//! kubectl command.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::error::{Error, Result};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct KubeArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster).
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
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        let bad = |flag: &str, message: String| Error::InvalidArgument {
            flag: flag.into(),
            message,
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(path)
                    .map_err(|e| bad("--kubeconfig", format!("{}: {e}", path.display())))?;
                Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| bad("--kubeconfig", format!("{}: {e}", path.display())))?
            }
            None if self.context.is_some() => Config::from_kubeconfig(&options)
                .await
                .map_err(|e| bad("--context", e.to_string()))?,
            // $KUBECONFIG, ~/.kube/config, or the in-cluster service account, as kubectl.
            None => Config::infer()
                .await
                .map_err(|e| Error::Other(format!("no cluster configuration: {e}")))?,
        };
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config)?;
        Ok(Connection { client, namespace })
    }
}
