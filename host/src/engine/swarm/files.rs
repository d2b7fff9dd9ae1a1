//! A service's planned files as Swarm configs (secrets for those marked
//! secret), labelled with the service they belong to, and removed with it.

use std::collections::HashMap;

use base64::Engine as _;
use bollard::{
    models::{
        ConfigSpec, SecretSpec, TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1, TaskSpecContainerSpecSecrets,
    },
    query_parameters::{ListConfigsOptionsBuilder, ListSecretsOptionsBuilder},
};

use crate::desired::File;
use crate::engine::{
    LABEL_PREFIX, Labels, Result,
    docker::{is_conflict, is_not_found},
};

use super::{
    Swarm,
    spec::{CONFIG_OF, HEALTH, REPLICAS},
};

impl Swarm {
    /// Files become configs (one per file and content: configs cannot
    /// change), attached to the service before it starts. A file that holds
    /// a secret (a password a plugin put in it) becomes a Swarm secret
    /// instead: encrypted in the managers' store, sent only to the nodes
    /// that run the service, kept in memory there, never shown by the API.
    pub(super) async fn put_service_files(&self, id: &str, files: &[File]) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let spec = self.service(id).await?.spec.unwrap_or_default();
        let name = spec.name.clone().unwrap_or_default();
        let mut labels: Labels = spec.labels.unwrap_or_default().into_iter().filter(|(k, _)| k.starts_with(LABEL_PREFIX)).collect();
        labels.retain(|k, _| k != HEALTH && k != REPLICAS);
        labels.insert(CONFIG_OF.into(), name.clone());
        let (mut configs, mut secrets) = (Vec::new(), Vec::new());
        for file in files {
            use sha2::Digest;
            let digest = sha2::Sha256::new().chain_update(&file.path).chain_update([0]).chain_update(&file.contents).finalize();
            let object = format!("{name}-{}", &hex::encode(digest)[..16]);
            let data = base64::engine::general_purpose::STANDARD.encode(&file.contents);
            let target =
                TaskSpecContainerSpecFile1 { name: Some(file.path.clone()), uid: Some("0".into()), gid: Some("0".into()), mode: Some(file.mode) };
            if crate::secrets::holds_secret(&file.contents) {
                let request = SecretSpec { name: Some(object.clone()), labels: Some(labels.clone()), data: Some(data), ..Default::default() };
                let secret_id = match self.client().create_secret(request).await {
                    Ok(made) => made.id,
                    Err(e) if is_conflict(&e) => self.client().inspect_secret(&object).await?.id.unwrap_or_default(),
                    Err(e) => return Err(e.into()),
                };
                secrets.push(TaskSpecContainerSpecSecrets {
                    file: Some(TaskSpecContainerSpecFile { name: target.name, uid: target.uid, gid: target.gid, mode: target.mode }),
                    secret_id: Some(secret_id),
                    secret_name: Some(object),
                });
            } else {
                let request = ConfigSpec { name: Some(object.clone()), labels: Some(labels.clone()), data: Some(data), ..Default::default() };
                let config_id = match self.client().create_config(request).await {
                    Ok(made) => made.id,
                    Err(e) if is_conflict(&e) => self.client().inspect_config(&object).await?.id.unwrap_or_default(),
                    Err(e) => return Err(e.into()),
                };
                configs.push(TaskSpecContainerSpecConfigs {
                    file: Some(target),
                    config_id: Some(config_id),
                    config_name: Some(object),
                    ..Default::default()
                });
            }
        }
        self.update(id, |spec| {
            if let Some(c) = spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut()) {
                c.configs = Some(configs.clone());
                c.secrets = Some(secrets.clone());
            }
            true
        })
        .await
    }

    /// The configs and secrets made of a removed service's files.
    pub(super) async fn remove_files(&self, service: &str) -> Result<()> {
        let filter = HashMap::from([("label".to_string(), vec![format!("{CONFIG_OF}={service}")])]);
        let configs = self.client().list_configs(Some(ListConfigsOptionsBuilder::default().filters(&filter).build())).await?;
        let secrets = self.client().list_secrets(Some(ListSecretsOptionsBuilder::default().filters(&filter).build())).await?;
        for config in configs {
            match self.client().delete_config(config.id.as_deref().unwrap_or_default()).await {
                Err(e) if !is_not_found(&e) => return Err(e.into()),
                _ => {}
            }
        }
        for secret in secrets {
            match self.client().delete_secret(secret.id.as_deref().unwrap_or_default()).await {
                Err(e) if !is_not_found(&e) => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }
}
