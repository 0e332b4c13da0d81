# Writes through HTTP with a few threads; kills one Puma worker (kill -9) part way.
# usage: ruby load.rb PORT REQUESTS THREADS MASTER_PID
require "net/http"
port, total, threads, master = ARGV.map(&:to_i)
next_n = 0
ok = 0
failed = 0
lock = Mutex.new
killed = nil
workers = Thread.new do
  sleep 0.05 until lock.synchronize { ok } >= total / 3
  pid = `pgrep -P #{master}`.split.first.to_i
  Process.kill("KILL", pid) if pid.positive?
  killed = pid
end
(1..threads).map do
  Thread.new do
    http = nil
    loop do
      n = lock.synchronize { next_n += 1 }
      break if n > total
      begin
        http ||= Net::HTTP.start("127.0.0.1", port, open_timeout: 5, read_timeout: 30)
        res = http.post("/writes?n=#{n}", "")
        raise "HTTP #{res.code}: #{res.body[0, 200]}" unless res.code == "200"
        lock.synchronize { ok += 1 }
      rescue StandardError => e
        lock.synchronize { failed += 1 }
        warn "request #{n}: #{e.class}: #{e.message}" if failed <= 5
        http = nil
        sleep 0.1
      end
    end
  end
end.each(&:join)
workers.join
puts "writes ok=#{ok} failed=#{failed} killed_worker=#{killed}"
exit(ok >= total * 8 / 10 ? 0 : 1)
