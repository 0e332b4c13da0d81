# frozen_string_literal: true

require_relative "test_helper"

class InstallTest < Minitest::Test
  def test_replication_yml_paths_are_relative_to_the_config_folder
    yml = VFSReplication::Install.replication_yml(%w[/app/storage/production.sqlite3 /app/storage/production_cache.sqlite3],
                                                  config_dir: "/app/config")
    assert_includes yml, "  - path: ../storage/production.sqlite3\n"
    assert_includes yml, "url: s3://${VFS_REPLICATION_BUCKET}/production_cache\n"
    assert_includes yml, "r2-account-id: ${VFS_REPLICATION_R2_ACCOUNT_ID}"
    local = VFSReplication::Install.replication_yml(%w[/app/storage/production.sqlite3], config_dir: "/app/config",
                                                                                       replica_dir: "/backups")
    assert_includes local, "url: file:///backups/production\n"
    refute_includes local, "r2-account-id"
  end

  def test_database_yml_opens_the_databases_through_the_vfs
    text = <<~YAML
      production:
        primary:
          <<: *default
          database: storage/production.sqlite3
        cache:
          <<: *default
          database: "storage/production_cache.sqlite3" # the cache
          migrations_paths: db/cache_migrate
        queue:
          database: <%= ENV["QUEUE_DB"] %>
    YAML
    updated, missing = VFSReplication::Install.rewrite_database_yml(text, ["storage/production.sqlite3", "storage/production_cache.sqlite3", "x"])
    assert_includes updated, "    database: file:storage/production.sqlite3?vfs=replicated\n    flags: 70 #"
    assert_includes updated, "    database: file:storage/production_cache.sqlite3?vfs=replicated\n    flags: 70 #"
    assert_includes updated, "migrations_paths: db/cache_migrate"
    assert_equal ["x"], missing
    again, missing = VFSReplication::Install.rewrite_database_yml(updated, ["file:storage/production.sqlite3?vfs=replicated"])
    assert_equal updated, again
    assert_empty missing
  end
end
