# config/puma.rb of the test app: cluster mode, preloaded, with the plugin gated as the seed gates it.
max_threads_count = ENV.fetch("RAILS_MAX_THREADS") { 5 }
threads max_threads_count, max_threads_count
port ENV.fetch("PORT") { 3000 }
environment ENV.fetch("RAILS_ENV") { "development" }
pidfile ENV.fetch("PIDFILE") { "tmp/pids/server.pid" }
workers ENV.fetch("WEB_CONCURRENCY") { 2 }
preload_app! unless ENV["PUMA_NO_PRELOAD"]
plugin :vfs_replication if ENV["VFS_REPLICATION_IN_PUMA"]
