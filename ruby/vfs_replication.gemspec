# frozen_string_literal: true

require_relative "lib/vfs_replication/version"

Gem::Specification.new do |spec|
  spec.name = "vfs_replication"
  spec.version = VFSReplication::VERSION
  spec.summary = "Continuous SQLite replication for Rails: Railtie, install generator, Puma plugin, rake tasks, dashboard"
  spec.description = <<~TEXT
    Loads the VFSReplication SQLite extension (libvfsreplication.so) in every Rails process before
    Active Record connects, opens the configured databases through the `replicated` VFS in WAL mode,
    and adds `bin/rails generate vfs_replication:install`, `plugin :vfs_replication` for Puma,
    restore/status/verify rake tasks and a mountable Rack dashboard.
  TEXT
  spec.authors = ["VFSReplication"]
  spec.license = "MIT"
  spec.required_ruby_version = ">= 3.1"
  # A gem built after copying the extension to lib/vfs_replication/libvfsreplication.so (and the tools
  # to exe/) carries them; see README.md.
  spec.files = Dir["lib/**/*", "exe/*", "README.md"].reject { |f| File.directory?(f) }
  spec.require_paths = ["lib"]
  spec.add_dependency "sqlite3", ">= 1.4"
  spec.add_dependency "railties", ">= 6.1"
  spec.add_dependency "activerecord", ">= 6.1"
end
