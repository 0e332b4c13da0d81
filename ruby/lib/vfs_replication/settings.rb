# frozen_string_literal: true

module VFSReplication
  # What the app's initializer sets. Credentials become the environment variables that
  # config/replication.yml names (${VFS_REPLICATION_BUCKET}, ...); a variable already set in the
  # environment wins, so a deploy can override the credentials file.
  class Settings
    ENVIRONMENT = {
      replica_bucket: "VFS_REPLICATION_BUCKET",
      replica_key_id: "VFS_REPLICATION_ACCESS_KEY_ID",
      replica_access_key: "VFS_REPLICATION_SECRET_ACCESS_KEY",
      r2_account_id: "VFS_REPLICATION_R2_ACCOUNT_ID",
      dashboard_username: "VFS_REPLICATION_DASHBOARD_USERNAME",
      dashboard_password: "VFS_REPLICATION_DASHBOARD_PASSWORD",
    }.freeze

    ENVIRONMENT.each_key do |name|
      define_method("#{name}=") { |value| @values[name] = value&.to_s }
      define_method(name) do
        from_env = @env[ENVIRONMENT[name]]
        from_env.nil? || from_env.empty? ? @values[name] : from_env
      end
    end

    # nil: replicate in production only (or as VFS_REPLICATION=1/0 says).
    attr_writer :enabled
    attr_writer :config_path

    def initialize(env: ENV)
      @env = env
      @values = {}
      @enabled = nil
      @config_path = nil
    end

    def enabled?(rails_env = nil)
      return @enabled unless @enabled.nil?
      case @env["VFS_REPLICATION"]
      when "1", "true" then true
      when "0", "false" then false
      else rails_env.to_s == "production"
      end
    end

    # VFS_REPLICATION_CONFIG, else config/replication.yml of the app (or of the current directory).
    def config_path
      return File.expand_path(@config_path) if @config_path
      from_env = @env["VFS_REPLICATION_CONFIG"]
      return File.expand_path(from_env) if from_env && !from_env.empty?
      root = defined?(Rails) && Rails.respond_to?(:root) && Rails.root ? Rails.root.to_s : Dir.pwd
      File.join(root, "config", "replication.yml")
    end

    def export_to_environment
      @values.each do |name, value|
        variable = ENVIRONMENT.fetch(name)
        next if value.nil? || value.empty?
        @env[variable] = value if @env[variable].nil? || @env[variable].empty?
      end
    end
  end
end
