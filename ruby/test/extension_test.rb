# frozen_string_literal: true

require_relative "test_helper"
require "sqlite3"

# Loads the real libvfsreplication.so (VFS_REPLICATION_EXTENSION, else this repository's
# .build-ext/release build, as scripts/test makes it); skipped when it is not built.
class ExtensionTest < Minitest::Test
  LIBRARY = ENV["VFS_REPLICATION_EXTENSION"] || File.expand_path("../../.build-ext/release/libvfsreplication.so", __dir__)

  def test_a_missing_library_is_a_one_line_error_naming_where_it_looked
    error = assert_raises(VFSReplication::Error) { VFSReplication::Extension.path(env: { "VFS_REPLICATION_EXTENSION" => "/nope/lib.so" }) }
    assert_includes error.message, "/nope/lib.so (VFS_REPLICATION_EXTENSION)"
    error = assert_raises(VFSReplication::Error) { VFSReplication::Extension.path(env: {}) } unless File.exist?(VFSReplication::Extension::SYSTEM_PATH)
    assert_includes error.message, "/usr/local/lib/libvfsreplication.so (system)" if error
  end

  # In a child process (the test process must never register the VFS for the other tests): a
  # deferring parent (a preloading Puma master) registers the VFS only; its forked child starts the
  # uploader and replicates what it writes; its exit flushes to the replica.
  def test_a_deferring_parent_registers_the_vfs_and_its_forked_child_replicates
    skip "no #{LIBRARY} (build the extension)" unless File.file?(LIBRARY)
    Dir.mktmpdir do |dir|
      FileUtils.mkdir_p(File.join(dir, "config"))
      config = File.join(dir, "config/replication.yml")
      File.write(config, <<~YAML)
        defaults:
          max-delay: 100ms
        databases:
          - path: ../storage/app.sqlite3
            replica:
              url: file://#{dir}/replica
      YAML
      script = <<~RUBY
        $LOAD_PATH.unshift #{File.expand_path("../lib", __dir__).dump}
        require "vfs_replication/core"
        require "sqlite3"
        ENV["VFS_REPLICATION_EXTENSION"] = #{LIBRARY.dump}
        VFSReplication.settings.config_path = #{config.dump}
        VFSReplication.defer_uploader_to_children!
        VFSReplication.app_loaded!
        VFSReplication.start!
        abort "parent started an uploader" if VFSReplication.started?
        abort "storage/ made by the parent" if File.exist?(#{File.join(dir, "storage").dump})
        pid = fork do
          abort "child did not start its uploader" unless VFSReplication.started?
          db = SQLite3::Database.new("file:#{dir}/storage/app.sqlite3?vfs=replicated", flags: 70)
          db.execute("PRAGMA journal_mode = WAL")
          db.execute("CREATE TABLE t (x)")
          20.times { |i| db.execute("INSERT INTO t VALUES (?)", [i]) }
          begin
            SQLite3::Database.new("file:#{dir}/other.sqlite3?vfs=replicated", flags: 70).execute("CREATE TABLE u (y)")
            abort "a database the config does not name opened"
          rescue SQLite3::CantOpenException
          end
          db.close
        end
        Process.wait(pid)
        exit($?.exitstatus)
      RUBY
      out = IO.popen(["ruby", "-e", script], err: %i[child out], &:read)
      assert $?.success?, out
      ltx = Dir[File.join(dir, "replica/**/*.ltx")]
      refute_empty ltx, "the child's exit flushed nothing to the replica: #{out}"
    end
  end

  def test_a_tool_process_registers_nothing
    VFSReplication.tool_process!
    VFSReplication.start! # no library needed: it returns before loading anything
    error = assert_raises(VFSReplication::Error) do
      VFSReplication::ActiveRecordIntegration.before_open(database: "file:x.db?vfs=replicated")
    end
    assert_includes error.message, "rake tasks run without opening replicated databases"
  ensure
    VFSReplication.instance_variable_set(:@tool_pid, nil)
  end
end
