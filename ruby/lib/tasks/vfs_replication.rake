# frozen_string_literal: true

require "vfs_replication"
require "vfs_replication/task_arguments"
require "vfs_replication/restore_command"

# The tasks run the CLI tools (vfs-rebuild, vfs-status) with config/replication.yml. They load the
# app (the initializer puts the credentials in the environment) as a tool process: nothing in it
# opens or replicates a database, so vfs-rebuild can tell a live database from a stopped one.
namespace :vfs_replication do
  task :tool_process do
    VFSReplication.tool_process!
  end

  run = lambda do |task_name, allowed, &body|
    args = VFSReplication::TaskArguments.parse(ARGV, task: task_name, allowed: allowed)
    code = body.call(args, VFSReplication.config_path)
    exit(code)
  rescue VFSReplication::Error => e
    warn "#{task_name}: #{e.message}"
    exit(64)
  end

  desc "Restore a database from its replica: -- --database storage/production.sqlite3 [--timestamp T | --txid N] [--output FILE] [--force]; " \
       "or every database to one instant: -- --all --timestamp T [--output-dir DIR] [--dry-run] [--force]"
  task restore: %i[tool_process environment] do
    run.call("vfs_replication:restore", VFSReplication::RestoreCommand::OPTIONS) do |args, config|
      database = VFSReplication.config.database(args["--database"], root: Rails.root).path if args["--database"] && !args["--all"]
      known = VFSReplication.config.databases.map { |d| d.display_path(Rails.root) }
      VFSReplication::Tools.run("vfs-rebuild", *VFSReplication::RestoreCommand.arguments(args, config_path: config, database_path: database, known: known))
    end
  end

  desc "Restore every configured database whose file is missing (run before the app boots on a new server)"
  task restore_missing: %i[tool_process environment] do
    run.call("vfs_replication:restore_missing", []) do |_args, config|
      VFSReplication::Tools.run("vfs-rebuild", "--config", config, "--all", "--if-db-not-exists", "--if-replica-exists")
    end
  end

  desc "Replication status of every database; exits 1 when one is unhealthy: [-- --json] [--max-lag SECONDS]"
  task status: %i[tool_process environment] do
    run.call("vfs_replication:status", %w[--json --max-lag]) do |args, config|
      VFSReplication::Tools.run("vfs-status", "--config", config, *args.passthrough("--json", "--max-lag"))
    end
  end

  desc "Prove each replica rebuilds to its live database, writing nothing to it: [-- --database storage/production.sqlite3]"
  task verify: %i[tool_process environment] do
    run.call("vfs_replication:verify", %w[--database]) do |args, config|
      databases = if args["--database"]
                    [VFSReplication.config.database(args["--database"], root: Rails.root)]
                  else
                    VFSReplication.config.databases.select { |d| File.exist?(d.path) }
                  end
      databases.map { |db| VFSReplication::Tools.run("vfs-status", "--config", config, "--verify", db.path) }.max || 0
    end
  end
end
