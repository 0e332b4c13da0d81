# frozen_string_literal: true

require "fileutils"
require_relative "version"
require_relative "config"
require_relative "settings"
require_relative "extension"
require_relative "busy_handler"
require_relative "tools"

# Continuous SQLite replication for Rails through the VFSReplication loadable extension.
#
# Every process that opens a replicated database needs the `replicated` VFS registered before it
# opens it; the process that ships a database's commits runs an uploader (one per database across
# all processes: the others wait on its lock and take over when it dies). The Railtie does both
# before Active Record connects; the Puma plugin keeps the uploader out of a preloading Puma master,
# which serves no requests, and starts it in each forked worker instead.
module VFSReplication
  class Error < StandardError; end

  autoload :Dashboard, File.expand_path("dashboard", __dir__)
  autoload :TaskArguments, File.expand_path("task_arguments", __dir__)
  autoload :Install, File.expand_path("install", __dir__)

  class << self
    def settings
      @settings ||= Settings.new
    end

    # The initializer's block (bin/rails generate vfs_replication:install writes it).
    def configure
      yield settings
      settings.export_to_environment
      settings
    end

    def config_path
      settings.config_path
    end

    def config
      Config.load(config_path)
    end

    # Registers the VFS and starts this process's uploader (idempotent per process). In a process
    # marked with defer_uploader_to_children! (a preloading Puma master) or tool_process! (a rake
    # task that must not hold a database) only the VFS is registered, or nothing at all.
    def start!
      return if @tool_pid == Process.pid
      Extension.register_vfs
      return if @defer_pid == Process.pid || @started_pid == Process.pid
      # As Rails does for plain database paths (not for file: URIs): the folders must exist.
      config.databases.each { |db| FileUtils.mkdir_p(File.dirname(db.path)) }
      Extension.start_uploader(config_path)
      @started_pid = Process.pid
    end

    def started?
      @started_pid == Process.pid
    end

    # This process forks the processes that write (a Puma cluster master): register the VFS here
    # (for what the app does while it boots) but run uploaders in the children, started right
    # after each fork when the app is already loaded (preload_app!), else when the child loads it.
    def defer_uploader_to_children!
      @defer_pid = Process.pid
    end

    # A process that only runs the CLI tools (restore, status, verify): it must neither open nor
    # replicate a database, or vfs-rebuild would (rightly) find the database in use.
    def tool_process!
      @tool_pid = Process.pid
    end

    def tool_process?
      @tool_pid == Process.pid
    end

    # The Railtie calls this once the app's initializers ran (credentials are in the environment).
    def app_loaded!
      @app_loaded = true
    end

    # Ruby 3.1's fork hook (Process._fork), in the child: a child of a deferring parent whose app
    # is loaded starts its uploader now, before it serves anything.
    def after_fork_in_child(parent_pid)
      return unless @app_loaded && @defer_pid == parent_pid
      start!
    rescue Error => e
      warn "vfs_replication: #{e.message}"
      raise
    end
  end

  # Installed once, when the gem is loaded.
  module ForkHook
    def _fork
      parent = Process.pid
      pid = super
      VFSReplication.after_fork_in_child(parent) if pid.zero?
      pid
    end
  end
  Process.singleton_class.prepend(ForkHook) if Process.respond_to?(:_fork)
end

