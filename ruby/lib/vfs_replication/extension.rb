# frozen_string_literal: true

module VFSReplication
  # Finds and loads libvfsreplication.so. Loading it into any connection registers the
  # `replicated` VFS for the whole process (the library stays loaded); `vfs_replication_config`
  # then starts the process's uploader. Both are idempotent in the extension.
  module Extension
    LIBRARY = "libvfsreplication.so"
    SYSTEM_PATH = File.join("/usr/local/lib", LIBRARY)

    class << self
      # VFS_REPLICATION_EXTENSION, else the copy inside the gem, else /usr/local/lib.
      def path(env: ENV)
        list = candidates(env)
        found = list.find { |(_, candidate)| File.file?(candidate) }
        return found[1] if found
        tried = list.map { |(where, candidate)| "#{candidate} (#{where})" }.join(", ")
        raise Error, "cannot find #{LIBRARY}: tried #{tried}; set VFS_REPLICATION_EXTENSION to its path"
      end

      def candidates(env = ENV)
        list = []
        explicit = env["VFS_REPLICATION_EXTENSION"]
        return [["VFS_REPLICATION_EXTENSION", explicit]] if explicit && !explicit.empty?
        list << ["inside the gem", File.expand_path(LIBRARY, __dir__)]
        list << ["system", SYSTEM_PATH]
        list
      end

      def register_vfs
        with_extension { nil }
      end

      def start_uploader(config_path)
        raise Error, "replication config #{config_path} does not exist (bin/rails generate vfs_replication:install writes it)" unless File.file?(config_path)
        with_extension do |db|
          db.execute("SELECT vfs_replication_config(?)", [config_path])
        rescue SQLite3::Exception => e
          raise Error, "cannot start replication with #{config_path}: #{e.message}"
        end
      end

      private

      # Loads the extension into a private in-memory connection. The extension starts an uploader
      # by itself when VFS_REPLICATION_CONFIG is set; the gem starts it explicitly instead (not in a
      # Puma master, not in a rake task), so the variable is hidden while the library loads.
      def with_extension
        require "sqlite3"
        library = path
        db = SQLite3::Database.new(":memory:")
        hidden = ENV.delete("VFS_REPLICATION_CONFIG")
        begin
          db.enable_load_extension(true)
          db.load_extension(library)
        rescue SQLite3::Exception, NoMethodError => e
          raise Error, "cannot load #{library}: #{e.message}"
        ensure
          ENV["VFS_REPLICATION_CONFIG"] = hidden if hidden
        end
        yield db
      ensure
        db&.close
      end
    end
  end
end
