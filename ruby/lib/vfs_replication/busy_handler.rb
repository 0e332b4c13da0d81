# frozen_string_literal: true

module VFSReplication
  # A busy timeout that waits without holding Ruby's GVL. SQLite's own busy timeout (what
  # `busy_timeout=` installs in the sqlite3 gem 1.x) sleeps inside SQLite, so every other thread of
  # the process stops while one connection waits for a lock; here SQLite calls back into Ruby,
  # which sleeps with Kernel#sleep and lets the other threads run.
  module BusyHandler
    # Sleeps grow from 1 ms to 20 ms: a WAL write lock is usually held for well under a millisecond.
    DELAYS = [0.001, 0.002, 0.005, 0.010, 0.015, 0.020].freeze

    def self.install(db, timeout_ms)
      timeout_ms = timeout_ms.to_i
      if db.respond_to?(:busy_handler_timeout=)
        db.busy_handler_timeout = timeout_ms # sqlite3 gem 2.x: the same idea, built in
      else
        db.busy_handler(&handler(timeout_ms))
      end
    end

    # The block SQLite calls with the number of times it was called for this lock attempt (0 the
    # first time); false gives up (SQLITE_BUSY).
    def self.handler(timeout_ms, clock: -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) }, sleeper: method(:sleep))
      deadline = nil
      lambda do |count|
        now = clock.call
        deadline = now + timeout_ms / 1000.0 if count.zero? || deadline.nil?
        next false if now >= deadline
        sleeper.call([DELAYS.fetch(count, DELAYS.last), deadline - now].min)
        true
      end
    end
  end
end
