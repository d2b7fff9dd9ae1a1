//! Files into and out of a container, as tars at its `/`: the files a plan
//! places, binds handed over by copy, `watch`'s sync and `cp`.

use bollard::query_parameters::UploadToContainerOptionsBuilder;
use futures_util::StreamExt;

use super::Docker;
use crate::{
    desired::File,
    engine::{EngineError, Result},
};

impl Docker {
    /// Files as one tar unpacked at `/` (before a container starts).
    pub(super) async fn put_files_archive(&self, id: &str, files: &[File]) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let mut archive = tar::Builder::new(Vec::new());
        for file in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(file.contents.len() as u64);
            header.set_mode(file.mode);
            header.set_mtime(0);
            header.set_cksum();
            let path = file.path.trim_start_matches('/');
            archive.append_data(&mut header, path, file.contents.as_bytes()).map_err(EngineError::api)?;
        }
        self.upload(id, archive.into_inner().map_err(EngineError::api)?).await
    }

    pub(super) async fn upload(&self, id: &str, archive: Vec<u8>) -> Result<()> {
        let options = UploadToContainerOptionsBuilder::default().path("/").build();
        self.client.upload_to_container(id, Some(options), bollard::body_full(archive.into())).await?;
        Ok(())
    }

    /// A tar of `path` in the container, streamed to `out`.
    pub(super) async fn download(&self, id: &str, path: &str, out: &mut (dyn std::io::Write + Send), max_bytes: u64) -> Result<()> {
        let options = bollard::query_parameters::DownloadFromContainerOptionsBuilder::new().path(path).build();
        let mut stream = self.client.download_from_container(id, Some(options));
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            written += chunk.len() as u64;
            if written > max_bytes {
                return Err(EngineError::Api(format!("{path} is over {} MiB: copy less at a time", max_bytes >> 20).into()));
            }
            out.write_all(&chunk).map_err(|e| EngineError::Api(format!("writing what {path} holds: {e}").into()))?;
        }
        Ok(())
    }
}
