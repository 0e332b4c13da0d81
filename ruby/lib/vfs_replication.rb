# frozen_string_literal: true

# The gem without Rails (the Puma plugin loads only this part before the app, and Rails) ...
require_relative "vfs_replication/core"
# ... and the Railtie, when Rails is loaded (Bundler.require in config/application.rb).
require_relative "vfs_replication/railtie" if defined?(Rails::Railtie)
