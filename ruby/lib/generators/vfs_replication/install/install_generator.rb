# frozen_string_literal: true

require "rails/generators"
require "vfs_replication"
require "vfs_replication/install"

module VfsReplication
  module Generators
    # bin/rails generate vfs_replication:install [--replica-dir DIR] [--database-yml ask|update|show]
    class InstallGenerator < ::Rails::Generators::Base
      source_root File.expand_path("templates", __dir__)
      desc "Writes config/replication.yml for the production SQLite databases of config/database.yml, " \
           "an initializer mapping Rails credentials, and opens those databases through the replicated VFS."

      class_option :replica_dir, type: :string, desc: "Replicate to local directories under DIR instead of Cloudflare R2"
      class_option :database_yml, type: :string, default: "ask", enum: %w[ask update show],
                                  desc: "Change config/database.yml (ask), change it without asking (update), or only show the change (show)"

      def replication_config
        if databases.empty?
          raise Thor::Error, "config/database.yml has no sqlite3 database in its production environment"
        end
        files = databases.map { |db| File.expand_path(VFSReplication::Install.file_of(db.database), destination_root) }
        create_file "config/replication.yml",
                    VFSReplication::Install.replication_yml(files, config_dir: File.join(destination_root, "config"),
                                                                   replica_dir: options[:replica_dir])
      end

      def initializer
        template "initializer.rb.tt", "config/initializers/vfs_replication.rb"
      end

      def database_yml
        path = File.join(destination_root, "config/database.yml")
        text = File.read(path)
        values = databases.map(&:database)
        updated, missing = VFSReplication::Install.rewrite_database_yml(text, values)
        if updated == text && missing.empty?
          say_status :identical, "config/database.yml (already opens the databases through the replicated VFS)", :blue
          return
        end
        change = values.map { |v| "  database: #{VFSReplication::Install.uri(VFSReplication::Install.file_of(v))}\n  flags: #{VFSReplication::Install::FLAGS}" }.join("\n")
        missing.each do |value|
          say "config/database.yml: cannot find `database: #{value}`; set it by hand (see below)", :red
        end
        if updated != text && (options[:database_yml] == "update" ||
                               (options[:database_yml] == "ask" && yes?("Open the production databases through the replicated VFS in config/database.yml? [y/N]")))
          File.write(path, updated)
          say_status :update, "config/database.yml"
        else
          say "In config/database.yml, open each production database through the replicated VFS:\n#{change}"
        end
      end

      def next_steps
        say <<~TEXT

          Next:
            bin/rails credentials:edit             # vfs_replication: replica_bucket, replica_key_id, ...
            config/puma.rb:                         plugin :vfs_replication if ENV["VFS_REPLICATION_IN_PUMA"]
            config/routes.rb:                       mount VFSReplication::Dashboard, at: "/replication"
            deploy, before the app boots:           bin/rails vfs_replication:restore_missing
            check:                                  bin/rails vfs_replication:status
        TEXT
      end

      private

      def databases
        @databases ||= begin
          configs = ActiveRecord::Base.configurations.configs_for(env_name: "production")
          configs.select { |c| c.adapter.to_s.start_with?("sqlite3") && c.database.to_s != ":memory:" }
        end
      end
    end
  end
end
