# frozen_string_literal: true

require_relative "test_helper"
require "sqlite3"

class BusyHandlerTest < Minitest::Test
  def test_the_handler_sleeps_in_ruby_and_gives_up_at_the_deadline
    now = 100.0
    slept = []
    handler = VFSReplication::BusyHandler.handler(50, clock: -> { now }, sleeper: ->(s) { slept << s; now += s })
    count = 0
    count += 1 while handler.call(count)
    assert_in_delta 0.05, slept.sum, 1e-9
    assert_equal 0.001, slept.first
    # A new lock attempt (count 0) gets a new deadline.
    assert handler.call(0)
  end

  # Another thread keeps running while a connection waits for a lock: SQLite's busy timeout in the
  # sqlite3 gem 1.x would hold the GVL for the whole wait.
  def test_a_waiting_connection_does_not_stop_other_threads
    Dir.mktmpdir do |dir|
      path = File.join(dir, "busy.db")
      holder = SQLite3::Database.new(path)
      holder.execute("PRAGMA journal_mode = WAL")
      holder.execute("CREATE TABLE t (x)")
      holder.execute("BEGIN IMMEDIATE")
      waiter = SQLite3::Database.new(path)
      VFSReplication::BusyHandler.install(waiter, 600)
      ticks = 0
      ticker = Thread.new { loop { sleep 0.005; ticks += 1 } }
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      assert_raises(SQLite3::BusyException) { waiter.execute("INSERT INTO t VALUES (1)") }
      waited = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
      ticks_while_waiting = ticks
      ticker.kill
      assert_operator waited, :>=, 0.5
      assert_operator ticks_while_waiting, :>=, 30, "the other thread ran #{ticks_while_waiting} times in #{waited.round(2)} s"
    ensure
      holder&.close
      waiter&.close
    end
  end
end
