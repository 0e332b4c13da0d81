# Load driver for ForkTests: two threads send GET /hit until the file ARGV[1] exists; every
# answer (a worker pid) is appended to ARGV[2]. Failed requests (a worker killed mid-request)
# are counted, not fatal.
require "net/http"
port, stop_file, out_file = ARGV[0].to_i, ARGV[1], ARGV[2]
deadline = Time.now + 120
lock = Mutex.new
out = File.open(out_file, "a")
out.sync = true
failed = 0
threads = 2.times.map do
  Thread.new do
    until File.exist?(stop_file) || Time.now > deadline
      begin
        res = Net::HTTP.start("127.0.0.1", port, open_timeout: 5, read_timeout: 15) { |h| h.get("/hit") }
        lock.synchronize { out.puts(res.code == "200" ? res.body.strip : "status #{res.code}") }
      rescue StandardError
        lock.synchronize { failed += 1 }
        sleep 0.05
      end
    end
  end
end
threads.each(&:join)
puts "failed #{failed}"
