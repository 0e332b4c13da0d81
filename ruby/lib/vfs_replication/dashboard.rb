# frozen_string_literal: true

require "erb"
require "json"
require "rack"
require "rack/request"
require "rack/utils"

module VFSReplication
  # A Rack app showing what `vfs-status` reports (health, TXIDs, lag, spool, last upload and
  # snapshot, requests today, estimated costs) and each database's restore points (`vfs-rebuild --list`). Both
  # tools read the files beside the databases and the replica, so the page shows every process's
  # work, whichever process serves it.
  #
  #   mount VFSReplication::Dashboard, at: "/replication"
  #     HTTP Basic with dashboard_username/dashboard_password (credentials or environment); 403
  #     when they are not set.
  #   mount VFSReplication::Dashboard.new(authorize: ->(request) { ... }), at: "/replication"
  #     the app's own check instead of Basic: 403 unless it returns true.
  #
  # Inside the app's `authenticate` block or routing constraint, the app refuses first.
  class Dashboard
    def self.call(env)
      (@default ||= new).call(env)
    end

    def initialize(authorize: nil, settings: nil, config_path: nil, tools: Tools)
      @authorize = authorize
      @settings = settings
      @config_path = config_path
      @tools = tools
    end

    def call(env)
      request = Rack::Request.new(env)
      refusal = refuse(request)
      return refusal if refusal
      return text(405, "only GET and HEAD\n") unless request.get? || request.head?
      case request.path_info.to_s.sub(%r{/+\z}, "")
      when "", "/index.html" then html_page(request)
      when "/status.json" then status_json
      else text(404, "not found\n")
      end
    rescue Error => e
      text(500, "#{e.message}\n")
    end

    private

    def settings
      @settings || VFSReplication.settings
    end

    def config_path
      @config_path || settings.config_path
    end

    def refuse(request)
      if @authorize
        return nil if @authorize.call(request) == true
        return text(403, "forbidden\n")
      end
      user = settings.dashboard_username.to_s
      password = settings.dashboard_password.to_s
      if user.empty? || password.empty?
        return text(403, "dashboard credentials are not set (dashboard_username and dashboard_password)\n")
      end
      given = basic_credentials(request)
      if given && Rack::Utils.secure_compare(given[0], user) & Rack::Utils.secure_compare(given[1], password)
        return nil
      end
      [401, { "content-type" => "text/plain", "www-authenticate" => %(Basic realm="replication"),
              "cache-control" => "no-store" }, ["authentication required\n"]]
    end

    def basic_credentials(request)
      header = request.get_header("HTTP_AUTHORIZATION").to_s
      return nil unless header.start_with?("Basic ")
      decoded = header.delete_prefix("Basic ").unpack1("m")
      user, password = decoded.split(":", 2)
      password ? [user, password] : nil
    end

    def status_json
      document, = @tools.status(config_path)
      [200, { "content-type" => "application/json", "cache-control" => "no-store" }, [JSON.pretty_generate(document)]]
    end

    def html_page(request)
      document, = @tools.status(config_path)
      points = document.fetch("databases", []).to_h do |db|
        listing = begin
          @tools.restore_points(config_path, db["database"])
        rescue Error => e
          { "error" => e.message }
        end
        [db["database"], listing]
      end
      base = request.script_name.to_s
      body = ERB.new(TEMPLATE, trim_mode: "-").result(binding)
      [200, { "content-type" => "text/html; charset=utf-8", "cache-control" => "no-store" }, [body]]
    end

    def text(status, body)
      [status, { "content-type" => "text/plain", "cache-control" => "no-store" }, [body]]
    end

    def h(value)
      ERB::Util.html_escape(value.to_s)
    end

    def bytes(value)
      value = value.to_i
      return "#{value} B" if value < 1024
      units = %w[KiB MiB GiB TiB]
      size = value.to_f
      unit = units.find { size /= 1024; size < 1024 } || units.last
      format("%.1f %s", size, unit)
    end

    def requests(today)
      return "" unless today.is_a?(Hash)
      %w[PUT GET LIST DELETE].map { |kind| "#{kind} #{today[kind] || 0}" }.join(" ")
    end

    # Dollars as vfs-status prints them: two decimals, or two significant digits below a cent
    # (a cheap database does not read as free).
    def dollars(value)
      value = value.to_f
      return "$0.00" if value.zero?
      return format("$%.2f", value) if value.abs >= 0.01
      decimals = [1 - Math.log10(value.abs).floor, 8].min
      format("$%.#{decimals}f", value)
    end

    # One database's `costs` from status.json: dollars (when it has a price list), requests by
    # billing class, bytes stored and the prices' name and date.
    def costs(costs)
      return "" unless costs.is_a?(Hash)
      parts = []
      if costs["priceList"]
        parts << "today #{dollars(costs.dig("today", "dollars", "total"))}"
        parts << "month #{dollars(costs.dig("month", "dollars", "total"))}"
        parts << "projected #{dollars(costs.dig("projectedMonth", "dollars", "total"))}/month"
      end
      parts << "A #{costs.dig("month", "usage", "classA") || 0} · B #{costs.dig("month", "usage", "classB") || 0} this month"
      parts << "stored #{costs["replicaBytes"] ? bytes(costs["replicaBytes"]) : "?"}"
      list = costs["priceList"]
      parts << (list ? "prices #{list["name"]} as of #{list["asOf"]}" : "no price list")
      parts.join(" · ")
    end

    # The newest restore points first: the files that end one, from every level.
    def newest_points(listing, limit = 10)
      files = listing.fetch("levels", []).flat_map { |level| level.fetch("files", []) }
      files.sort_by { |f| [f["max_txid"].to_s.to_i(16), f["level"].to_i] }.reverse.uniq { |f| f["max_txid"] }.first(limit)
    end

    TEMPLATE = <<~'HTML'
      <!DOCTYPE html>
      <html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
      <title>Replication</title>
      <style>
        body { font: 14px system-ui, sans-serif; margin: 2em; color: #222 }
        table { border-collapse: collapse; margin-bottom: 1.5em } td, th { padding: 3px 10px; text-align: left; border-bottom: 1px solid #ddd }
        .ok { color: #060; font-weight: bold } .bad { color: #b00; font-weight: bold } code { font-size: 13px }
      </style></head>
      <body>
      <h1>Replication <span class="<%= document["healthy"] ? "ok" : "bad" %>"><%= document["healthy"] ? "healthy" : "UNHEALTHY" %></span></h1>
      <p>Generated <%= h document["generatedAt"] %> from <code><%= h config_path %></code>. <a href="<%= h base %>/status.json">status.json</a></p>
      <%- if (total = document["costs"]).is_a?(Hash) -%>
      <p>Estimated cost: today <%= h dollars(total["today"]) %> · this month <%= h dollars(total["month"]) %> · projected <%= h dollars(total["projectedMonth"]) %>/month, <%= h dollars(total["projectedMonthAfterFreeTier"]) %> after the free tiers (if these databases are all the account holds)</p>
      <%- end -%>
      <table>
        <tr><th>Database</th><th>Health</th><th>Local TXID</th><th>Durable TXID</th><th>Lag</th><th>Spool</th><th>Last upload</th><th>Last snapshot</th><th>Requests today</th><th>Costs (estimated)</th><th>Uploader</th></tr>
        <%- document.fetch("databases", []).each do |db| -%>
        <tr>
          <td><code><%= h db["database"] %></code><br><small><%= h db["replica"] %></small></td>
          <td class="<%= db["healthy"] ? "ok" : "bad" %>"><%= db["healthy"] ? "ok" : "UNHEALTHY" %><%- Array(db["problems"]).each do |p| -%><br><small><%= h p %></small><%- end -%></td>
          <td><%= h db["localTXID"] %></td>
          <td><%= h db["durableTXID"] %></td>
          <td><%= db["lagSeconds"] ? format("%.1fs", db["lagSeconds"]) : "" %><%= db["lagTransactions"] ? " / #{db["lagTransactions"]} tx" : "" %></td>
          <td><%= h bytes(db["pendingSpoolBytes"]) %></td>
          <td><%= h db["lastUpload"] %></td>
          <td><%= h db["lastSnapshot"] %></td>
          <td><%= h requests(db["requestsToday"]) %></td>
          <td><%= h costs(db["costs"]) %></td>
          <td><%= db.dig("uploader", "running") ? "pid #{h db.dig("uploader", "pid")}" : "none" %></td>
        </tr>
        <%- end -%>
      </table>
      <h2>Restore points</h2>
      <%- points.each do |database, listing| -%>
        <h3><code><%= h database %></code></h3>
        <%- if listing["error"] -%>
          <p class="bad"><%= h listing["error"] %></p>
        <%- else -%>
          <p><%= h listing["restore_points"] %> restore points in <%= h listing["files"] %> files (<%= h bytes(listing["bytes"]) %>) at <code><%= h listing["replica"] %></code></p>
          <table><tr><th>TXID</th><th>Time</th><th>Level</th><th>File</th></tr>
          <%- newest_points(listing).each do |file| -%>
            <tr><td><%= h file["max_txid"].to_s.to_i(16) %></td><td><%= h file["timestamp"] %></td><td><%= h file["level"] %></td><td><code><%= h file["name"] %></code></td></tr>
          <%- end -%>
          </table>
        <%- end -%>
      <%- end -%>
      </body></html>
    HTML
  end
end
