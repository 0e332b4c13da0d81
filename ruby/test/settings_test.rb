# frozen_string_literal: true

require_relative "test_helper"

class SettingsTest < Minitest::Test
  def test_credentials_fill_the_environment_but_a_set_variable_wins
    env = { "VFS_REPLICATION_BUCKET" => "from-env", "VFS_REPLICATION_ACCESS_KEY_ID" => "" }
    settings = VFSReplication::Settings.new(env: env)
    settings.replica_bucket = "from-credentials"
    settings.replica_key_id = "key"
    settings.replica_access_key = nil
    settings.dashboard_password = "pw"
    settings.export_to_environment
    assert_equal "from-env", env["VFS_REPLICATION_BUCKET"]
    assert_equal "key", env["VFS_REPLICATION_ACCESS_KEY_ID"]
    refute env.key?("VFS_REPLICATION_SECRET_ACCESS_KEY")
    assert_equal "pw", env["VFS_REPLICATION_DASHBOARD_PASSWORD"]
    assert_equal "from-env", settings.replica_bucket
  end

  def test_enabled_in_production_unless_the_environment_says_otherwise
    assert VFSReplication::Settings.new(env: {}).enabled?("production")
    refute VFSReplication::Settings.new(env: {}).enabled?("development")
    assert VFSReplication::Settings.new(env: { "VFS_REPLICATION" => "1" }).enabled?("development")
    refute VFSReplication::Settings.new(env: { "VFS_REPLICATION" => "0" }).enabled?("production")
  end

  def test_config_path_from_the_environment_or_the_app
    assert_equal "/srv/r.yml", VFSReplication::Settings.new(env: { "VFS_REPLICATION_CONFIG" => "/srv/r.yml" }).config_path
    assert_equal File.join(Dir.pwd, "config/replication.yml"), VFSReplication::Settings.new(env: {}).config_path
  end
end
