# frozen_string_literal: true

require "yaml"

module VFSReplication
  # The parts of config/replication.yml the gem needs (database paths and replica locations, for
  # logs, rake tasks and the dashboard). The extension and the CLI tools parse and validate the
  # whole file; this reader never rejects what they accept.
  class Config
    Database = Struct.new(:path, :replica_url, keyword_init: true) do
      # `storage/production.sqlite3` when the database is under `root`, else its absolute path.
      def display_path(root = Dir.pwd)
        prefix = File.join(File.expand_path(root), "")
        path.start_with?(prefix) ? path.delete_prefix(prefix) : path
      end
    end

    attr_reader :path, :databases

    def self.load(path, env: ENV)
      path = File.expand_path(path)
      raise Error, "replication config #{path} does not exist (bin/rails generate vfs_replication:install writes it)" unless File.file?(path)
      document = begin
        YAML.safe_load(File.read(path), aliases: true) || {}
      rescue Psych::SyntaxError => e
        raise Error, "replication config #{path}: #{e.message}"
      end
      new(path, document, env)
    end

    def initialize(path, document, env)
      @path = path
      raise Error, "replication config #{path}: expected a mapping with 'databases'" unless document.is_a?(Hash)
      defaults = document["defaults"].is_a?(Hash) ? document["defaults"] : {}
      default_replica = defaults["replica"].is_a?(Hash) ? defaults["replica"] : {}
      entries = document["databases"]
      raise Error, "replication config #{path}: 'databases' must be a non-empty list" unless entries.is_a?(Array) && !entries.empty?
      base = File.dirname(path)
      @databases = entries.each_with_index.map do |entry, index|
        entry = { "path" => entry } if entry.is_a?(String)
        unless entry.is_a?(Hash) && entry["path"].is_a?(String) && !entry["path"].empty?
          raise Error, "replication config #{path}: database #{index + 1} has no 'path'"
        end
        replica = default_replica.merge(entry["replica"].is_a?(Hash) ? entry["replica"] : {})
        Database.new(path: absolute(expand(entry["path"], env), base, env),
                     replica_url: display_url(replica, env))
      end
    end

    def database(path, root: Dir.pwd)
      wanted = File.expand_path(path, root)
      @databases.find { |db| db.path == wanted } ||
        raise(Error, "#{path} is not a database of #{@path} (it names: #{@databases.map { |d| d.display_path(root) }.join(", ")})")
    end

    private

    # ${NAME} and $NAME expand from the environment, as the extension expands them; an unset
    # variable stays as written (the extension reports it when it loads the config).
    def expand(value, env)
      value.to_s.gsub(/\$\{(\w+)\}|\$(\w+)/) { env.fetch(Regexp.last_match(1) || Regexp.last_match(2), Regexp.last_match(0)) }
    end

    def absolute(value, base, env)
      value = value.sub(/\A~(?=\/|\z)/) { env.fetch("HOME", "~") }
      File.expand_path(value, base)
    end

    def display_url(replica, env)
      url = expand(replica["url"], env)
      url = url.sub(/\As3:/, "r2:") if replica["r2-account-id"] && url.start_with?("s3:")
      url
    end
  end
end
