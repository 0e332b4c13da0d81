# frozen_string_literal: true

require "json"
require "open3"

module VFSReplication
  # The package's CLI tools (vfs-rebuild, vfs-status): restore, status and verification are
  # theirs; the rake tasks and the dashboard run them. Found in VFS_REPLICATION_BIN (a folder),
  # then the gem's exe/ (a gem built with the tools), then PATH, then /usr/local/bin.
  module Tools
    class << self
      def path(tool, env: ENV)
        places = []
        places << [env["VFS_REPLICATION_BIN"], "VFS_REPLICATION_BIN"] if env["VFS_REPLICATION_BIN"] && !env["VFS_REPLICATION_BIN"].empty?
        places << [File.expand_path("../../exe", __dir__), "inside the gem"]
        env.fetch("PATH", "").split(File::PATH_SEPARATOR).each { |dir| places << [dir, "PATH"] unless dir.empty? }
        places << ["/usr/local/bin", "system"]
        places.each do |(dir, _)|
          candidate = File.join(dir, tool)
          return candidate if File.file?(candidate) && File.executable?(candidate)
        end
        raise Error, "cannot find #{tool}: not in VFS_REPLICATION_BIN, the gem, PATH or /usr/local/bin; set VFS_REPLICATION_BIN to the folder holding it"
      end

      # Runs a tool with its output going to ours; returns its exit status.
      def run(tool, *args)
        system(path(tool), *args) ? 0 : ($?.exitstatus || 1)
      end

      # Runs a tool and returns [stdout, stderr, exit status].
      def capture(tool, *args)
        out, err, status = Open3.capture3(path(tool), *args)
        [out, err, status.exitstatus || 1]
      end

      # `vfs-status --json`: the document and the exit status (1 when a database is unhealthy).
      def status(config_path)
        out, err, code = capture("vfs-status", "--config", config_path, "--json")
        raise Error, "vfs-status failed (exit #{code}): #{err.strip}" if out.strip.empty?
        [JSON.parse(out), code]
      end

      # `vfs-rebuild --list --json` for one database: its restore points.
      def restore_points(config_path, database)
        out, err, code = capture("vfs-rebuild", "--config", config_path, "--database", database, "--list", "--json", "--quiet")
        raise Error, "vfs-rebuild --list failed for #{database} (exit #{code}): #{err.strip}" unless code.zero?
        JSON.parse(out)
      end
    end
  end
end
