# frozen_string_literal: true

require "puma/plugin"
require "vfs_replication/core"

# `plugin :vfs_replication` in config/puma.rb (gated, e.g. `if ENV["VFS_REPLICATION_IN_PUMA"]`).
#
# Replication runs in the processes that write: in single mode the server process itself; in
# cluster mode each worker (the workers share one uploader per database through its lock, and a
# surviving worker takes over from a killed one). A preloading master loads the app but serves
# nothing, so it only registers the VFS; its workers start their uploaders right after the fork.
# On SIGTERM Puma stops the workers (or the single server); each flushes its databases as it exits (within
# VFS_REPLICATION_EXIT_FLUSH_SECONDS, 30 s by default, under Puma's worker_shutdown_timeout).
Puma::Plugin.create do
  def start(launcher)
    options = launcher.options
    if options[:workers].to_i.positive?
      VFSReplication.defer_uploader_to_children!
    else
      # Single mode: Puma re-raises SIGTERM after its graceful stop by default, and a Ruby process
      # killed by its own signal skips the C exit handlers, among them the extension's final
      # flush: the last batch (up to max-delay) would reach the replica only when the database is
      # next opened. Exiting normally (status 0) after the graceful stop lets the flush run.
      options[:raise_exception_on_sigterm] = false
    end
    log = ->(line) { launcher.events.log("* vfs_replication: #{line}") }
    root = options[:directory] || Dir.pwd
    config_path = VFSReplication.config_path
    VFSReplication::Config.load(config_path) # a missing or unreadable config stops the boot here
    # Once booted: a preloaded app's initializer has put the credentials (the bucket) in the
    # environment by then.
    launcher.events.on_booted do
      VFSReplication::Config.load(config_path).databases.each do |db|
        log.call("replicating #{db.display_path(root)} to #{db.replica_url}")
      end
    rescue VFSReplication::Error => e
      log.call(e.message)
    end
  rescue VFSReplication::Error => e
    log.call(e.message)
    raise
  end
end
