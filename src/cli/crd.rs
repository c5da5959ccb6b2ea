//! `meshmedic crd`: prints the Remediation CRD (the same YAML as `crds/remediation.yaml`).

use std::process::ExitCode;

pub fn run() -> ExitCode {
    match crate::model::remediation::crd_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("meshmedic: cannot render the CRD: {e}");
            ExitCode::from(2)
        }
    }
}
