#!/usr/bin/env bash
# End-to-end test of the gem on Debian's Rails 6.1 and Puma 5.6, as a new user would use it:
# a fresh `rails new` app with the seed's four production databases (primary, cache, queue,
# cable), the gem added by path, the install generator (local directory replicas), migrations,
# Puma in cluster mode with preload_app! and the plugin, writes through HTTP under load with a
# worker killed (kill -9), a timed graceful stop, a restore of every database with the rake task
# compared with its source (.dump), restore_missing after deleting one, status, verify and the
# mounted dashboard with and without the app's auth (a Chromium screenshot where chromium exists).
#
# Needs: the extension (VFS_REPLICATION_EXTENSION, default .build-ext/release/libvfsreplication.so)
# and the tools (VFS_REPLICATION_BIN, default .build/debug) of this package, as scripts/test
# builds them; Debian's ruby-rails, puma, ruby-sqlite3, sqlite3. Offline: Bundler resolves the
# Gemfile against the system gems (`bundle install --local`).
# Prints one line per step; on failure the step, and the Puma log. Exit 0 when everything passed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
gem_dir=$(cd "$here/../.." && pwd)
repo=$(cd "$gem_dir/.." && pwd)

export VFS_REPLICATION_EXTENSION=${VFS_REPLICATION_EXTENSION:-$repo/.build-ext/release/libvfsreplication.so}
export VFS_REPLICATION_BIN=${VFS_REPLICATION_BIN:-$repo/.build/debug}
for f in "$VFS_REPLICATION_EXTENSION" "$VFS_REPLICATION_BIN/vfs-rebuild" "$VFS_REPLICATION_BIN/vfs-status"; do
    [[ -e $f ]] || { echo "rails_app_test: missing $f (build the package first: scripts/test builds both)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/vfs-rails-test.XXXXXX)
app=$work/app
port=$((20000 + RANDOM % 20000))
puma_pid=
failures=0
start_time=$SECONDS

cleanup() {
    if [[ -n $puma_pid ]] && kill -0 "$puma_pid" 2>/dev/null; then kill -KILL "$puma_pid" 2>/dev/null || true; fi
    if [[ ${KEEP:-} == 1 || $failures -gt 0 ]]; then echo "rails_app_test: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

step() { printf '== %s (%ds)\n' "$*" $((SECONDS - start_time)); }
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
die() {
    fail "$*"
    [[ -f $app/log/puma.log ]] && tail -40 "$app/log/puma.log" >&2
    exit 1
}
check() { # check DESCRIPTION COMMAND...: a failure is reported and counted, the test goes on
    local what=$1
    shift
    if "$@"; then echo "ok: $what"; else fail "$what"; fi
}
logged() { # logged LOG COMMAND...: runs the command with its output in LOG, shown when it fails
    local log=$1
    shift
    "$@" >"$log" 2>&1 || { cat "$log"; return 1; }
}

export RAILS_ENV=production SECRET_KEY_BASE=0123456789abcdef0123456789abcdef RAILS_LOG_TO_STDOUT=1
export RAILS_MAX_THREADS=4 PORT=$port PIDFILE=$work/puma.pid

step "rails new (Debian's Rails $(rails --version 2>/dev/null | awk '{print $2}'))"
(cd "$work" && rails new app --minimal --skip-bundle --skip-git --skip-javascript --skip-bootsnap \
    --skip-spring --skip-webpack-install >"$work/rails-new.log" 2>&1) || { cat "$work/rails-new.log"; die "rails new"; }
cd "$app"
cat >Gemfile <<GEMFILE
source "https://rubygems.org"
gem "rails", "~> $(ruby -e 'require "rails/version"; print Rails::VERSION::STRING[/\A\d+\.\d+/]')"
gem "sqlite3"
gem "puma"
gem "vfs_replication", path: "$gem_dir"
GEMFILE
bundle install --local --quiet >"$work/bundle.log" 2>&1 || { cat "$work/bundle.log"; die "bundle install --local"; }

# The development environment watches files with `listen`, which Debian's ruby-rails does not pull in.
sed -i 's/^\( *config.file_watcher = ActiveSupport::EventedFileUpdateChecker\)/# \1/' config/environments/development.rb
cp "$here/app/database.yml" config/database.yml
cp "$here/app/puma.rb" config/puma.rb
cp "$here/app/routes.rb" config/routes.rb
cp "$here/app/writes_controller.rb" app/controllers/writes_controller.rb
# One model per database (Zeitwerk: one constant per file).
model() { # file class body
    printf '%s\n' "$2" >"app/models/$1.rb"
}
model cache_record 'class CacheRecord < ActiveRecord::Base
  self.abstract_class = true
  connects_to database: { writing: :cache }
end'
model queue_record 'class QueueRecord < ActiveRecord::Base
  self.abstract_class = true
  connects_to database: { writing: :queue }
end'
model cable_record 'class CableRecord < ActiveRecord::Base
  self.abstract_class = true
  connects_to database: { writing: :cable }
end'
model post 'class Post < ApplicationRecord; end'
model cache_entry 'class CacheEntry < CacheRecord; end'
model queue_job 'class QueueJob < QueueRecord; end'
model cable_message 'class CableMessage < CableRecord; end'
mkdir -p db/migrate db/cache_migrate db/queue_migrate db/cable_migrate
migration() { # dir class table columns
    cat >"$1/20260101000000_create_$3.rb" <<MIGRATION
class $2 < ActiveRecord::Migration[6.1]
  def change
    create_table :$3 do |t|
      $4
      t.timestamps
    end
  end
end
MIGRATION
}
migration db/migrate CreatePosts posts "t.integer :n; t.text :body"
migration db/cache_migrate CreateCacheEntries cache_entries "t.string :key; t.text :value"
migration db/queue_migrate CreateQueueJobs queue_jobs "t.integer :n; t.text :payload"
migration db/cable_migrate CreateCableMessages cable_messages "t.string :channel; t.text :payload"

# Rails credentials: the dashboard's Basic credentials (the replicas here are local directories).
cat >"$work/editor" <<'EDITOR'
#!/bin/sh
cat >"$1" <<YAML
secret_key_base: 0123456789abcdef0123456789abcdef
vfs_replication:
  dashboard_username: ops
  dashboard_password: s3cret
YAML
EDITOR
chmod +x "$work/editor"
EDITOR=$work/editor bin/rails credentials:edit >"$work/credentials.log" 2>&1 || { cat "$work/credentials.log"; die "credentials:edit"; }

step "bin/rails generate vfs_replication:install --replica-dir $work/replicas"
RAILS_ENV=development bin/rails generate vfs_replication:install --replica-dir "$work/replicas" --database-yml update \
    >"$work/generate.log" 2>&1 || { cat "$work/generate.log"; die "generator"; }
check "replication.yml names the four databases relative to config/" \
    test "$(grep -c '  - path: ../storage/production' config/replication.yml)" = 4
check "database.yml opens them through the VFS" \
    test "$(grep -c 'database: file:storage/production.*?vfs=replicated' config/database.yml)" = 4
check "the initializer maps the credentials" grep -q 'credentials\[:dashboard_password\]' config/initializers/vfs_replication.rb
# Run again over a changed file: it asks, and "n" keeps the file.
echo "# the owner's change" >>config/replication.yml
printf 'n\nn\nn\n' | RAILS_ENV=development bin/rails generate vfs_replication:install --replica-dir "$work/replicas" \
    --database-yml show >"$work/generate2.log" 2>&1 || { cat "$work/generate2.log"; die "generator, second run"; }
check "a second run asks before overwriting and keeps the file" \
    bash -c "grep -q 'conflict.*config/replication.yml' '$work/generate2.log' && grep -q \"the owner's change\" config/replication.yml"

step "db:create db:migrate (four databases, through the VFS)"
bin/rails db:create db:migrate >"$work/migrate.log" 2>&1 || { cat "$work/migrate.log"; die "db:create db:migrate"; }
for db in production production_cache production_queue production_cable; do
    check "$db is WAL" test "$(sqlite3 "storage/$db.sqlite3" 'PRAGMA journal_mode')" = wal
done

step "a config naming unset credentials: the app refuses to boot with a clear error; assets:precompile needs none"
ruby -e 'require "vfs_replication/install"; print VFSReplication::Install.replication_yml(%w[storage/production.sqlite3].map { |f| File.expand_path(f) }, config_dir: File.expand_path("config"))' \
    -I"$gem_dir/lib" >"$work/r2.yml"
sed -i 's|path: ../storage|path: '"$app"'/storage|' "$work/r2.yml"
check "runner fails naming the unset variable" bash -c "! env -u VFS_REPLICATION_BUCKET VFS_REPLICATION_CONFIG='$work/r2.yml' bin/rails runner 'Post.count' >'$work/r2.log' 2>&1 && grep -q 'VFS_REPLICATION_' '$work/r2.log'"
grep -m1 -o 'cannot start replication.*' "$work/r2.log" || true
check "assets:precompile boots without the replica's credentials" \
    logged "$work/precompile.log" env VFS_REPLICATION_CONFIG="$work/r2.yml" bin/rails assets:precompile

start_puma() {
    VFS_REPLICATION_IN_PUMA=1 bundle exec puma -C config/puma.rb >>log/puma.log 2>&1 &
    puma_pid=$!
    for _ in $(seq 1 600); do
        curl -fsS "http://127.0.0.1:$port/writes" >/dev/null 2>&1 && return 0
        kill -0 "$puma_pid" 2>/dev/null || die "puma exited while booting"
        sleep 0.1
    done
    die "puma did not answer within 60 s"
}

stop_seconds=
stop_puma() { # sets stop_seconds: how long the graceful stop took (SIGTERM to the master's exit)
    local t0 t1
    t0=$(date +%s.%N)
    kill -TERM "$puma_pid"
    wait "$puma_pid" || true
    t1=$(date +%s.%N)
    puma_pid=
    stop_seconds=$(ruby -e "printf('%.2f', $t1 - $t0)")
}

step "puma: cluster mode, 2 workers, preload_app!, plugin :vfs_replication"
mkdir -p log
start_puma
for db in production production_cache production_queue production_cable; do
    check "puma logged 'replicating storage/$db.sqlite3 to file://...'" \
        grep -q "vfs_replication: replicating storage/$db.sqlite3 to file://$work/replicas/$db" log/puma.log
done

step "writes through HTTP under load, one worker killed with kill -9"
ruby "$here/app/load.rb" "$port" 300 4 "$puma_pid" || fail "load"
curl -fsS "http://127.0.0.1:$port/writes" || true

step "bin/rails vfs_replication:verify (while Puma runs)"
check "verify: every replica rebuilds to its live database" logged "$work/verify.log" bin/rails vfs_replication:verify
grep -i 'verif' "$work/verify.log" | head -4 || true

step "graceful stop (SIGTERM to the master)"
stop_puma
echo "graceful stop took ${stop_seconds}s"
check "graceful stop under 2 s (took ${stop_seconds}s)" ruby -e "exit($stop_seconds < 2)"

step "bin/rails vfs_replication:restore -- --database ... --output ... for every database, compared with .dump"
for db in production production_cache production_queue production_cable; do
    rm -f "$work/$db.restored"
    if bin/rails vfs_replication:restore -- --database "storage/$db.sqlite3" --output "$work/$db.restored" \
        >"$work/restore-$db.log" 2>&1; then
        sqlite3 "storage/$db.sqlite3" .dump >"$work/$db.source.sql"
        sqlite3 "$work/$db.restored" .dump >"$work/$db.restored.sql"
        check "restored $db equals its source ($(grep -c '^INSERT' "$work/$db.source.sql") rows)" \
            cmp -s "$work/$db.source.sql" "$work/$db.restored.sql"
    else
        cat "$work/restore-$db.log"
        fail "restore $db"
    fi
done
# Point in time: the newest TXID and a timestamp after the stop both give the final state.
txid=$("$VFS_REPLICATION_BIN/vfs-status" --config config/replication.yml --json |
    ruby -rjson -e 'puts JSON.parse(STDIN.read)["databases"].find { |d| d["database"].end_with?("/production.sqlite3") }["durableTXID"]')
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for point in "--txid $txid" "--timestamp $now"; do
    rm -f "$work/pit.sqlite3"
    # shellcheck disable=SC2086 # $point is an option and its value
    if logged "$work/restore-pit.log" bin/rails vfs_replication:restore -- --database storage/production.sqlite3 $point --output "$work/pit.sqlite3"; then
        check "restore $point equals the source" cmp -s "$work/production.source.sql" <(sqlite3 "$work/pit.sqlite3" .dump)
    else
        fail "restore $point"
    fi
done
# Every database to one instant (after the stop: each at its final state), into one folder.
mkdir -p "$work/at"
if logged "$work/restore-all.log" bin/rails vfs_replication:restore -- --all --timestamp "$now" --output-dir "$work/at"; then
    check "restore --all --timestamp reports the skew" grep -q "4 restored to time .*; skew " "$work/restore-all.log"
    for db in production production_cache production_queue production_cable; do
        check "restore --all --timestamp: $db equals its source" \
            cmp -s "$work/$db.source.sql" <(sqlite3 "$work/at/$db.sqlite3" .dump)
    done
else
    fail "restore --all --timestamp"
fi
check "restore refuses an existing output without --force" \
    bash -c "! bin/rails vfs_replication:restore -- --database storage/production.sqlite3 --output '$work/production.restored' >/dev/null 2>&1"
check "restore names an unknown database" \
    bash -c "bin/rails vfs_replication:restore -- --database storage/nope.sqlite3 2>&1 | grep -q 'is not a database of'"

step "delete storage/production_cache.sqlite3, bin/rails vfs_replication:restore_missing"
cp storage/production_cache.sqlite3 "$work/cache-before.sqlite3"
rm -rf storage/production_cache.sqlite3 storage/production_cache.sqlite3-wal storage/production_cache.sqlite3-shm \
    storage/production_cache.sqlite3-vfsrepl
if bin/rails vfs_replication:restore_missing >"$work/restore-missing.log" 2>&1; then
    check "restore_missing brought the cache back" \
        cmp -s <(sqlite3 "$work/cache-before.sqlite3" .dump) <(sqlite3 storage/production_cache.sqlite3 .dump)
else
    cat "$work/restore-missing.log"
    fail "restore_missing"
fi

step "bin/rails vfs_replication:status"
check "status exits 0 (healthy) after the restore" logged "$work/status.log" bin/rails vfs_replication:status
cat "$work/status.log"

step "dashboard, with and without the app's auth"
start_puma
http_code() { curl -s -o "$work/page.html" -w '%{http_code}' "$@"; }
check "Basic: no credentials -> 401" test "$(http_code "http://127.0.0.1:$port/replication")" = 401
check "Basic: wrong password -> 401" test "$(http_code -u ops:wrong "http://127.0.0.1:$port/replication")" = 401
check "Basic: the credentials' user -> 200" test "$(http_code -u ops:s3cret "http://127.0.0.1:$port/replication")" = 200
check "the page shows the four databases and their restore points" \
    bash -c "grep -c 'storage/production' '$work/page.html' | grep -qv '^[0-3]$' && grep -q 'Restore points' '$work/page.html' && grep -q 'restore points in' '$work/page.html'"
check "status.json is vfs-status --json" \
    bash -c "curl -fsS -u ops:s3cret http://127.0.0.1:$port/replication/status.json | ruby -rjson -e 'exit(JSON.parse(STDIN.read)[\"databases\"].size == 4)'"
check "app auth refuses -> 403" test "$(http_code "http://127.0.0.1:$port/ops/replication")" = 403
check "app auth admits -> 200" test "$(http_code -H 'X-Admin-Token: let-me-in' "http://127.0.0.1:$port/ops/replication")" = 200
check "inside the app's routing constraint, refused -> not served" \
    test "$(http_code "http://127.0.0.1:$port/admin/replication")" != 200
check "inside the app's routing constraint, admitted -> 200" \
    test "$(http_code -H 'X-Admin-Token: let-me-in' "http://127.0.0.1:$port/admin/replication")" = 200
chromium=$(command -v chromium || command -v chromium-browser || true)
if [[ -n $chromium ]]; then
    shot=${VFS_RAILS_SCREENSHOT:-$work/dashboard.png}
    "$chromium" --headless --no-sandbox --disable-gpu --window-size=1400,900 --screenshot="$shot" \
        "http://ops:s3cret@127.0.0.1:$port/replication" >/dev/null 2>&1 || true
    check "chromium screenshot of the dashboard ($shot)" test -s "$shot"
else
    echo "skip: no chromium here, no screenshot"
fi
check "restore refuses a live database, even with --force" \
    bash -c "! bin/rails vfs_replication:restore -- --database storage/production.sqlite3 --force >'$work/live.log' 2>&1 && grep -q 'in use' '$work/live.log'"
stop_puma
echo "second graceful stop (workers that only served the dashboard) took ${stop_seconds}s"

# The other Puma modes: single (no workers), and cluster without preload_app!.
for mode in single no-preload; do
    step "puma $mode mode: writes, stop, restore equals the source"
    if [[ $mode == single ]]; then export WEB_CONCURRENCY=0; else export WEB_CONCURRENCY=2 PUMA_NO_PRELOAD=1; fi
    start_puma
    for n in $(seq 1001 1030); do curl -fsS -X POST "http://127.0.0.1:$port/writes?n=$n" >/dev/null || fail "$mode write $n"; done
    stop_puma
    echo "$mode: graceful stop took ${stop_seconds}s"
    for db in production production_cable; do
        rm -f "$work/$db.$mode"
        if logged "$work/restore-$mode.log" bin/rails vfs_replication:restore -- --database "storage/$db.sqlite3" --output "$work/$db.$mode"; then
            check "$mode: restored $db equals its source" cmp -s <(sqlite3 "storage/$db.sqlite3" .dump) <(sqlite3 "$work/$db.$mode" .dump)
        else
            fail "$mode: restore $db"
        fi
    done
    unset WEB_CONCURRENCY PUMA_NO_PRELOAD
done

step "done: $failures failure(s)"
((failures == 0))
