# frozen_string_literal: true

require_relative "test_helper"
require "open3"
require "vfs_replication/task_arguments"
require "vfs_replication/restore_command"

# `bin/rails vfs_replication:restore -- ...`: the vfs-rebuild command line the task runs, and one
# real `--all --timestamp` restore through it with the package's built tools.
class RestoreCommandTest < Minitest::Test
  CONFIG = "/app/config/replication.yml"

  def command(*argv, database_path: nil)
    args = VFSReplication::TaskArguments.parse(["vfs_replication:restore", "--", *argv],
                                               task: "vfs_replication:restore", allowed: VFSReplication::RestoreCommand::OPTIONS)
    VFSReplication::RestoreCommand.arguments(args, config_path: CONFIG, database_path: database_path, known: %w[storage/a.sqlite3])
  end

  def test_all_restores_every_database_to_one_instant
    assert_equal ["--config", CONFIG, "--all", "--timestamp", "2026-12-01T10:00:00Z"],
                 command("--all", "--timestamp", "2026-12-01T10:00:00Z")
    assert_equal ["--config", CONFIG, "--all", "--timestamp", "T", "--output-dir", "/tmp/at", "--force", "--dry-run"],
                 command("--all", "--dry-run", "--output-dir", "/tmp/at", "--force", "--timestamp", "T")
  end

  def test_one_database_as_before
    assert_equal ["--config", CONFIG, "--database", "/app/storage/a.sqlite3", "--output", "/tmp/a", "--txid", "42"],
                 command("--database", "storage/a.sqlite3", "--txid", "42", "--output", "/tmp/a", database_path: "/app/storage/a.sqlite3")
  end

  def test_options_that_do_not_go_together_are_one_line_errors
    {
      %w[--all --database storage/a.sqlite3] => "not both",
      %w[--all --txid 3] => "use --timestamp, not --txid",
      %w[--all --output /tmp/x] => "--output-dir DIR",
      %w[--output-dir /tmp/x --database storage/a.sqlite3] => "--output-dir goes with --all",
      [] => "--database is required, or --all (databases: storage/a.sqlite3)",
    }.each do |argv, message|
      error = assert_raises(VFSReplication::Error) { command(*argv, database_path: "/app/storage/a.sqlite3") }
      assert_includes error.message, message, argv.inspect
    end
  end

  BIN = ENV.fetch("VFS_REPLICATION_BIN", File.expand_path("../../.build/debug", __dir__))

  def sh(*cmd)
    out, err, status = Open3.capture3(*cmd)
    raise "#{cmd.join(" ")}: #{out}#{err}" unless status.success?

    out
  end

  # Two databases written at different times by vfs-bench (through the replicated VFS), then more
  # commits to both after T: the task's command line brings both back to T, each to its own
  # newest restore point before it.
  def test_all_timestamp_restores_each_database_to_its_state_at_that_time
    %w[vfs-bench vfs-rebuild].each { |tool| skip "#{BIN}/#{tool} not built" unless File.executable?(File.join(BIN, tool)) }
    skip "sqlite3 CLI not found" unless system("command -v sqlite3 >/dev/null")
    Dir.mktmpdir do |dir|
      config = File.join(dir, "replication.yml")
      File.write(config, <<~YAML)
        databases:
          - path: primary.sqlite3
            replica:
              url: file://#{dir}/replicas/primary
          - path: queue.sqlite3
            replica:
              url: file://#{dir}/replicas/queue
      YAML
      write = ->(db, n) { sh(File.join(BIN, "vfs-bench"), "write", "--config", config, "--database", File.join(dir, db), "--transactions", n.to_s) }
      write.call("primary.sqlite3", 4)
      sleep 0.2
      write.call("queue.sqlite3", 6)
      sleep 0.2
      t = Time.now.utc.strftime("%Y-%m-%dT%H:%M:%S.%LZ")
      sleep 0.2
      write.call("primary.sqlite3", 5)
      write.call("queue.sqlite3", 5)
      out_dir = File.join(dir, "at")
      Dir.mkdir(out_dir)
      args = VFSReplication::TaskArguments.parse(["vfs_replication:restore", "--", "--all", "--timestamp", t, "--output-dir", out_dir],
                                                  task: "vfs_replication:restore", allowed: VFSReplication::RestoreCommand::OPTIONS)
      ENV["VFS_REPLICATION_BIN"] = BIN
      out, err, code = VFSReplication::Tools.capture("vfs-rebuild", *VFSReplication::RestoreCommand.arguments(args, config_path: config), "--quiet")
      assert_equal 0, code, out + err
      assert_includes out, "plan: 2 databases to time #{t}; skew "
      assert_includes out, "2 restored to time #{t}"
      count = ->(path) { sh("sqlite3", path, "SELECT count(*) FROM bench").strip }
      assert_equal "4", count.call(File.join(out_dir, "primary.sqlite3"))
      assert_equal "6", count.call(File.join(out_dir, "queue.sqlite3"))
      assert_equal "9", count.call(File.join(dir, "primary.sqlite3"))
    ensure
      ENV.delete("VFS_REPLICATION_BIN")
    end
  end
end
