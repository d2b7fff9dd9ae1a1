Rails.application.configure do
  # Code is bind-mounted: reload it when a file changes (mtime polling on
  # each request, which works across the bind mount).
  config.cache_classes = false
  config.eager_load = false
  config.file_watcher = ActiveSupport::FileUpdateChecker
  config.consider_all_requests_local = true
  config.active_support.deprecation = :log
  config.active_record.migration_error = :page_load
end
