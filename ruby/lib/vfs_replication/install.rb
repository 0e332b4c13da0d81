# frozen_string_literal: true

require "pathname"

module VFSReplication
  # What `bin/rails generate vfs_replication:install` writes, as plain functions (unit-tested
  # without Rails).
  module Install
    # SQLite opens a `file:` name as a URI only with SQLITE_OPEN_URI.
    FLAGS = 70 # SQLITE_OPEN_READWRITE (2) | SQLITE_OPEN_CREATE (4) | SQLITE_OPEN_URI (64)
    URI_PATTERN = /\Afile:([^?]*)(\?.*)?\z/

    module_function

    # The file path of a database.yml `database:` value (a plain path or a file: URI).
    def file_of(database)
      (m = URI_PATTERN.match(database.to_s)) ? m[1] : database.to_s
    end

    def replica_name(path)
      File.basename(path).sub(/\.(sqlite3?|db)\z/, "")
    end

    # config/replication.yml for the given database files (absolute). Paths are written relative
    # to the config file's folder, which is how the extension and the tools resolve them.
    # replica_dir: local directory replicas under it (file://DIR/NAME); else Cloudflare R2.
    def replication_yml(databases, config_dir:, replica_dir: nil)
      config_dir = Pathname(config_dir)
      out = +"# Written by `bin/rails generate vfs_replication:install`. Paths are relative to this file's folder.\n"
      out << "# ${NAME} values come from the environment; config/initializers/vfs_replication.rb fills them\n"
      out << "# from Rails credentials (an environment variable that is already set wins).\n"
      out << "defaults:\n"
      out << "  max-delay: 1s                      # the longest a commit waits before it is shipped\n"
      unless replica_dir
        out << "  replica:\n"
        out << "    r2-account-id: ${VFS_REPLICATION_R2_ACCOUNT_ID}\n"
        out << "    access-key-id: ${VFS_REPLICATION_ACCESS_KEY_ID}\n"
        out << "    secret-access-key: ${VFS_REPLICATION_SECRET_ACCESS_KEY}\n"
      end
      out << "databases:\n"
      databases.each do |path|
        relative = Pathname(path).relative_path_from(config_dir).to_s
        url = if replica_dir
                "file://#{File.join(File.expand_path(replica_dir), replica_name(path))}"
              else
                "s3://${VFS_REPLICATION_BUCKET}/#{replica_name(path)}"
              end
        out << "  - path: #{relative}\n"
        out << "    replica:\n"
        out << "      url: #{url}\n"
      end
      out
    end

    # Rewrites database.yml so each given `database:` value (as written) opens through the
    # `replicated` VFS: `database: file:PATH?vfs=replicated` plus `flags: 70` at the same
    # indentation. Returns [new text, values it could not find (e.g. set with ERB)].
    def rewrite_database_yml(text, values)
      missing = []
      values.each do |value|
        next if value.to_s.start_with?("file:") && value.to_s.include?("vfs=replicated")
        pattern = /^([ \t]*)database:[ \t]*(["']?)#{Regexp.escape(value)}\2[ \t]*(#.*)?$/
        unless text.match?(pattern)
          missing << value
          next
        end
        text = text.gsub(pattern) do
          indent = Regexp.last_match(1)
          "#{indent}database: #{uri(value)}\n#{indent}flags: #{FLAGS} # READWRITE | CREATE | URI: SQLite reads file: names as URIs only with SQLITE_OPEN_URI"
        end
      end
      [text, missing]
    end

    def uri(path)
      "file:#{path}?vfs=replicated"
    end
  end
end
