# frozen_string_literal: true

module VFSReplication
  # Active Record's SQLite adapter, for connections whose database is a `file:...?vfs=replicated`
  # URI: the VFS is registered (and this process's uploader started) before the file is opened,
  # the connection is switched to WAL before its first statement (the VFS replicates WAL commits;
  # Rails before 7.1 leaves the journal mode alone), and the adapter's `timeout:` becomes a busy
  # handler that does not hold the GVL. Rails 6.1 opens in ActiveRecord::Base.sqlite3_connection,
  # 7.1 and later in SQLite3Adapter.new_client; both run configure_connection on the new handle.
  module ActiveRecordIntegration
    def self.replicated?(config)
      database = (config[:database] || config["database"]).to_s
      database.start_with?("file:") && database.match?(/[?&]vfs=replicated(&|\z)/)
    end

    def self.before_open(config)
      warn_ignored_extensions(config)
      return unless replicated?(config)
      if VFSReplication.tool_process?
        raise Error, "#{config[:database]}: vfs_replication's rake tasks run without opening replicated databases; run this outside them"
      end
      VFSReplication.start!
    end

    # database.yml `extensions:` is read by Rails 8's adapter only; earlier Rails ignore it without a
    # word. The gem needs no entry there (it loads the extension itself, earlier than Rails 8 would).
    def self.warn_ignored_extensions(config)
      return if @warned || !config[:extensions] || ::ActiveRecord.version >= Gem::Version.new("8.0")
      @warned = true
      warn "vfs_replication: database.yml `extensions:` is ignored by Active Record #{::ActiveRecord.version} " \
           "(read from Rails 8 on); the vfs_replication gem loads libvfsreplication.so itself, remove the entry"
    end

    # Rails 6.1: ActiveRecord::Base.sqlite3_connection(config).
    module Connection61
      def sqlite3_connection(config)
        ActiveRecordIntegration.before_open(config.symbolize_keys)
        super
      end
    end

    # Rails 7.1+: SQLite3Adapter.new_client(config).
    module NewClient
      def new_client(config)
        ActiveRecordIntegration.before_open(config)
        super
      end
    end

    module Configure
      private

      def configure_connection
        super
        db = instance_variable_defined?(:@raw_connection) ? @raw_connection : @connection
        return unless db.is_a?(::SQLite3::Database)
        timeout = @config[:timeout]
        BusyHandler.install(db, self.class.type_cast_config_to_integer(timeout)) if timeout
        db.execute("PRAGMA journal_mode = WAL") if ActiveRecordIntegration.replicated?(@config)
      end
    end

    def self.install
      require "active_record/connection_adapters/sqlite3_adapter"
      adapter = ::ActiveRecord::ConnectionAdapters::SQLite3Adapter
      if adapter.respond_to?(:new_client)
        adapter.singleton_class.prepend(NewClient)
      else
        ::ActiveRecord::Base.singleton_class.prepend(Connection61)
      end
      adapter.prepend(Configure)
    end
  end
end
