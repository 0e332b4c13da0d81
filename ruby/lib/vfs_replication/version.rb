# frozen_string_literal: true

module VFSReplication
  VERSION = "0.1.0"
end
