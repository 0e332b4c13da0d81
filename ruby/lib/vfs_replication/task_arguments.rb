# frozen_string_literal: true

module VFSReplication
  # Options of the rake tasks, given after `--`:
  #   bin/rails vfs_replication:restore -- --database storage/production.sqlite3 --timestamp 2026-11-26T14:03:27Z
  # Rake sees what follows `--` as task names, so the tasks parse ARGV themselves and exit when done.
  class TaskArguments
    VALUED = %w[--database --timestamp --txid --output --output-dir --max-lag].freeze
    FLAGS = %w[--force --json --dry-run --all].freeze

    attr_reader :options

    def self.parse(argv, task:, allowed:)
      new(argv, task: task, allowed: allowed)
    end

    def initialize(argv, task:, allowed:)
      rest = (index = argv.index("--")) ? argv[(index + 1)..] : []
      @options = {}
      until rest.empty?
        word = rest.shift
        name, inline = word.split("=", 2)
        unless allowed.include?(name) && (VALUED.include?(name) || FLAGS.include?(name))
          raise Error, "#{task}: unknown option '#{word}' (options: #{allowed.join(", ")})"
        end
        if VALUED.include?(name)
          value = inline || rest.shift
          raise Error, "#{task}: #{name} needs a value" if value.nil? || value.empty? || value.start_with?("--")
          @options[name] = value
        else
          @options[name] = true
        end
      end
      if @options["--timestamp"] && @options["--txid"]
        raise Error, "#{task}: give --timestamp or --txid, not both"
      end
    end

    def [](name)
      @options[name]
    end

    # The options to pass on to a tool, in the order given.
    def passthrough(*names)
      names.flat_map do |name|
        value = @options[name]
        next [] unless value
        value == true ? [name] : [name, value]
      end
    end
  end
end
