# frozen_string_literal: true

require_relative "test_helper"

class TaskArgumentsTest < Minitest::Test
  ALL = %w[--database --timestamp --txid --output --force].freeze

  def parse(*argv)
    VFSReplication::TaskArguments.parse(["vfs_replication:restore", *argv], task: "vfs_replication:restore", allowed: ALL)
  end

  def test_options_after_the_double_dash
    args = parse("--", "--database", "storage/production.sqlite3", "--txid=42", "--force")
    assert_equal "storage/production.sqlite3", args["--database"]
    assert_equal %w[--txid 42 --force], args.passthrough("--timestamp", "--txid", "--force")
  end

  def test_bad_options_are_one_line_errors
    assert_raises(VFSReplication::Error) { parse("--", "--datbase", "x") }
    assert_raises(VFSReplication::Error) { parse("--", "--database") }
    error = assert_raises(VFSReplication::Error) { parse("--", "--timestamp", "T", "--txid", "3") }
    assert_includes error.message, "not both"
  end

  def test_nothing_after_the_task_name
    assert_empty parse.options
  end
end
