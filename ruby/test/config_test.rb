# frozen_string_literal: true

require_relative "test_helper"

class ConfigTest < Minitest::Test
  def with_config(text)
    Dir.mktmpdir do |dir|
      FileUtils.mkdir_p(File.join(dir, "config"))
      path = File.join(dir, "config", "replication.yml")
      File.write(path, text)
      yield path, dir
    end
  end

  def test_paths_resolve_relative_to_the_config_folder_and_r2_urls_display_as_r2
    yml = <<~YAML
      defaults:
        replica:
          r2-account-id: ${VFS_REPLICATION_R2_ACCOUNT_ID}
      databases:
        - path: ../storage/production.sqlite3
          replica:
            url: s3://${VFS_REPLICATION_BUCKET}/production
    YAML
    with_config(yml) do |path, dir|
      config = VFSReplication::Config.load(path, env: { "VFS_REPLICATION_BUCKET" => "bkt" })
      db = config.databases.first
      assert_equal File.join(dir, "storage/production.sqlite3"), db.path
      assert_equal "storage/production.sqlite3", db.display_path(dir)
      assert_equal "r2://bkt/production", db.replica_url
      assert_same db, config.database("storage/production.sqlite3", root: dir)
    end
  end

  def test_an_unset_variable_stays_as_written_and_an_unknown_database_is_named
    yml = "databases:\n  - path: a.db\n    replica:\n      url: s3://$BUCKET/a\n"
    with_config(yml) do |path, dir|
      config = VFSReplication::Config.load(path, env: {})
      assert_equal "s3://$BUCKET/a", config.databases.first.replica_url
      error = assert_raises(VFSReplication::Error) { config.database("b.db", root: dir) }
      assert_includes error.message, "b.db is not a database of"
      assert_includes error.message, "config/a.db"
    end
  end

  def test_a_missing_or_empty_config_is_a_one_line_error_naming_the_file
    error = assert_raises(VFSReplication::Error) { VFSReplication::Config.load("/nonexistent/replication.yml") }
    assert_includes error.message, "/nonexistent/replication.yml does not exist"
    with_config("databases: []\n") do |path, _|
      error = assert_raises(VFSReplication::Error) { VFSReplication::Config.load(path) }
      assert_includes error.message, "'databases' must be a non-empty list"
    end
  end
end
