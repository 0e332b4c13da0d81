# A Rack app for ForkTests: Puma loads it once in the master (preload_app!), which loads the
# replication extension and with it starts the uploaders; the workers are forked from it and
# write four databases (as a Rails 8 app does: primary, cache, queue, cable) through the
# replicated VFS. GET /hit inserts one row into each database and answers with the worker's pid.
require "sqlite3"

boot = SQLite3::Database.new(":memory:")
boot.enable_load_extension(true)
boot.load_extension(ENV.fetch("VFS_EXTENSION"))

DIR = ENV.fetch("APP_DIR")
NAMES = %w[primary cache queue cable].freeze
FLAGS = SQLite3::Constants::Open::READWRITE | SQLite3::Constants::Open::CREATE | SQLite3::Constants::Open::URI

def open_db(name)
  db = SQLite3::Database.new("file:#{DIR}/#{name}.db?vfs=replicated", flags: FLAGS)
  db.busy_timeout = 10_000
  db
end

# The schema, in the master before it forks; its connections are closed (never carried across a fork).
NAMES.each do |name|
  db = open_db(name)
  db.execute("PRAGMA journal_mode=WAL")
  db.execute("CREATE TABLE IF NOT EXISTS hits(id INTEGER PRIMARY KEY, pid INT, thread TEXT, body BLOB)")
  db.close
end

app = lambda do |env|
  # One connection per database per thread, opened in the worker after the fork.
  dbs = Thread.current[:vfs_dbs]
  if dbs.nil? || Thread.current[:vfs_pid] != Process.pid
    dbs = Thread.current[:vfs_dbs] = NAMES.map { |name| open_db(name) }
    Thread.current[:vfs_pid] = Process.pid
  end
  if env["PATH_INFO"] == "/hit"
    dbs.each do |db|
      db.execute("INSERT INTO hits(pid, thread, body) VALUES (?, ?, randomblob(300))",
                 [Process.pid, Thread.current.object_id.to_s])
    end
  end
  [200, { "content-type" => "text/plain" }, ["#{Process.pid}\n"]]
end

run app
