//! Images: pulled when missing, their digests, built from a context the
//! plan filtered, listed and removed by label.

use std::collections::HashMap;

use bollard::query_parameters::{CreateImageOptionsBuilder, ListImagesOptionsBuilder};
use futures_util::{StreamExt, TryStreamExt};

use crate::desired::BuildSpec;
use crate::engine::{EngineError, ImageInfo, Labels, Result};

use super::{Docker, is_not_found};

impl Docker {
    pub(super) async fn pull_if_missing(&self, image: &str) -> Result<()> {
        if self.client.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        let options = CreateImageOptionsBuilder::default().from_image(image).build();
        self.client
            .create_image(Some(options), None, None)
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| EngineError::Image { image: image.to_string(), source: e.into() })?;
        Ok(())
    }

    pub(super) async fn digest_of(&self, image: &str) -> Result<Option<String>> {
        match self.client.inspect_image(image).await {
            Ok(info) => Ok(info.repo_digests.unwrap_or_default().into_iter().find_map(|d| d.split_once('@').map(|(_, d)| d.to_string())).or(info.id)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn list_images(&self, label: &str) -> Result<Vec<ImageInfo>> {
        let filter = HashMap::from([("label".to_string(), vec![label.to_string()])]);
        let images = self.client.list_images(Some(ListImagesOptionsBuilder::default().filters(&filter).build())).await?;
        Ok(images
            .into_iter()
            .map(|i| ImageInfo {
                id: i.id,
                tags: i.repo_tags.into_iter().filter(|t| t != "<none>:<none>").collect(),
                labels: i.labels,
                size: u64::try_from(i.size).unwrap_or(0),
                created: i.created,
            })
            .collect())
    }

    pub(super) async fn build(
        &self,
        tag: &str,
        spec: &BuildSpec,
        context: &std::path::Path,
        labels: &Labels,
        no_cache: bool,
        progress: &(dyn for<'a> Fn(&'a str) + Sync),
    ) -> Result<()> {
        let mut options = bollard::query_parameters::BuildImageOptionsBuilder::default()
            .nocache(no_cache)
            .dockerfile(spec.dockerfile.as_deref().unwrap_or("Dockerfile"))
            .t(tag)
            // A failed step's container goes too: nothing of a failed build is left.
            .rm(true)
            .forcerm(true)
            .labels(labels)
            .buildargs(&spec.args.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        if let Some(target) = &spec.target {
            options = options.target(target);
        }
        let file = tokio::fs::File::open(context).await.map_err(|e| EngineError::Build { tag: tag.to_string(), message: e.to_string() })?;
        let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(file));
        let mut stream = self.client.build_image(options.build(), None, Some(body));
        while let Some(info) = stream.next().await {
            let info = info.map_err(|e| EngineError::Build { tag: tag.to_string(), message: e.to_string() })?;
            if let Some(detail) = info.error_detail {
                return Err(EngineError::Build { tag: tag.to_string(), message: detail.message.unwrap_or_default() });
            }
            let text = info.stream.unwrap_or_default();
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                progress(line);
            }
        }
        Ok(())
    }
}
