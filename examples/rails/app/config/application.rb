require_relative "boot"

require "rails"
require "active_model/railtie"
require "active_record/railtie"
require "action_controller/railtie"

Bundler.require(*Rails.groups)

module Demo
  class Application < Rails::Application
    config.load_defaults 6.1
    config.api_only = true
    config.logger = ActiveSupport::TaggedLogging.new(ActiveSupport::Logger.new($stdout))
    # Behind nginx and probed by address: any Host is fine here.
    config.hosts.clear
  end
end
