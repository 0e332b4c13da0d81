# frozen_string_literal: true

require "vfs_replication/core"

module VFSReplication
  # The vfs-rebuild command line for `bin/rails vfs_replication:restore -- ...`:
  #   -- --database storage/production.sqlite3 [--timestamp T | --txid N] [--output FILE]
  #   -- --all --timestamp T [--output-dir DIR]   every database of the config to one instant
  # Kept apart from the rake task so that the choices are tested without Rails.
  module RestoreCommand
    OPTIONS = %w[--database --all --timestamp --txid --output --output-dir --force --dry-run].freeze

    # `args`: TaskArguments; `database_path`: the configured path of --database (resolved by the
    # caller against the app's config), ignored with --all.
    def self.arguments(args, config_path:, database_path: nil, known: [])
      if args["--all"]
        raise Error, "give --all or --database, not both" if args["--database"]
        raise Error, "--all restores every database to one time: use --timestamp, not --txid (TXIDs are each database's own)" if args["--txid"]
        raise Error, "--all writes each database to its configured path or into --output-dir DIR, not to one --output file" if args["--output"]

        return ["--config", config_path, "--all", *args.passthrough("--timestamp", "--output-dir", "--force", "--dry-run")]
      end
      raise Error, "--output-dir goes with --all (for one database, use --output FILE)" if args["--output-dir"]
      raise Error, "--database is required, or --all (databases: #{known.join(", ")})" unless args["--database"] && database_path

      ["--config", config_path, "--database", database_path,
       *args.passthrough("--output", "--timestamp", "--txid", "--force", "--dry-run")]
    end
  end
end
