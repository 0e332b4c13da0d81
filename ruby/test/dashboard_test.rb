# frozen_string_literal: true

require_relative "test_helper"
require "rack/mock"

class DashboardTest < Minitest::Test
  # Stands in for vfs-status --json and vfs-rebuild --list --json.
  class FakeTools
    def status(_config)
      [{ "healthy" => false, "generatedAt" => "2026-12-01T10:00:00Z", "databases" => [
        { "database" => "/app/storage/production.sqlite3", "replica" => "file:///b/p", "healthy" => false,
          "problems" => ["lag 75s exceeds 60s <script>"], "localTXID" => 912, "durableTXID" => 880, "lagSeconds" => 75.0,
          "lagTransactions" => 32, "pendingSpoolBytes" => 1_300_000, "lastUpload" => "2026-12-01T09:58:00Z",
          "requestsToday" => { "PUT" => 5 }, "uploader" => { "running" => true, "pid" => 4242 },
          "costs" => { "estimated" => true, "replicaBytes" => 3_145_728, "replicaFiles" => 12,
                       "priceList" => { "name" => "r2", "asOf" => "2025" },
                       "today" => { "usage" => { "classA" => 5, "classB" => 1 }, "dollars" => { "total" => 0.0000234 } },
                       "month" => { "usage" => { "classA" => 120, "classB" => 30 }, "dollars" => { "total" => 0.25 } },
                       "projectedMonth" => { "usage" => { "classA" => 400, "classB" => 90 }, "dollars" => { "total" => 1.5 } } } },
      ], "costs" => { "today" => 0.0000234, "month" => 0.25, "projectedMonth" => 1.5, "projectedMonthAfterFreeTier" => 0 } }, 1]
    end

    def restore_points(_config, _database)
      { "replica" => "file:///b/p", "files" => 2, "bytes" => 8192, "restore_points" => 2, "levels" => [
        { "level" => 0, "files" => [{ "level" => 0, "max_txid" => "0000000000000390", "timestamp" => "2026-12-01T09:58:00Z", "name" => "a.ltx" }] },
      ] }
    end
  end

  def settings(user: "ops", password: "pw")
    VFSReplication::Settings.new(env: {}).tap do |s|
      s.dashboard_username = user
      s.dashboard_password = password
    end
  end

  def get(app, path = "/", headers = {})
    Rack::MockRequest.new(app).get(path, headers)
  end

  def basic(user, password)
    { "HTTP_AUTHORIZATION" => "Basic #{["#{user}:#{password}"].pack("m0")}" }
  end

  def test_basic_auth_from_the_credentials
    app = VFSReplication::Dashboard.new(settings: settings, config_path: "/app/config/replication.yml", tools: FakeTools.new)
    assert_equal 401, get(app).status
    assert_equal %(Basic realm="replication"), get(app).headers["www-authenticate"]
    assert_equal 401, get(app, "/", basic("ops", "nope")).status
    page = get(app, "/", basic("ops", "pw"))
    assert_equal 200, page.status
    assert_includes page.body, "UNHEALTHY"
    assert_includes page.body, "/app/storage/production.sqlite3"
    assert_includes page.body, "lag 75s exceeds 60s &lt;script&gt;"
    assert_includes page.body, "1.2 MiB"
    assert_includes page.body, "<tr><td>912</td><td>2026-12-01T09:58:00Z</td>" # restore point 0x390, in decimal as vfs-status prints TXIDs
    assert_includes page.body, "pid 4242"
    assert_includes page.body, "today $0.000023 · month $0.25 · projected $1.50/month · A 120 · B 30 this month · stored 3.0 MiB · prices r2 as of 2025"
    assert_includes page.body, "Estimated cost: today $0.000023 · this month $0.25 · projected $1.50/month, $0.00 after the free tiers"
    json = get(app, "/status.json", basic("ops", "pw"))
    assert_equal "application/json", json.headers["content-type"]
    assert_equal 912, JSON.parse(json.body)["databases"][0]["localTXID"]
  end

  def test_forbidden_while_no_credentials_are_set
    app = VFSReplication::Dashboard.new(settings: settings(user: nil, password: nil), tools: FakeTools.new)
    assert_equal 403, get(app).status
    assert_equal 403, get(app, "/", basic("", "")).status
  end

  def test_the_apps_own_auth_decides_instead_of_basic
    admin = ->(request) { request.get_header("HTTP_X_ADMIN") == "1" }
    app = VFSReplication::Dashboard.new(authorize: admin, settings: settings, tools: FakeTools.new)
    assert_equal 403, get(app, "/", basic("ops", "pw")).status
    assert_equal 200, get(app, "/", "HTTP_X_ADMIN" => "1").status
    assert_equal 404, get(app, "/nothing", "HTTP_X_ADMIN" => "1").status
  end
end
