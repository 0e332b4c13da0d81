# frozen_string_literal: true

require "rails/railtie"
require_relative "active_record"

module VFSReplication
  # In every process of an app where replication is enabled (production by default; VFS_REPLICATION=1
  # or 0, or `config.enabled =` in the initializer, decide otherwise): Active Record's SQLite adapter
  # registers the VFS before it opens a replicated database, sets WAL and installs a GVL-free busy
  # handler; once the app's initializers have run (the credentials are in the environment) the
  # process's uploader starts, unless the process is a preloading Puma master or a
  # vfs_replication rake task.
  class Railtie < ::Rails::Railtie
    initializer "vfs_replication.active_record", before: "active_record.initialize_database" do
      if VFSReplication.settings.enabled?(Rails.env)
        ActiveSupport.on_load(:active_record) { VFSReplication::ActiveRecordIntegration.install }
      end
    end

    # Tasks that boot the app without its secrets (a Docker build's assets:precompile) must not
    # need the replica's credentials: they open no database.
    BUILD_TASKS = %w[assets:precompile assets:clean assets:clobber].freeze

    config.after_initialize do
      if defined?(Rake.application) && Rake.application.respond_to?(:top_level_tasks) &&
         !(Rake.application.top_level_tasks & BUILD_TASKS).empty?
        VFSReplication.tool_process!
      end
      if VFSReplication.settings.enabled?(Rails.env)
        VFSReplication.app_loaded!
        VFSReplication.start!
        unless VFSReplication.tool_process?
          Rails.logger&.info("vfs_replication: #{VFSReplication.started? ? "replicating" : "VFS registered (uploaders run in the forked workers)"} with #{VFSReplication.config_path}")
        end
      end
    end

    rake_tasks do
      load File.expand_path("../tasks/vfs_replication.rake", __dir__)
    end
  end
end
